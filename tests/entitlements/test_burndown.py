"""The grants' burn-down, on cases worked out by hand (OpenMeter's documented examples and rules,
docs/entitlements.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterstream.entitlements.burndown import Grant, first_period_start, value_at
from meterstream.entitlements.periods import Timeline, periods_between

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MONTH = (1, "month")


def usage_of(events):
    def usage(start, end):
        return sum((D(q) for t, q in events if start <= t < end), D(0))

    return usage


def grant(id_, amount, **kw):
    kw.setdefault("effective_at", T0)
    kw.setdefault("created_at", T0)
    return Grant(id=id_, amount=D(amount), **kw)


def value(grants, events, at, start=T0, preserve=False):
    return value_at(grants, periods_between(T0, MONTH, start, at), usage_of(events), at, preserve)


def test_the_documented_example_expiring_grant_first():
    # A (100, expires in a month) burns before B (50, no expiration) at the same priority
    a = grant("A", 100, priority=1, expires_at=T0 + timedelta(days=31))
    b = grant("B", 50, priority=1)
    at = T0 + timedelta(days=10)
    v = value([b, a], [(T0 + timedelta(days=1), "120")], at)
    assert (v.balance, v.usage, v.overage, v.total_available) == (D(30), D(120), D(0), D(150))
    assert v.grant_balances == {"A": D(0), "B": D(30)}
    v = value([a, b], [(T0 + timedelta(days=1), "170")], at)
    assert (v.balance, v.usage, v.overage, v.total_available) == (D(0), D(170), D(20), D(150))


def test_a_grant_that_becomes_active_pays_the_overage_first():
    # OpenMeter's run_test "Burns down grant that becomes active during phase": 25 before the grant, 25 after
    g = grant("G", 100, effective_at=T0 + timedelta(hours=1))
    events = [(T0 + timedelta(minutes=10), 25), (T0 + timedelta(hours=2), 25)]
    v = value([g], events, T0 + timedelta(hours=3))
    assert (v.balance, v.usage, v.overage) == (D(50), D(50), D(0))
    v = value([g], events[:1], T0 + timedelta(minutes=30))  # before it is active: all overage, no balance
    assert (v.balance, v.usage, v.overage, v.grant_balances) == (D(0), D(25), D(25), {})


def test_lower_priority_number_burns_first_then_earlier_creation():
    late = grant("L", 100, priority=2)
    first = grant("F", 100, priority=1)
    v = value([late, first], [(T0, "50")], T0 + timedelta(days=1))
    assert v.grant_balances == {"F": D(50), "L": D(100)}
    older = grant("O", 10, priority=1, created_at=T0 - timedelta(days=1))
    v = value([first, older], [(T0, "15")], T0 + timedelta(days=1))
    assert v.grant_balances == {"O": D(0), "F": D(95)}


def test_an_expired_grant_loses_what_it_had_left():
    short = grant("S", 100, expires_at=T0 + timedelta(days=1))
    long_ = grant("L", 50, priority=5)
    events = [(T0 + timedelta(hours=1), 30), (T0 + timedelta(days=2), 20)]
    # 30 from S (it burns first: priority 0); S expires with 70 left, lost; 20 from L
    v = value([short, long_], events, T0 + timedelta(days=3))
    assert (v.balance, v.usage, v.overage, v.grant_balances) == (D(30), D(50), D(0), {"L": D(30)})
    assert v.total_available == D(30 + 20 + 30)  # covered in the period (30 + 20) + the balance


def test_a_voided_grant_stops_counting_and_keeps_what_was_used():
    g = grant("G", 100, voided_at=T0 + timedelta(hours=1))
    events = [(T0 + timedelta(minutes=5), 60), (T0 + timedelta(hours=2), 5)]
    v = value([g], events, T0 + timedelta(hours=3))
    assert (v.balance, v.usage, v.overage) == (D(0), D(65), D(5))


@pytest.mark.parametrize(
    ("rollover", "expected_february"),
    [
        ({}, D(60)),  # default: keeps min(100, max(0, 70)) = 70, then 10 used
        ({"max_rollover": D(50)}, D(40)),  # min(50, 70) = 50, then 10 used
        ({"max_rollover": D(100), "min_rollover": D(100)}, D(90)),  # issueAfterReset: back to 100, then 10 used
    ],
)
def test_rollover_at_the_monthly_reset(rollover, expected_february):
    g = grant("G", 100, **rollover)
    events = [(T0 + timedelta(days=3), 30), (datetime(2026, 2, 5, tzinfo=UTC), 10)]
    at = datetime(2026, 2, 10, tzinfo=UTC)
    v = value([g], events, at)
    assert (v.balance, v.usage) == (expected_february, D(10))
    assert v.period == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_overage_is_forgotten_at_reset_unless_preserved():
    g = grant("G", 10, max_rollover=D(10), min_rollover=D(10))  # back to 10 at each reset
    events = [(T0 + timedelta(days=1), 15)]  # January: 5 over
    at = datetime(2026, 2, 2, tzinfo=UTC)
    v = value([g], events, at)
    assert (v.balance, v.overage, v.usage) == (D(10), D(0), D(0))
    v = value([g], events, at, preserve=True)  # the 5 burn the rolled-over 10 first
    assert (v.balance, v.overage, v.usage) == (D(5), D(0), D(0))


def test_a_recurring_grant_goes_back_to_its_amount():
    g = grant("G", 100, recurrence=((1, "day"), T0))
    events = [(T0 + timedelta(hours=5), 60), (T0 + timedelta(days=1, hours=5), 30)]
    v = value([g], events, T0 + timedelta(days=1, hours=6))
    assert (v.balance, v.usage, v.overage) == (D(70), D(90), D(0))
    # over its amount on day 1: 20 overage, carried into day 2, paid from the renewed 100
    events = [(T0 + timedelta(hours=5), 120), (T0 + timedelta(days=1, hours=5), 30)]
    v = value([g], events, T0 + timedelta(days=1, hours=6))
    assert (v.balance, v.overage) == (D(50), D(0))


def test_where_the_computation_must_start():
    at = datetime(2026, 3, 10, tzinfo=UTC)
    monthly = Timeline(MONTH, ((T0, T0),))
    fresh = grant("N", 5, effective_at=datetime(2026, 3, 2, tzinfo=UTC))
    assert first_period_start(monthly, [fresh], at, False) == datetime(2026, 3, 1, tzinfo=UTC)
    rolled = grant("R", 5, effective_at=datetime(2026, 2, 3, tzinfo=UTC))  # active on March 1: February counts
    assert first_period_start(monthly, [rolled], at, False) == datetime(2026, 2, 1, tzinfo=UTC)
    # a grant active on February 1 that began in January: back to January (its measure start)
    older = grant("O", 5, effective_at=datetime(2026, 1, 20, tzinfo=UTC))
    measure = datetime(2026, 1, 15, tzinfo=UTC)
    late_start = Timeline(MONTH, ((measure, T0),))
    assert first_period_start(late_start, [rolled, older], at, False) == measure
    assert first_period_start(late_start, [fresh], at, True) == measure


def test_usage_before_the_measuring_start_is_not_counted():
    g = grant("G", 100)
    measure = T0 + timedelta(days=5)
    events = [(T0 + timedelta(days=1), 40), (T0 + timedelta(days=6), 10)]
    v = value([g], events, T0 + timedelta(days=7), start=measure)
    assert (v.balance, v.usage) == (D(90), D(10))


def test_a_grant_effective_at_the_very_time_pays_the_overage():
    first = grant("A", 10)
    late = grant("B", 40, effective_at=T0 + timedelta(hours=2))
    events = [(T0 + timedelta(hours=1), 25)]  # 15 over A's 10
    v = value([first, late], events, T0 + timedelta(hours=2))
    assert (v.balance, v.overage, v.grant_balances) == (D(25), D(0), {"A": D(0), "B": D(25)})
    recurring = grant("R", 10, recurrence=((1, "hour"), T0))
    # 10 at 1:00, all used by the 25 (15 over); back to 10 at 2:00, the very time, which pays 10 of the 15
    v = value([recurring], events, T0 + timedelta(hours=2))
    assert (v.balance, v.overage) == (D(0), D(5))


def test_a_manual_reset_starts_a_period_and_rolls_over():
    # monthly from January 1; reset on January 20 at noon (anchor there): 60 of 100 used before it, 30 after
    reset = datetime(2026, 1, 20, 12, tzinfo=UTC)
    timeline = Timeline(MONTH, ((T0, T0), (reset, reset)))
    g = grant("G", 100, max_rollover=D(25))
    events = [(T0 + timedelta(days=2), 60), (reset + timedelta(hours=1), 30)]
    at = reset + timedelta(days=1)
    v = value_at([g], timeline.periods_between(T0, at), usage_of(events), at, False, {reset: False})
    # at the reset: min(25, max(0, 40)) = 25; then 30 used: 0 left, 5 over; the period is the reset's
    assert (v.balance, v.usage, v.overage) == (D(0), D(30), D(5))
    assert v.period == (reset, datetime(2026, 2, 20, 12, tzinfo=UTC))
    assert timeline.period_at(T0 + timedelta(days=3)) == (T0, reset)  # the period before ends at the reset
    assert timeline.last_reset == reset


def test_extra_cuts_change_nothing_and_the_trace_shows_each_phase():
    a = grant("A", 100, priority=1, expires_at=T0 + timedelta(days=31))
    b = grant("B", 50, priority=1)
    at = T0 + timedelta(days=10)
    trace = []
    cuts = [T0 + timedelta(hours=12), T0 + timedelta(days=2)]
    v = value_at([a, b], periods_between(T0, MONTH, T0, at), usage_of([(T0 + timedelta(days=1), "120")]), at,
                 cuts=cuts, trace=trace)  # fmt: skip
    assert (v.balance, v.usage, v.total_available) == (D(30), D(120), D(150))  # as without the cuts
    assert [(s.start, s.end, s.usage) for s in trace] == [
        (T0, cuts[0], D(0)), (cuts[0], cuts[1], D(120)), (cuts[1], at, D(0)),
    ]  # fmt: skip
    burnt = trace[1]
    assert burnt.balances_at_start == {"A": D(100), "B": D(50)}
    assert (burnt.balances_at_end, burnt.overage) == ({"A": D(0), "B": D(30)}, D(0))
    assert burnt.grant_usages == {"A": D(100), "B": D(20)}
