"""Day-based proration (billing/proration.py) against Lago's and Stripe's published worked examples.

Each test quotes its source and writes the arithmetic out. The rule (docs/billing.md): the local days a
phase was active, the day of a change going to the new phase, the day of a cancellation charged; the
amount of days [a, b) of an N-day period is round(fee x b / N) - round(fee x a / N), ROUND_HALF_UP to
the currency's minor unit.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.billing.periods import Schedule
from meterstream.billing.proration import DaySpan, day_spans, prorated, round_share
from meterstream.rating import prorate as rating_prorate
from meterstream.rating.money import round_money

D = Decimal


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def months(tz: str = "UTC") -> Schedule:
    return Schedule("monthly", "calendar", tz, date(2026, 1, 1))


def test_lago_upgrade_in_arrears() -> None:
    """Lago, "Upgrades and downgrades" (getlago.com/docs/guide/subscriptions/upgrades-downgrades), paid in
    arrears: "A customer subscribes to Plan A (€100/month, paid in arrears, calendar billing) on January
    1st, then upgrades to Plan B (€200/month) on January 15th. January 15th — Invoice for Plan A: 14 days
    prorated = €45.16 (14/31 × €100). January 31st — Invoice for Plan B: 17 days prorated = €109.68
    (17/31 × €200)." The day of the upgrade belongs to Plan B."""
    s = months()
    a, b = day_spans([(utc(2026, 1, 1), utc(2026, 1, 15, 10)), (utc(2026, 1, 15, 10), None)], s)
    january = s.period_containing(utc(2026, 1, 1))
    assert a == DaySpan(date(2026, 1, 1), date(2026, 1, 15)) and b == DaySpan(date(2026, 1, 15), None)
    # Plan A: days 0..14 of 31: round(100 x 14 / 31 = 45.161...) = 45.16
    assert prorated(D(100), 0, 14, january.days, "EUR") == D("45.16")
    # Plan B: days 14..31: round(200 x 31/31) - round(200 x 14/31 = 90.322...) = 200.00 - 90.32 = 109.68
    assert prorated(D(200), 14, 31, january.days, "EUR") == D("109.68")


def test_lago_calendar_start_mid_month() -> None:
    """Lago, "Assign a plan" (getlago.com/docs/guide/subscriptions/assign-plan), calendar billing: "Your
    customer signs up for the Premium plan, $50 monthly, on August 10th. There are 22 days left until the
    end of the month, including August 10th. Therefore, the subscription fee for August is: 22 days x $50
    / 31 days = $35.48"."""
    s = months()
    (span,) = day_spans([(utc(2026, 8, 10, 16), None)], s)
    august = s.period_containing(utc(2026, 8, 10))
    lo, hi = span.clip(august.first_day, august.end_day)
    assert (hi - lo).days == 22
    # days 9..31: 50.00 - round(50 x 9 / 31 = 14.516...) = 50.00 - 14.52 = 35.48 (= round(22 x 50 / 31 = 35.483...))
    assert prorated(D(50), (lo - august.first_day).days, 31, 31, "USD") == D("35.48")


def test_lago_plan_model_example_is_rounder_than_its_rule() -> None:
    """Lago, "Plan model" (getlago.com/docs/guide/plans/plan-model), pro-ratas: "A Customer X signs up for
    the Plan Start (base amount of 10€, with no trial period) on April 15, 2022 ... this Customer will be
    charged 5€ for the first month". That figure is half a month, not the day count its own rule gives:
    April 15..30 is 16 of 30 days, 10 x 16 / 30 = 5.333... -> 5.33, which is what Lago's daily rule (and
    ours) charges. The published 5€ is a rounded illustration; we keep the day count."""
    s = Schedule("monthly", "calendar", "UTC", date(2022, 1, 1))
    april = s.period_containing(utc(2022, 4, 15))
    (span,) = day_spans([(utc(2022, 4, 15), None)], s)
    lo, _ = span.clip(april.first_day, april.end_day)
    assert (april.days, (lo - april.first_day).days) == (30, 14)
    # days 14..30: 10.00 - round(10 x 14 / 30 = 4.666...) = 10.00 - 4.67 = 5.33
    assert prorated(D(10), 14, 30, 30, "EUR") == D("5.33") != D("5.00")


