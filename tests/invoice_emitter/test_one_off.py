"""The one-off invoice document (invoice_emitter/one_off.py), pure: lines, rounding, tax, dates and the refusals.
Every expected figure is worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterstream.invoice_emitter.issue import NO_COUNTRY_NOTE, Issuing
from meterstream.invoice_emitter.one_off import (
    ONE_OFF_PERIOD,
    OneOffFee,
    is_add_on_line,
    one_off_draft,
    one_off_id,
)
from meterstream.schemas.entities import CustomerDoc

D = Decimal
AT = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 00:30 on 5 December in Berlin


def _customer(**kw) -> CustomerDoc:  # type: ignore[no-untyped-def]
    fields = {"tenant": "acme", "external_id": "cust-1", "name": "Kunde GmbH", "version": 1, "country": "DE",
              "timezone": "Europe/Berlin", "payment_terms_days": 14, "currency": "EUR"}  # fmt: skip
    return CustomerDoc(**{**fields, **kw})


def _fees() -> list[OneOffFee]:
    return [OneOffFee("01SETUP", "setup", "Setup fee", D("3"), D("49.99")),
            OneOffFee("01DAY", "consulting", "Consulting day", D("1.5"), D("120.005"))]  # fmt: skip


def test_lines_tax_and_totals_by_hand() -> None:
    doc = one_off_draft("INV-ONEOFF-1", _customer(), "EUR", _fees(), Issuing.default(), AT)
    # 3 x 49.99 = 149.97; 1.5 x 120.005 = 180.0075 -> 180.01 (half away from zero), kept exact as precise_amount
    assert [(x.line_no, x.kind, x.code, x.quantity, x.unit_price, x.amount, x.precise_amount, x.line_key)
            for x in doc.lines] == [
        (1, "one_time", "setup", D("3"), D("49.99"), D("149.97"), D("149.97"), "add_on:01SETUP"),
        (2, "one_time", "consulting", D("1.5"), D("120.005"), D("180.01"), D("180.0075"), "add_on:01DAY"),
    ]  # fmt: skip
    # a German buyer of the German demo issuer: 19 % on 149.97 + 180.01 = 329.98 -> 62.6962 -> 62.70, shared as
    # 28.4943 -> 28.49 (+0.01 by largest remainder: .4943 vs .2019) = 28.50 and 34.2019 -> 34.20
    assert (doc.subtotal, doc.tax_total, doc.total, doc.amount_due) == (D("329.98"), D("62.70"), D("392.68"),
                                                                        D("392.68"))  # fmt: skip
    assert [x.tax_amount for x in doc.lines] == [D("28.50"), D("34.20")]
    assert (doc.period, doc.status, doc.number, doc.discounts) == (ONE_OFF_PERIOD, "draft", None, [])
    # issued on the customer's local day (5 December in Berlin), due 14 days later; the period is that local day
    assert (doc.issue_date.isoformat(), doc.due_date.isoformat()) == ("2026-12-05", "2026-12-19")
    assert (doc.period_start, doc.period_end) == (datetime(2026, 12, 4, 23, tzinfo=UTC),
                                                  datetime(2026, 12, 5, 23, tzinfo=UTC))  # fmt: skip
    assert all(is_add_on_line(x.line_key) for x in doc.lines) and not is_add_on_line("dunning:inv-1:1")


def test_yen_rounds_to_whole_units_and_no_country_no_tax() -> None:
    fee = OneOffFee("01X", "audit", "Audit", D("3"), D("333.5"))
    doc = one_off_draft("INV-ONEOFF-2", _customer(country=None, timezone="UTC", payment_terms_days=0), "JPY", [fee],
                        Issuing.default(), AT)  # fmt: skip
    # 3 x 333.5 = 1000.5 -> 1001 yen (no minor unit); no country: no tax, and the note says so
    assert (doc.lines[0].amount, doc.subtotal, doc.tax_total, doc.total) == (D("1001"), D("1001"), D("0"), D("1001"))
    assert NO_COUNTRY_NOTE in doc.notes
    assert (doc.issue_date.isoformat(), doc.due_date.isoformat()) == ("2026-12-04", "2026-12-04")  # UTC day


def test_a_fee_with_its_own_service_period() -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    fee = OneOffFee("01X", "setup", "Setup", D("1"), D("10.00"), start, end)
    doc = one_off_draft("INV-ONEOFF-3", _customer(), "EUR", [fee], Issuing.default(), AT)
    assert (doc.lines[0].start, doc.lines[0].end) == (start, end)


@pytest.mark.parametrize(
    ("fees", "field"),
    [
        ([], "fees"),
        ([OneOffFee("01X", "setup", "Setup", D("0"), D("10"))], "fees[0].units"),
        ([OneOffFee("01X", "setup", "Setup", D("1"), D("-0.01"))], "fees[0].unit_amount"),
        ([OneOffFee("01X", "setup", "Setup", D("1"), D("1"), AT, None)], "fees[0].to_datetime"),
        ([OneOffFee("01X", "setup", "Setup", D("1"), D("1"), AT, AT)], "fees[0].to_datetime"),
        ([OneOffFee("01X", "setup", "Setup", D("1"), D("1"))] * 101, "fees"),
        ([OneOffFee("01X", "setup", "Setup", D("1E+12"), D("1"))], "fees[0].units"),  # too many units
        ([OneOffFee("01X", "setup", "Setup", D("0.0000000000001"), D("1"))], "fees[0].units"),  # 13 decimals
        ([OneOffFee("01X", "setup", "Setup", D("1"), D("1E+15"))], "fees[0].unit_amount"),
        ([OneOffFee("01X", "setup", "Setup", D("1000000"), D("1000000000"))], "fees[0].units"),  # 10**15 in all
    ],
)
def test_refusals_name_the_field(fees: list[OneOffFee], field: str) -> None:
    with pytest.raises(ValueError) as exc:
        one_off_draft("INV-ONEOFF-4", _customer(), "EUR", fees, Issuing.default(), AT)
    assert str(exc.value).startswith(f"{field}: ")


def test_ids_from_a_reference_repeat_and_differ_by_tenant() -> None:
    assert one_off_id("acme", "po-77", "01A") == one_off_id("acme", "po-77", "01B")
    assert one_off_id("acme", "po-77", "01A") != one_off_id("globex", "po-77", "01A")
    assert one_off_id("acme", None, "01ABC") == "INV-ONEOFF-01ABC"
