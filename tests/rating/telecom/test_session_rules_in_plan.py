"""Session rules written in the plan (``telecom.sessions``): validated with the catalog, used by default.

Plan: plans.py (NAT 60/1 at 0.10/min peak, INTL 0.50 connect + 1.20 first minute + 0.60/min, 60/60,
cap 3.00). Peak is 08:00-19:00 on weekdays; 2025-03-04 is a Tuesday. Every figure is worked by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from meterstream.rating.catalog import CatalogError, parse_catalog
from meterstream.rating.telecom import parse_telecom_plan
from meterstream.rating.telecom.authorize import max_duration
from meterstream.rating.telecom.session_rules import DEFAULT_RULES, SessionRules
from meterstream.rating.telecom.sessions import SessionRecord, rate_session_record

from .plans import berlin, section

D = Decimal
NAT, INTL = "+4930123", "+44207"
TUE_10 = berlin(2025, 3, 4, 10)
SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "telecom_plan.v1.json").read_text())
RULES = {
    "rounding": "per_increment",
    "max_cost": [{"destination": "INTL", "band": "peak", "amount": "2.00", "strategy": "disconnect"}],
}
USED = {"NAT_MIN": D(600)}  # the 10-minute national bundle used up: NAT calls are charged


def _catalog(sessions):
    telecom = {**section(), "sessions": sessions}
    return parse_catalog({"plans": [{"id": "tel", "currency": "EUR", "telecom": telecom}]})


def _records(number, usages):
    return [
        SessionRecord("s1", i, "voice_seconds", TUE_10, {"destination": number}, usage=D(u))
        for i, u in enumerate(usages, start=1)
    ]


def _costs(plan, records, rules=None, used=None):
    state, out = None, []
    for r in records:
        state, s = rate_session_record(plan, state, r, bundle_used=used or {}, rules=rules)
        out.append(s.cost)
    return out


def test_the_catalog_carries_the_rules_and_the_schema_accepts_them():
    plan = _catalog(RULES).plans["tel"].telecom
    assert plan.sessions.rounding == "per_increment"
    assert plan.sessions.cap("INTL", "peak", D("3.00")) == (D("2.00"), "disconnect")
    jsonschema.validate({**section(), "sessions": RULES}, SCHEMA)
    assert parse_telecom_plan(section(), currency="EUR").sessions == DEFAULT_RULES  # none written: the defaults


def test_per_increment_rounding_from_the_plan():
    # NAT peak 60/1 at 0.10/min, 61 s + 1 s + 1 s. Per increment: the 60 s block 0.1000, each 1 s step
    # 0.10/60 = 0.001666.. -> 0.0017: slices 0.1017, 0.0017, 0.0017 (sum 0.1051).
    # Per record (the default, carried remainder): 0.1017, 0.1033 - 0.1017 = 0.0016, 0.1050 - 0.1033 = 0.0017.
    plan = _catalog(RULES).plans["tel"].telecom
    assert _costs(plan, _records(NAT, ["61", "1", "1"]), used=USED) == [D("0.1017"), D("0.0017"), D("0.0017")]
    plain = parse_telecom_plan(section(), currency="EUR")
    assert _costs(plain, _records(NAT, ["61", "1", "1"]), used=USED) == [D("0.1017"), D("0.0016"), D("0.0017")]
    # rules passed explicitly still win over the plan's
    assert _costs(plan, _records(NAT, ["61", "1", "1"]), rules=SessionRules(), used=USED) == [
        D("0.1017"),
        D("0.0016"),
        D("0.0017"),
    ]


def test_band_cap_with_disconnect_from_the_plan():
    # INTL peak cap 2.00, disconnect: minute 1 = 0.50 + 1.20 = 1.70; minute 2 (0.60) reaches 2.00 after 0.30,
    # so 90 s charges 2.00 and the session is to be cut at 120 s; the next 60 s charge nothing.
    plan = _catalog(RULES).plans["tel"].telecom
    state = None
    out = []
    for r in _records(INTL, ["90", "60"]):
        state, s = rate_session_record(plan, state, r, bundle_used={})
        out.append((s.cost, s.disconnect, s.disconnect_at))
    assert out == [(D("2.00"), True, D(120)), (D(0), True, D(120))]
    # authorize: with 10.00 the call may last until the disconnect point, 120 s; without the plan's rules
    # the 3.00 cap only stops charging, so 10.00 never runs out: the 31-day horizon (2,678,400 s).
    md = {"meter": "voice_seconds", "balance": D("10.00"), "start": TUE_10, "dimensions": {"destination": INTL}}
    assert max_duration(plan, bundle_used={}, **md) == D(120)
    assert max_duration(parse_telecom_plan(section(), currency="EUR"), bundle_used={}, **md) == D(31 * 86400)


@pytest.mark.parametrize(
    ("sessions", "field", "words"),
    [
        ({"rounding": "per_call"}, "rounding", "per_record"),
        ({"max_cost": [{"band": "night", "amount": "1"}]}, "max_cost[0].band", "night"),
        (
            {"max_cost": [{"destination": "MARS", "amount": "1"}]},
            "max_cost[0].destination",
            "MARS",
        ),
        ({"max_cost": [{"amount": "-1"}]}, "max_cost[0].amount", "greater than or equal"),
        (
            {"max_cost": [{"amount": "1", "strategy": "*free"}]},
            "max_cost[0].strategy",
            "disconnect",
        ),
    ],
)
def test_bad_rules_in_the_plan_name_the_field(sessions, field, words):
    path = f"plans[0].telecom.sessions.{field}"
    with pytest.raises(CatalogError) as e:
        _catalog(sessions)
    assert f"{path}: " in str(e.value) and words in str(e.value), str(e.value)
