"""Differential test: the runtime telecom rater against a frozen copy of the rater as it was.

``reference_telecom`` (tests/rating/reference_telecom/) is the rater before the throughput work
of issue #12, kept verbatim as test code. Whatever the runtime rater precomputes or caches, every
call must return the same result, field by field: the same decimals with the same exponent (compared
as text), the same datetimes with the same time zone, the same line keys, segments and bundle use;
or raise the same error with the same message. Records are random across time bands (DST days,
local times the clocks skip), calls crossing band changes, bundles running out mid-record, billing
increments (whole and fractional), several rate groups, connect fees, caps, zero and odd quantities,
unknown destinations and bad input. Calls run in sequences on long-lived plans, so cached entries
are reused under different starts and bundle states, and on fresh plans, so caches start cold.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import reference_telecom
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.rating.telecom import parse_telecom_plan, rate_cdr

from .plans import section as small_section

D = Decimal
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((ROOT / "rating" / "telecom" / "examples" / "telecom_plan.yaml").read_text())

# A plan built to reach the corners: DST in New York, a band at a local time the clocks skip, a
# band change at a seconds-precise time, three rate groups with a bundle drawing on them,
# fractional increments, a price per 7 seconds (non-terminating division), caps that bite, per-1
# prices, a KiB data meter with a MiB bundle, SMS priced in groups, band-restricted bundles.
EDGE: dict[str, Any] = {
    "timezone": "America/New_York",
    "rounding": {"decimals": 2, "method": "up"},
    "holidays": ["2025-07-04", "2025-12-25", "2026-01-01"],
    "time_bands": {
        "default": "night",
        "periods": [
            {"band": "early", "days": ["all"], "start": "02:30", "end": "03:00"},
            {"band": "peak", "days": ["weekdays"], "start": "07:30", "end": "18:15:30"},
            {"band": "evening", "days": ["weekdays"], "start": "18:15:30", "end": "22:00"},
            {"band": "weekend", "days": ["weekend", "holiday"], "start": "08:00", "end": "24:00"},
        ],
    },
    "destinations": {
        "US": {"group": "domestic", "prefixes": ["1"]},
        "NYC": {"group": "local", "prefixes": ["1212", "1646"]},
        "NYC_CELL": {"group": "local", "prefixes": ["12125"]},
        "UK": {"group": "intl", "prefixes": ["44", "447"]},
        "RU": {"group": "intl", "prefixes": ["7"]},
    },
    "rates": {
        "R1": {
            "connect_fee": "0.0125",
            "increments": "30/6",
            "groups": [
                {"from": 0, "price": "0.12", "per": 60},
                {"from": 120, "price": "0.08", "per": 60},
                {"from": 600, "price": "0.05", "per": 60},
            ],
        },
        "R2": {"increments": "1/1", "groups": [{"price": "0.013", "per": 1}]},
        "R3": {"increments": "0.5/0.5", "groups": [{"price": "0.07", "per": 60}]},
        "R4": {"connect_fee": "1.00", "increments": "60/60", "groups": [{"price": "0.333", "per": 7}]},
        "R5": {"increments": "2.5/1", "groups": [{"price": "0.021", "per": 60}]},
        "R_SMS": {"groups": [{"price": "0.05", "per": 1}]},
        "R_SMS2": {
            "connect_fee": "0.01",
            "groups": [{"from": 0, "price": "0.10", "per": 1}, {"from": 3, "price": "0.04", "per": 1}],
        },
        "R_DATA": {"increments": "10/10", "groups": [{"price": "0.0001", "per": 1}]},
        "R_DATA2": {"increments": "1/3", "groups": [{"price": "0.00007", "per": 3}]},
    },
    "meters": {
        "voice": {
            "kind": "voice",
            "rates": [
                {
                    "destination": "US",
                    "bands": {"peak": "R1", "evening": "R4", "weekend": "R2", "night": "R3", "early": "R5"},
                },
                {"destination": "NYC", "rate": "R2", "max_cost": "0.40"},
                {"destination": "NYC_CELL", "rate": "R4", "max_cost": "2.00"},
                {"destination": "UK", "rate": "R1", "max_cost": "0.50"},
                {"destination": "*any", "group": "world", "rate": "R5"},
            ],
        },
        "sms": {
            "kind": "sms",
            "rates": [
                {"destination": "US", "rate": "R_SMS"},
                {"destination": "*any", "group": "world", "rate": "R_SMS2"},
            ],
        },
        "data": {
            "kind": "data",
            "unit": "KiB",
            "rates": [
                {
                    "destination": "*any",
                    "group": "data",
                    "bands": {"peak": "R_DATA", "evening": "R_DATA", "weekend": "R_DATA2", "night": "R_DATA2",
                              "early": "R_DATA"},
                }
            ],
        },
    },
    "bundles": [
        {"id": "PEAK5", "meter": "voice", "amount": 5, "unit": "minutes", "groups": ["domestic"],
         "bands": ["peak"]},
        {"id": "ANY3", "meter": "voice", "amount": 3, "unit": "minutes"},
        {"id": "LOCAL", "meter": "voice", "amount": "90.5", "unit": "seconds", "groups": ["local"]},
        {"id": "SMS10", "meter": "sms", "amount": 10, "unit": "messages"},
        {"id": "DATA1", "meter": "data", "amount": 1, "unit": "MiB", "bands": ["night", "weekend"]},
    ],
}  # fmt: skip

SECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "test": (small_section(), "EUR"),
    "example": (EXAMPLE, "EUR"),
    "edge": (EDGE, "USD"),
    "edge_down0": ({**EDGE, "rounding": {"decimals": 0, "method": "down"}}, "JPY"),
    "example_half_up6": ({**EXAMPLE, "rounding": {"decimals": 6, "method": "half_up"}}, "EUR"),
}


def fresh_plan(name: str):
    sec, currency = SECTIONS[name]
    return parse_telecom_plan(copy.deepcopy(sec), currency=currency)


PLANS = {name: fresh_plan(name) for name in SECTIONS}  # long-lived: their caches fill over the run


def _prefixes(sec: dict[str, Any]) -> list[str]:
    out = ["", "9", "99", "0", "88", "86"]
    for d in sec["destinations"].values():
        out.extend(str(p).lstrip("+") for p in d["prefixes"])
    return sorted(set(out))


def _boundaries(sec: dict[str, Any]) -> list[time]:
    out = {time(0, 0)}
    for p in sec["time_bands"]["periods"]:
        for key in ("start", "end"):
            text = p.get(key, "00:00")
            if text != "24:00":
                parts = [int(x) for x in text.split(":")]
                out.add(time(*parts))
    return sorted(out)


DAYS = [
    date(2025, 3, 9), date(2025, 3, 30), date(2025, 10, 26), date(2025, 11, 2),  # DST changes (NY, Berlin)
    date(2025, 7, 4), date(2025, 12, 24), date(2025, 12, 25), date(2026, 1, 1),  # holidays and their eves
    date(2025, 6, 6), date(2025, 6, 7), date(2025, 6, 9), date(2026, 10, 30), date(2026, 10, 31),
]  # fmt: skip
IST = timezone(timedelta(hours=5, minutes=30))
ZONES = [UTC, UTC, UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), IST]
ODD_QUANTITIES = [
    "0", "0.000", "0E+2", "1", "60", "60.0", "6E+1", "61.000", "1E+3", "59.9999999", "120", "0.5", "1e-20",
    "-0", "-1", "-0.5", "NaN", "sNaN", "Infinity",
]  # fmt: skip
# Not for voice: a call that long is split at every band change of 10**20 years (the rater loops).
HUGE_QUANTITIES = ["123456789012345678901234567890", "9" * 40, "1E+30", "99999999999999999999999999"]


@st.composite
def starts(draw, sec: dict[str, Any]) -> Any:
    """Aware instants: uniform over two years, or near a local band change (calls then cross it)."""
    how = draw(st.integers(0, 9))
    tz = ZoneInfo(sec["timezone"])
    if how < 4:
        us = draw(st.integers(0, 2 * 365 * 86_400_000_000))
        moment = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    else:
        day = draw(st.one_of(st.sampled_from(DAYS), st.dates(date(2025, 1, 1), date(2026, 12, 31))))
        at = draw(st.sampled_from(_boundaries(sec)))
        local = datetime.combine(day, at, tzinfo=tz)
        back_us = draw(st.one_of(st.integers(0, 3600).map(lambda s: s * 1_000_000), st.integers(0, 3_600_000_000)))
        moment = local.astimezone(UTC) - timedelta(microseconds=back_us)
    zone = draw(st.sampled_from(ZONES))
    return moment.astimezone(zone)


@st.composite
def quantities(draw, kind: str) -> Any:
    pick = draw(st.integers(0, 19))
    if pick == 0:
        return D(draw(st.sampled_from(ODD_QUANTITIES + (HUGE_QUANTITIES if kind != "voice" else []))))
    if pick == 1:
        return draw(st.sampled_from([60, 1, "60", 1.5, None]))  # not Decimals: refused
    if pick < 5:
        return draw(st.decimals(min_value=0, max_value=5000, places=draw(st.integers(0, 7)), allow_nan=False))
    if kind == "sms":
        return D(draw(st.integers(0, 7)))
    if kind == "data":
        return D(draw(st.integers(0, 60_000_000)))
    return D(draw(st.one_of(st.integers(0, 400), st.integers(0, 4000), st.integers(0, 200_000))))


@st.composite
def destinations(draw, sec: dict[str, Any]) -> dict[str, Any]:
    pick = draw(st.integers(0, 14))
    if pick == 0:
        return {}
    if pick == 1:
        return {"destination": draw(st.sampled_from([None, "", "+", "12a4", "+4\u0663", "\u0664\u0664", "++44"]))}
    number = draw(st.sampled_from(_prefixes(sec))) + draw(st.text("0123456789", max_size=9))
    return {"destination": ("+" if draw(st.booleans()) else "") + number}


def bundle_amounts(sec: dict[str, Any]) -> dict[str, Decimal]:
    units = {"minutes": 60, "seconds": 1, "hours": 3600, "messages": 1, "MiB": 1024**2, "MB": 10**6}
    return {b["id"]: D(str(b["amount"])) * units[b["unit"]] for b in sec.get("bundles", [])}


@st.composite
def bundle_states(draw, sec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bid, amount in bundle_amounts(sec).items():
        pick = draw(st.integers(0, 9))
        if pick < 3:
            continue
        if pick == 3:
            out[bid] = amount
        elif pick == 4:
            out[bid] = amount - draw(st.integers(0, 400))
        elif pick == 5:
            out[bid] = amount + draw(st.integers(0, 400))
        elif pick == 6:
            out[bid] = draw(st.decimals(min_value=0, max_value=amount * 2, places=draw(st.integers(0, 12))))
        elif pick == 7:
            out[bid] = int(draw(st.integers(0, int(amount) + 100)))  # an int, not a Decimal
        elif pick == 8:
            out[bid] = D(draw(st.sampled_from(["0", "0.000", "-5", "1E-40", "1E+5", "NaN"])))
        else:
            out[bid] = D(0)
    return out


def canon(x: Any) -> Any:
    """Everything observable about a result, decimals by their text (so the exponent counts)."""
    if isinstance(x, Decimal):
        return ("Decimal", str(x))
    if isinstance(x, datetime):
        return ("datetime", x.isoformat(), repr(x.tzinfo), x.fold)
    if isinstance(x, tuple):
        fields = getattr(x, "_fields", None)
        return (type(x).__name__ if fields else "tuple", fields, tuple(canon(v) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple((k, canon(v)) for k, v in x.items()))
    return (type(x).__name__, x)


def outcome(fn, plan, cdr: dict[str, Any]) -> Any:
    try:
        result = fn(plan, **cdr)
    except Exception as exc:  # every error must match too
        return ("raised", type(exc).__name__, str(exc), getattr(exc, "reason", None), getattr(exc, "detail", None))
    return ("rated", canon(result), result.to_json_dict())


def check(plan, cdr: dict[str, Any], caller_context: Context | None = None) -> Any:
    """Rate ``cdr`` with both raters (optionally inside a hostile caller context); they must agree."""
    if caller_context is None:
        ours, ref = outcome(rate_cdr, plan, cdr), outcome(reference_telecom.rate_cdr, plan, cdr)
    else:
        with localcontext(caller_context):
            ours = outcome(rate_cdr, plan, cdr)
        with localcontext(caller_context):
            ref = outcome(reference_telecom.rate_cdr, plan, cdr)
    assert ours == ref, cdr
    return ours


@st.composite
def cdrs(draw, sec: dict[str, Any]) -> dict[str, Any]:
    meters = {name: m["kind"] for name, m in sec["meters"].items()}
    meter = draw(st.sampled_from([*sorted(meters) * 6, "unknown_meter"]))
    kind = meters.get(meter, "voice")
    return {
        "meter": meter,
        "quantity": draw(quantities(kind)),
        "start": draw(starts(sec)),
        "dimensions": draw(destinations(sec)),
        "bundle_used": draw(bundle_states(sec)),
    }


def plan_and_cdrs(n: int):
    return st.sampled_from(sorted(SECTIONS)).flatmap(
        lambda name: st.tuples(st.just(name), st.lists(cdrs(SECTIONS[name][0]), min_size=1, max_size=n))
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=plan_and_cdrs(12))
def test_same_results_as_the_frozen_rater(case):
    name, records = case
    plan = PLANS[name]
    for cdr in records:
        check(plan, cdr)
        # the same record again (now cached), then moved in time and with other bundle states
        check(plan, cdr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=plan_and_cdrs(6))
def test_same_results_on_a_fresh_plan(case):
    name, records = case
    plan = fresh_plan(name)  # nothing cached yet
    for cdr in records:
        check(plan, cdr)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=plan_and_cdrs(8),
    shift=st.lists(st.integers(-86_400_000_000, 86_400_000_000), min_size=1, max_size=4),
)
def test_same_quantity_at_other_times_and_bundle_states(case, shift):
    """A cached record reused at other starts (other bands, crossing changes) and bundle states."""
    name, records = case
    plan = PLANS[name]
    states = [r["bundle_used"] for r in records]
    for cdr in records:
        for i, us in enumerate(shift):
            start = cdr["start"] + timedelta(microseconds=us)
            check(plan, {**cdr, "start": start, "bundle_used": states[i % len(states)]})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SECTIONS)),
    data=st.data(),
    prec=st.integers(1, 30),
    traps=st.booleans(),
)
def test_caller_decimal_context_does_not_matter(name, data, prec, traps):
    """Both run in the engine's own context whatever the caller's (a 3-digit context, traps off...)."""
    sec = SECTIONS[name][0]
    records = data.draw(st.lists(cdrs(sec), min_size=1, max_size=6))
    hostile = Context(prec=prec, traps=[] if not traps else None)
    for cdr in records:
        check(PLANS[name], cdr, hostile)


@pytest.mark.parametrize("name", sorted(SECTIONS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_customer_month_with_bundles_running_out(name, data):
    """One customer's records in order, bundle use carried from record to record as the processor does."""
    sec = SECTIONS[name][0]
    plan = PLANS[name]
    used: dict[str, Decimal] = {}
    records = data.draw(st.lists(cdrs(sec), min_size=5, max_size=40))
    for cdr in records:
        result = check(plan, {**cdr, "bundle_used": dict(used)})
        if result[0] == "rated":
            for bundle, units in result[2]["bundle_units_used"].items():
                used[bundle] = used.get(bundle, D(0)) + D(units)


def test_the_reference_is_not_the_runtime_rater():
    """Guard against the comparison becoming vacuous (both names bound to one implementation)."""
    assert reference_telecom.rate_cdr is not rate_cdr
    assert reference_telecom.rate_cdr.__module__ == "reference_telecom.rater"
    assert rate_cdr.__module__ == "meterstream.rating.telecom.rater"


def test_a_known_record_from_both():
    """Hand-checked anchor: 61 s to a German mobile at Monday 10:00 Berlin (peak, 0.19/min, 60/1)
    = 61 x 0.19 / 60 = 0.193166... -> 0.1932; the bundle does not cover mobile peak when used up."""
    plan = PLANS["example"]
    cdr = {
        "meter": "voice_seconds",
        "quantity": D(61),
        "start": datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
        "dimensions": {"destination": "+491701234567"},
        "bundle_used": {"national_minutes": D(18_000)},
    }
    for fn in (rate_cdr, reference_telecom.rate_cdr):
        r = fn(plan, **cdr)
        assert r.cost == D("0.1932")
        assert r.line_key == "voice_seconds/mobile/peak"
        assert r.bundle_units_used == {}
    check(plan, cdr)
