"""Which per-subject quantities a version 1 line takes (invoice_emitter/subjects.py `subject_quantities_of`), the one
order of precedence the close (`with_subject_quantities`) and the issued invoice's per-user section (`issue.py`) share:
the line's own `subject_quantities`, else the subscription usage by its line key, else the period's usage by its
meter."""

from __future__ import annotations

from decimal import Decimal

from meterstream.invoice_emitter.subjects import subject_quantities_of, with_subject_quantities

BY_METER = {"api_calls": {"u1": Decimal("75"), "": Decimal("25")}}
BY_KEY = {"sub-1/api_calls": {"u2": Decimal("4")}}


def test_own_quantities_come_first_as_decimals() -> None:
    line = {"meter": "api_calls", "line_key": "sub-1/api_calls", "subject_quantities": {"u3": "1.50", "": "0.5"}}
    assert subject_quantities_of(line, BY_METER, BY_KEY) == {"u3": Decimal("1.5"), "": Decimal("0.5")}


def test_a_line_key_takes_the_subscription_usage_and_never_the_meter() -> None:
    assert subject_quantities_of({"meter": "api_calls", "line_key": "sub-1/api_calls"}, BY_METER, BY_KEY) == {
        "u2": Decimal("4")}  # fmt: skip
    # a key the subscription usage does not have: nothing, not the meter's usage of the catalog file
    assert subject_quantities_of({"meter": "api_calls", "line_key": "sub-9/api_calls"}, BY_METER, BY_KEY) is None


def test_without_a_line_key_the_meter_decides_and_a_code_names_it() -> None:
    assert subject_quantities_of({"meter": "api_calls"}, BY_METER, BY_KEY) == BY_METER["api_calls"]
    assert subject_quantities_of({"code": "api_calls", "meter": "other"}, BY_METER) == BY_METER["api_calls"]
    assert subject_quantities_of({"meter": "seats"}, BY_METER, BY_KEY) is None
    assert subject_quantities_of({"meter": "api_calls"}) is None


def test_the_close_writes_what_the_precedence_found_on_usage_lines_only() -> None:
    lines = [
        {"kind": "usage", "meter": "api_calls", "quantity": "100"},
        {"kind": "usage", "meter": "api_calls", "line_key": "sub-1/api_calls", "quantity": "4"},
        {"kind": "usage", "meter": "api_calls", "subject_quantities": {"u9": "100"}},  # its own: untouched
        {"kind": "fixed", "code": "api_calls", "quantity": "1"},  # a fee: none
    ]
    out = with_subject_quantities(lines, BY_METER, BY_KEY)
    assert out[0]["subject_quantities"] == {"": "25", "u1": "75"}
    assert out[1]["subject_quantities"] == {"u2": "4"}
    assert out[2]["subject_quantities"] == {"u9": "100"}
    assert "subject_quantities" not in out[3]
