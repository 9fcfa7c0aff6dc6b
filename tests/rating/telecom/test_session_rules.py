"""Session rules: validated against the plan, errors name the field; the first matching cap wins."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterstream.rating.telecom import TelecomCatalogError
from meterstream.rating.telecom.session_rules import parse_session_rules

D = Decimal


def test_valid_rules(plan):
    rules = parse_session_rules(
        {
            "rounding": "per_increment",
            "max_cost": [
                {"destination": "INTL", "band": "peak", "amount": "2.00", "strategy": "disconnect"},
                {"band": "peak", "amount": "5.00"},
            ],
        },
        plan=plan,
    )
    assert rules.rounding == "per_increment"
    assert rules.cap("INTL", "peak", D("3.00")) == (D("2.00"), "disconnect")
    assert rules.cap("NAT", "peak", None) == (D("5.00"), "stop_charging")
    # no entry for off-peak: the plan's max_cost of the destination, as stop_charging; none: no cap
    assert rules.cap("INTL", "offpeak", D("3.00")) == (D("3.00"), "stop_charging")
    assert rules.cap("NAT", "offpeak", None) is None


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({"rounding": "per_call"}, "sessions.rounding", "per_record"),
        ({"max_cost": [{"band": "night", "amount": "1"}]}, "sessions.max_cost[0].band", "unknown time band 'night'"),
        ({"max_cost": [{"destination": "MARS", "amount": "1"}]}, "sessions.max_cost[0].destination", "unknown"),
        ({"max_cost": [{"amount": "-1"}]}, "sessions.max_cost[0].amount", "greater than or equal"),
        ({"max_cost": [{"amount": "1", "strategy": "*free"}]}, "sessions.max_cost[0].strategy", "stop_charging"),
        ({"max_cost": [{"band": "peak"}]}, "sessions.max_cost[0].amount", "required"),
        ({"cap": 1}, "sessions.cap", "not permitted"),
    ],
)
def test_errors_name_the_field(plan, section, path, words):
    with pytest.raises(TelecomCatalogError) as e:
        parse_session_rules(section, plan=plan)
    assert any(p == path and words in reason for p, reason in e.value.problems), e.value.problems