def test_lago_termination_counts_the_last_day() -> None:
    """lago-api spec/scenarios/subscriptions/upgrade_proration_spec.rb ("when the subscription started in
    the middle of a calendar period"): a quarterly plan of 91,000 cents in arrears, started
    2024-05-20T10:00Z, terminated 2024-06-20T10:00Z: the fee is 32,000 cents. Q2 2024 has 30 + 31 + 30 = 91
    days (1,000 cents a day); May 20 .. June 20 with both days counted is 12 + 20 = 32 days."""
    s = Schedule("quarterly", "calendar", "UTC", date(2024, 1, 1))
    quarter = s.period_containing(utc(2024, 5, 20))
    (span,) = day_spans([(utc(2024, 5, 20, 10), utc(2024, 6, 20, 10))], s)
    assert span == DaySpan(date(2024, 5, 20), date(2024, 6, 21))
    a, b = (span.first - quarter.first_day).days, (span.end - quarter.first_day).days
    assert (quarter.days, a, b) == (91, 49, 81)
    # round(910 x 81 / 91 = 810) - round(910 x 49 / 91 = 490) = 320.00
    assert prorated(D("910.00"), a, b, quarter.days, "EUR") == D("320.00")


def test_stripe_upgrade_halfway() -> None:
    """Stripe, "Prorations" (stripe.com/docs/billing/subscriptions/prorations): "If a customer upgrades
    from a 10 USD monthly plan to a 20 USD option halfway through the billing period, the customer is
    billed an additional 5 USD: Unused time on original 10 USD plan (credit) -5 USD; Remaining time on new
    20 USD plan (debit) +10 USD". Halfway in April (30 days) is April 16 00:00: 15 days on each side."""
    credit = prorated(D(10), 15, 30, 30, "USD")  # 10.00 - round(10 x 15/30 = 5) = 5.00
    debit = prorated(D(20), 15, 30, 30, "USD")  # 20.00 - round(20 x 15/30 = 10) = 10.00
    assert (-credit, debit, debit - credit) == (D("-5.00"), D("10.00"), D("5.00"))


def test_stripe_prorates_by_the_second_we_by_the_day() -> None:
    """Stripe (same page, and "Customize subscription proration calculations"): "Stripe calculates
    proration down to the second". A change at the exact middle of May 2026 (31 days), May 16 12:00 UTC,
    gives Stripe the example's -5 / +10 (a factor of 15.5 / 31 = 1/2, rating.prorate's "second" rule);
    ours gives May 16 to the new plan, 16 of 31 days: -5.16 / +10.32, net +5.16 instead of +5.00."""
    may, june, change = utc(2026, 5, 1), utc(2026, 6, 1), utc(2026, 5, 16, 12)
    stripe_credit = round_money(rating_prorate(D(10), may, june, change, june, rule="second"), "USD")
    stripe_debit = round_money(rating_prorate(D(20), may, june, change, june, rule="second"), "USD")
    assert (stripe_credit, stripe_debit) == (D("5.00"), D("10.00"))
    s = months()
    _, new = day_spans([(may, change), (change, None)], s)
    a = (new.first - date(2026, 5, 1)).days
    assert a == 15  # May 16 is day 15 (0-based): days 15..31 are the new plan's 16 days
    credit = prorated(D(10), a, 31, 31, "USD")  # 10.00 - round(10 x 15/31 = 4.838...) = 10.00 - 4.84 = 5.16
    debit = prorated(D(20), a, 31, 31, "USD")  # 20.00 - round(20 x 15/31 = 9.677...) = 20.00 - 9.68 = 10.32
    assert (credit, debit, debit - credit) == (D("5.16"), D("10.32"), D("5.16"))


def test_stripe_backdating_fractions_match() -> None:
    """Stripe, "Backdate subscriptions" (stripe.com/docs/billing/subscriptions/backdating), monthly on the
    1st: "backdate ... to February 15 (in a non-leap year) ... the prorated amount for the 14 days of
    February 15 to March 1 is exactly half the amount of a normal monthly charge"; "January 15 ... the
    prorated amount for the 17 days of January 15 to February 1 is 17 divided by 31 (or 0.548)". Stripe
    measures against an imagined month from the start date; for these two dates the calendar month has the
    same length, so our fractions are the same: 14/28 and 17/31 of 10.00."""
    assert prorated(D(10), 14, 28, 28, "USD") == D("5.00")  # 10 - round(10 x 14/28 = 5) = 5.00
    assert prorated(D(10), 14, 31, 31, "USD") == D("5.48")  # 10 - round(10 x 14/31 = 4.516...) = 10 - 4.52


def test_round_half_up_away_from_zero_exactly() -> None:
    assert round_share(D("0.25"), 1, 2, "USD") == D("0.13")  # 0.125 -> 0.13
    assert round_share(D("-0.25"), 1, 2, "USD") == D("-0.13")  # -0.125 -> -0.13 (away from zero)
    assert round_share(D("0.25"), 1, 3, "USD") == D("0.08")  # 0.08333... -> 0.08
    assert round_share(D(5), 1, 2, "JPY") == D(3)  # 2.5 yen -> 3
    assert round_share(D(1), 1, 8, "KWD") == D("0.125")  # 3 minor digits: exact
    with pytest.raises(ValueError, match="unknown currency 'EUX'"):
        round_share(D(1), 1, 2, "EUX")


