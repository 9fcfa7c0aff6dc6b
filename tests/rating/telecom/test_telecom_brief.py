"""The columnar processor's way of calling the rater, against the frozen rater (tests/rating/reference_telecom/).

The processor calls ``rate_cdr(..., time_text=<canonical UTC text>, brief=True)``: the start as the text
``YYYY-MM-DDTHH:MM:SS.mmmZ`` instead of a datetime (the band then comes from the hour's memo when no band
change cuts the hour), and memoised answers as the tuple ``(cost, line_key, bundle_id, billed)``. Every
call must give what the frozen rater gives for ``start=datetime.fromisoformat(text)``: a tuple the same
cost (as text: the exponent counts), line key and bundle use; a RatedCDR the same in every field; or the
same error. Records as in test_telecom_differential.py (its strategies): across bands, DST days, band
changes, bundles running out, odd quantities, bad input; then hand-checked records around band changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import reference_telecom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.rating.telecom import rate_cdr
from meterstream.schemas.event import format_time

from .test_telecom_differential import PLANS, SECTIONS, canon, cdrs, fresh_plan

D = Decimal


def _error(exc: Exception) -> tuple:
    return ("raised", type(exc).__name__, str(exc), getattr(exc, "reason", None), getattr(exc, "detail", None))


def check(plan: Any, cdr: dict[str, Any], brief: bool) -> str:
    """Rate ``cdr`` (its start as canonical text) both ways; they must agree. Returns how ours answered."""
    text = format_time(cdr["start"])
    ref_cdr = {**cdr, "start": datetime.fromisoformat(text)}
    try:
        ref = reference_telecom.rate_cdr(plan, **ref_cdr)
    except Exception as exc:
        ref = _error(exc)
    ours_cdr = {k: v for k, v in cdr.items() if k != "start"}
    try:
        ours = rate_cdr(plan, **ours_cdr, time_text=text, brief=brief)
    except Exception as exc:
        assert _error(exc) == ref, (text, cdr)
        return "raised"
    assert not isinstance(ref, tuple) or hasattr(ref, "_fields"), (text, cdr, ref)  # the reference rated it
    if type(ours) is tuple:
        assert brief, "a plain tuple only when asked for"
        cost, line_key, bundle_id, billed = ours
        covered = {bundle_id: billed} if bundle_id is not None else {}
        assert canon((cost, line_key, covered)) == canon((ref.cost, ref.line_key, ref.bundle_units_used)), (text, cdr)
        return "brief"
    assert canon(ours) == canon(ref), (text, cdr)
    assert ours.to_json_dict() == ref.to_json_dict()
    return "full"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(sorted(SECTIONS)).flatmap(
        lambda name: st.tuples(st.just(name), st.lists(cdrs(SECTIONS[name][0]), min_size=1, max_size=12))
    ),
    brief=st.booleans(),
)
def test_time_text_and_brief_equal_the_frozen_rater(case, brief):
    name, records = case
    plan = PLANS[name]  # long-lived: memo entries (hours, legs) reused across examples
    for cdr in records:
        check(plan, cdr, brief)
        check(plan, cdr, brief)  # again, now from the memo


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(sorted(SECTIONS)).flatmap(
        lambda name: st.tuples(st.just(name), st.lists(cdrs(SECTIONS[name][0]), min_size=1, max_size=6))
    )
)
def test_time_text_on_a_fresh_plan(case):
    name, records = case
    plan = fresh_plan(name)
    for cdr in records:
        check(plan, cdr, True)


def _call(number: str, quantity: int, when: str, used: int = 18_000) -> dict[str, Any]:
    return {
        "meter": "voice_seconds",
        "quantity": D(quantity),
        "start": datetime.fromisoformat(when),
        "dimensions": {"destination": number},
        "bundle_used": {"national_minutes": D(used)},  # the 300-minute bundle used up: charged
    }


def test_calls_around_band_changes_by_hand():
    """The example plan (Europe/Berlin, CEST = UTC+2 on 2026-10-05, a Monday): peak 08:00-19:00 local,
    i.e. 06:00-17:00 UTC. German fixed line 0.09/min peak, 0.04/min off-peak, 60/1 increments; each
    increment priced in the band in force when it starts; 4 decimals, half up."""
    plan = fresh_plan("example")
    cases = [
        # inside the 10:00 UTC hour (all peak): 61 s x 0.09 / 60 = 0.0915
        ("2026-10-05T10:00:00.000Z", 61, "0.0915", "brief"),
        # the 16:00 UTC hour is all peak, its band ends with it: 100 s from 16:59:30 reach off-peak at 17:00:00.
        # The first increment (60 s, starting in peak) 0.09; 40 increments of 1 s starting in off-peak
        # 40 x 0.04 / 60 = 0.026666...; 0.116666... -> 0.1167 (the reference path: the record is split)
        ("2026-10-05T16:59:30.000Z", 100, "0.1167", "full"),
        # the same hour, 20 s from 16:59:30: ends 16:59:50 in peak; bills the first 60 s: 0.0900
        ("2026-10-05T16:59:30.000Z", 20, "0.0900", "brief"),
        # 05:59:00 UTC (07:59 local, off-peak) for 120 s: 60 s off-peak 0.04 + 60 x 1 s in peak 0.09 = 0.13
        ("2026-10-05T05:59:00.000Z", 120, "0.1300", "full"),
        # 05:00:00 UTC, 60 s: off-peak 0.04 (the 05:00 hour ends where off-peak ends: no crossing)
        ("2026-10-05T05:00:00.000Z", 60, "0.0400", "brief"),
    ]
    for when, seconds, cost, how in cases:
        cdr = _call("+4930123456", seconds, when)
        check(plan, cdr, True)  # the first call fills the memo
        assert check(plan, cdr, True) == how, when  # the second: brief from the memo, or the reference path
        result = rate_cdr(
            plan, meter=cdr["meter"], quantity=cdr["quantity"], dimensions=cdr["dimensions"],
            bundle_used=cdr["bundle_used"], time_text=when, brief=True,
        )  # fmt: skip
        assert (result[0] if type(result) is tuple else result.cost) == D(cost), when
    # the hours seen, by their text: 10 and 16 are whole peak hours, 05 a whole off-peak hour
    hours = plan.compiled.hours
    assert hours["2026-10-05T10"][0] == "peak"
    assert hours["2026-10-05T16"][0] == "peak" and hours["2026-10-05T16"][1].total_seconds() == 0
    assert hours["2026-10-05T05"][0] == "offpeak"


def test_an_hour_a_band_change_cuts_is_looked_up_per_record():
    """The edge plan's evening band starts at 18:15:30 New York time: 22:15:30 UTC on Monday 2025-06-09 (EDT),
    inside the 22:00 UTC hour. An SMS's line names the band in force at its start: peak just before, evening
    from then on."""
    plan = fresh_plan("edge")
    cdr = {
        "meter": "sms",
        "quantity": D(1),
        "start": datetime(2025, 6, 9, 22, 15, 29, 999000, tzinfo=UTC),  # 18:15:29.999 EDT: peak
        "dimensions": {"destination": "+15551234567"},
        "bundle_used": {"SMS10": D(10)},
    }
    lines = []
    for start in (cdr["start"], datetime(2025, 6, 9, 22, 15, 30, tzinfo=UTC), cdr["start"]):
        check(plan, {**cdr, "start": start}, True)
        result = rate_cdr(
            plan, meter="sms", quantity=D(1), dimensions=cdr["dimensions"], bundle_used=cdr["bundle_used"],
            time_text=format_time(start), brief=True,
        )  # fmt: skip
        lines.append(result[1])
    assert lines == ["sms/domestic/peak", "sms/domestic/evening", "sms/domestic/peak"]
    assert plan.compiled.hours["2025-06-09T22"] is None  # cut by the band change: no band for the hour


def test_a_text_that_is_not_canonical_is_not_a_key():
    """A text with an offset still rates as its instant (parsed), and no hour is remembered under its prefix."""
    plan = fresh_plan("example")
    cdr = _call("+4930123456", 61, "2026-10-05T10:00:00.000Z")
    ref = reference_telecom.rate_cdr(plan, **{**cdr, "start": datetime.fromisoformat("2026-10-05T10:00:00+02:00")})
    args = {k: v for k, v in cdr.items() if k != "start"}
    for _ in range(2):
        ours = rate_cdr(plan, **args, time_text="2026-10-05T10:00:00+02:00")
        assert canon(ours) == canon(ref)
        assert ours.cost == D("0.0915")  # 08:00 UTC = 10:00 local: peak
    assert "2026-10-05T10" not in plan.compiled.hours


def test_a_known_number_head_with_a_bad_tail_is_refused():
    """Destinations are remembered by their first digits; a number sharing them must still be E.164 digits
    throughout (what prefixes.match requires): the same refusal as the frozen rater, for every way of calling."""
    plan = fresh_plan("example")
    good = _call("+4930123456", 61, "2026-10-05T10:00:00.000Z")
    check(plan, good, True)
    for bad in ("+4930123a56", "+493012345\u0663", "+4930123456+", "+49301 3456", "4930+23456"):
        cdr = {**good, "dimensions": {"destination": bad}}
        assert check(plan, cdr, True) == "raised", bad
        assert check(plan, cdr, False) == "raised", bad
    # and with nothing to route by (data records carry no number): the default rate, remembered
    data = {"meter": "data_bytes", "quantity": D(2_000_000), "start": good["start"], "dimensions": {},
            "bundle_used": {}}  # fmt: skip
    for _ in range(2):
        assert check(plan, data, True) == "brief"  # 2 MB at 0.02 per MB
    assert rate_cdr(plan, **{k: v for k, v in data.items() if k != "start"}, time_text="2026-10-05T10:00:00.000Z",
                    brief=True)[0] == D("0.0400")  # fmt: skip
