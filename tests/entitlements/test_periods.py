"""Usage periods (months clamped, from the anchor) and grant expirations (Go's AddDate: overflow carried)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterstream.entitlements.periods import (
    boundary,
    expires_at,
    interval_iso,
    interval_name,
    minute_up,
    parse_interval,
    period_at,
    periods_between,
)


def at(*args):
    return datetime(*args, tzinfo=UTC)


def test_month_boundaries_clamp_the_day_from_the_anchor():
    anchor = at(2026, 1, 31, 10)
    assert [boundary(anchor, (1, "month"), n) for n in range(-1, 4)] == [
        at(2025, 12, 31, 10), at(2026, 1, 31, 10), at(2026, 2, 28, 10), at(2026, 3, 31, 10), at(2026, 4, 30, 10),
    ]  # fmt: skip
    assert boundary(at(2024, 2, 29), (1, "year"), 1) == at(2025, 2, 28)


def test_the_period_holding_a_time():
    anchor = at(2026, 1, 31)
    assert period_at(anchor, (1, "month"), at(2026, 3, 30)) == (at(2026, 2, 28), at(2026, 3, 31))
    assert period_at(anchor, (1, "month"), at(2026, 3, 31)) == (at(2026, 3, 31), at(2026, 4, 30))  # [from, to)
    assert period_at(at(2026, 1, 1, 9), (6, "hour"), at(2025, 12, 31, 2)) == (at(2025, 12, 30, 21), at(2025, 12, 31, 3))
    assert period_at(at(2026, 1, 5), (2, "week"), at(2026, 1, 20)) == (at(2026, 1, 19), at(2026, 2, 2))
    assert periods_between(at(2026, 1, 1), (1, "month"), at(2026, 1, 15), at(2026, 3, 1)) == [
        (at(2026, 1, 15), at(2026, 2, 1)), (at(2026, 2, 1), at(2026, 3, 1)), (at(2026, 3, 1), at(2026, 4, 1)),
    ]  # fmt: skip


def test_grant_expirations_carry_the_overflow_as_go_does():
    assert expires_at(at(2026, 1, 31), "MONTH", 1) == at(2026, 3, 3)
    assert expires_at(at(2028, 1, 31), "MONTH", 1) == at(2028, 3, 2)  # a leap year
    assert expires_at(at(2024, 2, 29), "YEAR", 1) == at(2025, 3, 1)
    assert expires_at(at(2026, 1, 1, 23), "HOUR", 2) == at(2026, 1, 2, 1)
    assert expires_at(at(2026, 1, 1), "WEEK", 2) == at(2026, 1, 15)


def test_intervals_by_name_and_iso_duration():
    assert parse_interval("MONTH") == (1, "month")
    assert parse_interval("PT6H") == (6, "hour")
    assert parse_interval("P2W") == (2, "week")
    assert (interval_name((1, "day")), interval_name((2, "week")), interval_iso((1, "month"))) == ("DAY", "P2W", "P1M")
    for bad in ("HOUR", "P1M2D", "PT0H", "P0D", "monthly", "PT30M"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_minute_rounding_up():
    assert minute_up(at(2026, 1, 1, 10, 0, 0)) == at(2026, 1, 1, 10, 0)
    assert minute_up(datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC)) == at(2026, 1, 1, 10, 1)


def test_a_timeline_with_resets_that_keep_or_move_the_anchor():
    from meterstream.entitlements.periods import Timeline

    t = Timeline((1, "month"), ((at(2026, 1, 10), at(2026, 1, 1)), (at(2026, 2, 15), at(2026, 2, 15)),
                                (at(2026, 3, 20), at(2026, 2, 15))))  # fmt: skip
    assert t.period_at(at(2026, 1, 12)) == (at(2026, 1, 10), at(2026, 2, 1))  # measuring began on the 10th
    assert t.period_at(at(2026, 2, 10)) == (at(2026, 2, 1), at(2026, 2, 15))  # cut by the reset
    assert t.period_at(at(2026, 3, 1)) == (at(2026, 2, 15), at(2026, 3, 15))  # anchored at the reset
    assert t.period_at(at(2026, 3, 18)) == (at(2026, 3, 15), at(2026, 3, 20))
    assert t.period_at(at(2026, 4, 1)) == (at(2026, 3, 20), at(2026, 4, 15))  # the last reset kept the anchor
    assert t.resets() == (at(2026, 2, 15), at(2026, 3, 20)) and t.last_reset == at(2026, 3, 20)


def test_history_windows_follow_the_zone_midnights():
    from zoneinfo import ZoneInfo

    from meterstream.entitlements.periods import windows

    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 is 23 hours long in Berlin (clocks go forward at 02:00 local)
    days = windows(at(2026, 3, 28, 12), at(2026, 3, 30, 1), "DAY", berlin)
    assert days == [(at(2026, 3, 27, 23), at(2026, 3, 28, 23)), (at(2026, 3, 28, 23), at(2026, 3, 29, 22)),
                    (at(2026, 3, 29, 22), at(2026, 3, 30, 22))]  # fmt: skip
    months = windows(at(2026, 1, 15), at(2026, 3, 1), "MONTH", ZoneInfo("UTC"))
    assert months == [(at(2026, 1, 1), at(2026, 2, 1)), (at(2026, 2, 1), at(2026, 3, 1))]
    assert windows(at(2026, 1, 1, 10, 30), at(2026, 1, 1, 12), "HOUR", ZoneInfo("UTC")) == [
        (at(2026, 1, 1, 10), at(2026, 1, 1, 11)), (at(2026, 1, 1, 11), at(2026, 1, 1, 12))]  # fmt: skip