def test_one_day_pieces_add_up_where_separate_rounding_would_not() -> None:
    # 100.00 over 31 days: one day alone is round(100/31 = 3.2258...) = 3.23, and 31 x 3.23 = 100.13.
    # Our pieces telescope: day 0 = 3.23, day 1 = round(200/31 = 6.4516...) - 3.23 = 6.45 - 3.23 = 3.22, ...
    pieces = [prorated(D(100), d, d + 1, 31, "USD") for d in range(31)]
    assert pieces[0] == D("3.23") and pieces[1] == D("3.22")
    assert sum(pieces) == D("100.00")
    assert {str(p) for p in pieces} == {"3.22", "3.23"}  # never more than one cent from 3.2258...


def test_day_spans_rules() -> None:
    s = months()
    # cancellation mid-day: the day is charged; at midnight: it is not
    assert day_spans([(utc(2026, 1, 1), utc(2026, 1, 20, 14))], s) == [DaySpan(date(2026, 1, 1), date(2026, 1, 21))]
    assert day_spans([(utc(2026, 1, 1), utc(2026, 1, 20))], s) == [DaySpan(date(2026, 1, 1), date(2026, 1, 20))]
    # a phase that starts and ends on a day another phase takes over charges nothing
    spans = day_spans(
        [
            (utc(2026, 1, 1), utc(2026, 1, 10, 12)),
            (utc(2026, 1, 10, 12), utc(2026, 1, 10, 18)),
            (utc(2026, 1, 10, 18), None),
        ],
        s,
    )
    assert spans == [
        DaySpan(date(2026, 1, 1), date(2026, 1, 10)),
        DaySpan(date(2026, 1, 10), date(2026, 1, 10)),
        DaySpan(date(2026, 1, 10), None),
    ]
    # a gap: the day the first phase ends is its own (the next one starts days later)
    spans = day_spans([(utc(2026, 1, 1), utc(2026, 1, 10, 12)), (utc(2026, 1, 12), None)], s)
    assert spans == [DaySpan(date(2026, 1, 1), date(2026, 1, 11)), DaySpan(date(2026, 1, 12), None)]


def test_days_are_the_customers_local_days() -> None:
    # 2026-03-15T03:30Z is March 14, 23:30 in New York (UTC-4 since March 8): the change happens on the 14th
    s = months("America/New_York")
    old, new = day_spans([(utc(2026, 3, 1, 5), utc(2026, 3, 15, 3, 30)), (utc(2026, 3, 15, 3, 30), None)], s)
    assert old == DaySpan(date(2026, 3, 1), date(2026, 3, 14)) and new.first == date(2026, 3, 14)
    # in UTC the same change is on the 15th
    old_utc, _ = day_spans([(utc(2026, 3, 1, 5), utc(2026, 3, 15, 3, 30)), (utc(2026, 3, 15, 3, 30), None)], months())
    assert old_utc.end == date(2026, 3, 15)


def test_bad_day_offsets_are_refused() -> None:
    with pytest.raises(ValueError, match="days: need 0 <= first"):
        prorated(D(10), 5, 3, 30, "USD")
    with pytest.raises(ValueError, match="days: need 0 <= first"):
        prorated(D(10), 0, 31, 30, "USD")


@settings(deadline=None)  # a shared 2-core machine: no per-example time limit
@given(
    fee=st.decimals(min_value=0, max_value=D("1000000"), places=4, allow_nan=False, allow_infinity=False),
    days=st.sampled_from([7, 28, 29, 30, 31, 90, 91, 92, 365, 366]),
    cuts=st.sets(st.integers(min_value=1, max_value=365), max_size=12),
    currency=st.sampled_from(["USD", "EUR", "JPY", "KWD"]),
)
def test_property_pieces_of_a_period_add_up_exactly(fee: Decimal, days: int, cuts: set[int], currency: str) -> None:
    """Split a period at any days into any number of phases with the same price: the prorated pieces add
    up to the full (rounded) fee with no remainder, and each is within one minor unit of its own share."""
    bounds = [0, *sorted(c for c in cuts if c < days), days]
    pieces = [prorated(fee, a, b, days, currency) for a, b in pairwise(bounds)]
    assert sum(pieces, D(0)) == round_money(fee, currency)
    unit = D(1).scaleb(-{"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}[currency])
    for (a, b), piece in zip(pairwise(bounds), pieces, strict=True):
        assert abs(piece - round_share(fee, b - a, days, currency)) <= unit
