"""Billing periods: calendar and anniversary anchors, month ends, time zones and DST (billing/periods.py).

Expected boundaries are read off a calendar by hand; published examples are quoted where they exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.billing.periods import Schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cal(interval: str, tz: str = "UTC") -> Schedule:
    return Schedule(interval, "calendar", tz, date(2026, 1, 1))


def anniv(interval: str, start: date, tz: str = "UTC") -> Schedule:
    return Schedule(interval, "anniversary", tz, start)


def test_calendar_month_february_has_28_days() -> None:
    p = cal("monthly").period_containing(utc(2026, 2, 15, 12))
    assert (p.start, p.end, p.days) == (utc(2026, 2, 1), utc(2026, 3, 1), 28)


def test_calendar_week_starts_on_monday() -> None:
    # 2026-12-03 is a Thursday; its week runs Monday 2026-11-30 .. Sunday 2026-12-06
    p = cal("weekly").period_containing(utc(2026, 12, 3, 9))
    assert (p.start, p.end, p.days) == (utc(2026, 11, 30), utc(2026, 12, 7), 7)
    assert p.start.weekday() == 0


def test_calendar_quarter_and_year() -> None:
    q = cal("quarterly").period_containing(utc(2026, 5, 20))
    assert (q.start, q.end, q.days) == (utc(2026, 4, 1), utc(2026, 7, 1), 30 + 31 + 30)
    y = cal("yearly").period_containing(utc(2028, 7, 1))
    assert (y.start, y.end, y.days) == (utc(2028, 1, 1), utc(2029, 1, 1), 366)  # 2028 is a leap year


def test_period_end_belongs_to_the_next_period() -> None:
    s = cal("monthly")
    assert s.period_containing(utc(2026, 3, 1)).start == utc(2026, 3, 1)
    assert s.period_containing(utc(2026, 3, 1) - timedelta(microseconds=1)).start == utc(2026, 2, 1)


def test_anniversary_on_the_31st_follows_stripe() -> None:
    """Stripe, "Setting the subscription billing cycle date" (stripe.com/docs/subscriptions/billing-cycle):
    "A monthly subscription with a billing cycle anchor date of January 31 bills the last day of the month
    closest to the anchor date, so February 28 (or February 29 in a leap year), then March 31, April 30"."""
    s = anniv("monthly", date(2026, 1, 31))
    starts = [p.first_day for p in s.periods_between(utc(2026, 1, 31), utc(2026, 5, 1))]
    assert starts == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    leap = anniv("monthly", date(2028, 1, 31))
    assert leap.period_containing(utc(2028, 3, 1)).first_day == date(2028, 2, 29)
    # the period Feb 28 .. Mar 30 of 2026 is 31 days, Jan 31 .. Feb 27 is 28
    assert [p.days for p in s.periods_between(utc(2026, 1, 31), utc(2026, 3, 1))] == [28, 31]


def test_anniversary_lago_example() -> None:
    """Lago, "Assign a plan" (getlago.com/docs/guide/subscriptions/assign-plan), anniversary billing: "Your
    customer signs up for the Premium plan on August 10th ... the customer will be billed every 10th of the
    month. The first billing period will run from August 10th to September 9th."""
    p = anniv("monthly", date(2026, 8, 10)).period_containing(utc(2026, 8, 10, 15))
    assert (p.first_day, p.end_day - timedelta(days=1)) == (date(2026, 8, 10), date(2026, 9, 9))


def test_anniversary_weekly_follows_stripe() -> None:
    """Stripe (same page): "A weekly subscription with a billing cycle anchor date of Friday, June 3 bills
    every Friday thereafter." (June 3 was a Friday in 2022.)"""
    s = anniv("weekly", date(2022, 6, 3))
    starts = [p.first_day for p in s.periods_between(utc(2022, 6, 3), utc(2022, 6, 24))]
    assert starts == [date(2022, 6, 3), date(2022, 6, 10), date(2022, 6, 17)]
    assert all(d.weekday() == 4 for d in starts)


def test_anniversary_quarter_and_leap_day_year() -> None:
    q = anniv("quarterly", date(2026, 11, 30))
    starts = [p.first_day for p in q.periods_between(utc(2026, 11, 30), utc(2027, 9, 1))]
    # Nov 30 -> Feb 28 (no Feb 30 in 2027) -> May 30 -> Aug 30: back to the anchor day
    assert starts == [date(2026, 11, 30), date(2027, 2, 28), date(2027, 5, 30), date(2027, 8, 30)]
    y = anniv("yearly", date(2028, 2, 29))
    starts = [p.first_day for p in y.periods_between(utc(2028, 3, 1), utc(2032, 3, 1))]
    assert starts == [date(2028, 2, 29), date(2029, 2, 28), date(2030, 2, 28), date(2031, 2, 28), date(2032, 2, 29)]


