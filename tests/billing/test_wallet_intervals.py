"""The anniversaries of an interval top-up rule (billing/wallet_intervals.py), dates worked out on a calendar."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterstream.billing.wallet_intervals import anniversaries


def test_monthly_from_the_31st_falls_on_each_month_s_last_day_and_comes_back() -> None:
    days = anniversaries(date(2027, 1, 31), "monthly", date(2027, 1, 1), date(2027, 5, 31))
    assert days == [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30), date(2027, 5, 31)]


def test_leap_years() -> None:
    assert anniversaries(date(2028, 1, 30), "monthly", date(2028, 2, 1), date(2028, 2, 29)) == [date(2028, 2, 29)]
    assert anniversaries(date(2028, 2, 29), "yearly", date(2028, 1, 1), date(2032, 12, 31)) == [
        date(2028, 2, 29), date(2029, 2, 28), date(2030, 2, 28), date(2031, 2, 28), date(2032, 2, 29)]  # fmt: skip


def test_quarterly_semiannual_and_weekly() -> None:
    assert anniversaries(date(2026, 11, 30), "quarterly", date(2026, 12, 1), date(2027, 12, 31)) == [
        date(2027, 2, 28), date(2027, 5, 30), date(2027, 8, 30), date(2027, 11, 30)]  # fmt: skip
    assert anniversaries(date(2026, 8, 31), "semiannual", date(2026, 8, 31), date(2027, 9, 1)) == [
        date(2026, 8, 31), date(2027, 2, 28), date(2027, 8, 31)]  # fmt: skip
    # 3 December 2026 is a Thursday: the Thursdays of the next three weeks, the range's ends included
    assert anniversaries(date(2026, 12, 3), "weekly", date(2026, 12, 10), date(2026, 12, 24)) == [
        date(2026, 12, 10), date(2026, 12, 17), date(2026, 12, 24)]  # fmt: skip


def test_a_range_before_the_anchor_or_empty_has_none() -> None:
    assert anniversaries(date(2027, 3, 15), "monthly", date(2027, 1, 1), date(2027, 3, 14)) == []
    assert anniversaries(date(2027, 3, 15), "weekly", date(2027, 3, 16), date(2027, 3, 21)) == []
    assert anniversaries(date(2026, 10, 15), "monthly", date(2026, 12, 1), date(2026, 12, 14)) == []


def test_a_long_range_starts_near_its_first_day() -> None:
    """An anchor years back: the anniversaries of the range only (counted from the anchor, not the range)."""
    assert anniversaries(date(2001, 5, 31), "monthly", date(2026, 6, 1), date(2026, 7, 31)) == [
        date(2026, 6, 30), date(2026, 7, 31)]  # fmt: skip
    assert anniversaries(date(2001, 1, 4), "weekly", date(2026, 12, 1), date(2026, 12, 7)) == [date(2026, 12, 3)]


def test_an_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^interval: one of weekly, monthly, quarterly, semiannual, yearly"):
        anniversaries(date(2026, 1, 1), "daily", date(2026, 1, 1), date(2026, 2, 1))


@given(anchor=st.dates(date(1990, 1, 1), date(2040, 12, 31)), first=st.dates(date(1990, 1, 1), date(2041, 12, 31)),
       days=st.integers(0, 800),
       interval=st.sampled_from(["weekly", "monthly", "quarterly", "semiannual", "yearly"]))  # fmt: skip
def test_skipping_ahead_to_the_range_loses_no_anniversary(anchor, first, days, interval) -> None:  # type: ignore[no-untyped-def]
    """The range's anniversaries equal those of a walk from the anchor itself, one by one, by the calendar: every
    7 days, or the anchor's day (else the month's last) every 1 / 3 / 6 / 12 months."""
    import calendar

    last = first + timedelta(days=days)
    step = {"monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}.get(interval)
    walked, k = [], 0
    while True:
        if step is None:
            day = anchor + timedelta(days=7 * k)
        else:
            months = anchor.month - 1 + step * k
            y, m = anchor.year + months // 12, months % 12 + 1
            day = date(y, m, min(anchor.day, calendar.monthrange(y, m)[1]))
        if day > last:
            break
        walked.append(day)
        k += 1
    assert anniversaries(anchor, interval, first, last) == [d for d in walked if d >= first]