def test_periods_are_computed_in_the_customer_time_zone() -> None:
    s = cal("monthly", "Europe/Paris")
    # 2026-01-31T23:30Z is 00:30 on February 1st in Paris (UTC+1): a February instant
    p = s.period_containing(utc(2026, 1, 31, 23, 30))
    assert p.first_day == date(2026, 2, 1)
    assert (p.start, p.end) == (utc(2026, 1, 31, 23), utc(2026, 2, 28, 23))


def test_dst_month_is_31_local_days_and_743_hours() -> None:
    # Paris moves from UTC+1 to UTC+2 on Sunday 2026-03-29: March starts 23:00Z Feb 28, ends 22:00Z Mar 31
    p = cal("monthly", "Europe/Paris").period_containing(utc(2026, 3, 15))
    assert (p.start, p.end, p.days) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22), 31)
    assert p.end - p.start == timedelta(hours=31 * 24 - 1)
    # and back in October (2026-10-25): 31 days of 24 h plus one hour
    o = cal("monthly", "Europe/Paris").period_containing(utc(2026, 10, 15))
    assert o.end - o.start == timedelta(hours=31 * 24 + 1)


def test_midnight_that_does_not_exist_starts_at_the_jump() -> None:
    # Chile moves its clocks from 00:00 (UTC-4) to 01:00 (UTC-3) on 2026-09-06: that day begins at 04:00Z
    s = anniv("weekly", date(2026, 9, 6), "America/Santiago")
    p = s.period(0)
    assert p.start == utc(2026, 9, 6, 4)
    assert p.start.astimezone(ZoneInfo("America/Santiago")).hour == 1
    assert s.period(-1).end == p.start  # contiguous across the jump
    assert p.end == utc(2026, 9, 13, 3)  # midnight of the 13th at UTC-3
    assert s.ceil_day(p.start) == date(2026, 9, 6)


def test_periods_between_lists_overlapping_periods() -> None:
    s = cal("monthly")
    ps = s.periods_between(utc(2026, 1, 15), utc(2026, 4, 1))
    assert [p.first_day.month for p in ps] == [1, 2, 3]  # April only starts at b, so it is not included
    assert s.periods_between(utc(2026, 4, 1), utc(2026, 4, 1)) == []
    assert all(a.end == b.start and b.index == a.index + 1 for a, b in pairwise(ps))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ValueError, match="at: naive datetime"):
        cal("monthly").period_containing(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone: unknown IANA time zone 'Mars/Olympus'"):
        cal("monthly", "Mars/Olympus")
    with pytest.raises(ValueError, match="interval: unknown billing interval 'daily'"):
        cal("daily")


ZONES = ["UTC", "Europe/Paris", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata"]


@settings(deadline=None)  # a shared 2-core machine: no per-example time limit
@given(
    at=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    interval=st.sampled_from(["weekly", "monthly", "quarterly", "yearly"]),
    anchor=st.sampled_from(["calendar", "anniversary"]),
    anchor_day=st.dates(min_value=date(1990, 1, 1), max_value=date(2089, 1, 1)),
    tz=st.sampled_from(ZONES),
)
def test_property_period_containing(at: datetime, interval: str, anchor: str, anchor_day: date, tz: str) -> None:
    s = Schedule(interval, anchor, tz, anchor_day)
    p = s.period_containing(at)
    assert p.start <= at < p.end
    assert s.period(p.index + 1).start == p.end and s.period(p.index - 1).end == p.start
    lo, hi = {"weekly": (7, 7), "monthly": (28, 31), "quarterly": (89, 92), "yearly": (365, 366)}[interval]
    assert lo <= p.days <= hi
    assert s.local_day(p.start) == p.first_day and s.local_day(p.end) == p.end_day
    if anchor == "anniversary" and interval != "weekly":
        # the anchor day, or the last day of a month that does not have it
        month_end = (p.first_day + timedelta(days=1)).day == 1
        assert p.first_day.day == anchor_day.day or (p.first_day.day < anchor_day.day and month_end)


def test_labels_name_calendar_months_by_month_and_other_periods_by_their_first_local_day() -> None:
    # Paris, calendar months: 2026-01-31T23:30Z is February 1st locally, so the February label
    paris = cal("monthly", "Europe/Paris")
    assert paris.label(paris.period_containing(utc(2026, 1, 31, 23, 30))) == "2026-02"
    # anniversary on the 15th: 2026-03-02 belongs to the period that began on February 15th
    s = anniv("monthly", date(2026, 1, 15))
    assert s.label(s.period_containing(utc(2026, 3, 2))) == "2026-02-15"
    # calendar week of Wednesday 2026-11-04: it began on Monday 2026-11-02
    w = cal("weekly")
    assert w.label(w.period_containing(utc(2026, 11, 4, 12))) == "2026-11-02"
    # calendar quarter: Q4 begins on October 1st
    q = cal("quarterly")
    assert q.label(q.period_containing(utc(2026, 11, 4))) == "2026-10-01"
