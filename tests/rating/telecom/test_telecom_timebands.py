"""Time bands across DST changes; expected splits computed by hand in real (UTC) seconds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterstream.rating.telecom import parse_telecom_plan, rate_cdr

from .plans import berlin

D = Decimal

# night 00:00-06:00 every day (0.01/min), day otherwise (0.02/min), 1/1 increments
NIGHT_DAY = {
    "timezone": "Europe/Berlin",
    "time_bands": {
        "default": "day",
        "periods": [{"band": "night", "days": ["all", "holiday"], "end": "06:00"}],
    },
    "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
    "rates": {
        "R_NIGHT": {"increments": "1/1", "groups": [{"price": "0.01", "per": 60}]},
        "R_DAY": {"increments": "1/1", "groups": [{"price": "0.02", "per": 60}]},
    },
    "meters": {
        "voice_seconds": {
            "kind": "voice",
            "rates": [{"destination": "NAT", "bands": {"night": "R_NIGHT", "day": "R_DAY"}}],
        }
    },
}


@pytest.fixture(scope="module")
def night_day():
    return parse_telecom_plan(NIGHT_DAY, currency="EUR")


@pytest.mark.parametrize(
    ("start", "seconds", "parts", "day_starts_utc", "cost"),
    [
        (
            # autumn, 26 Oct 2025: 01:30 CEST = 23:30 UTC (25th); 6 real hours end 05:30 UTC = 06:30 CET.
            # 06:00 CET = 05:00 UTC, so night lasts 5.5 h = 19800 s (the wall clock shows only 4.5 h),
            # day 1800 s.  19800/60*0.01 = 3.30, 1800/60*0.02 = 0.60 -> 3.90
            datetime(2025, 10, 25, 23, 30, tzinfo=UTC),
            21600,
            [("night", 19800), ("day", 1800)],
            datetime(2025, 10, 26, 5, 0, tzinfo=UTC),
            "3.9000",
        ),
        (
            # spring, 30 Mar 2025: 01:30 CET = 00:30 UTC; 6 real hours end 06:30 UTC = 08:30 CEST.
            # 06:00 CEST = 04:00 UTC, so night lasts 3.5 h = 12600 s (wall clock: 4.5 h), day 04:00-06:30
            # UTC = 2.5 h = 9000 s.  12600/60*0.01 = 2.10, 9000/60*0.02 = 3.00 -> 5.10
            datetime(2025, 3, 30, 0, 30, tzinfo=UTC),
            21600,
            [("night", 12600), ("day", 9000)],
            datetime(2025, 3, 30, 4, 0, tzinfo=UTC),
            "5.1000",
        ),
        (
            # across the skipped hour itself: 01:50 CET + 20 min = 03:10 CEST, all night, 1200 s -> 0.20
            datetime(2025, 3, 30, 0, 50, tzinfo=UTC),
            1200,
            [("night", 1200)],
            None,
            "0.2000",
        ),
        (
            # Saturday 23:59 CET + 2 min: day -> night at midnight (23:00 UTC): 60 s day 0.02, 60 s night 0.01
            datetime(2025, 3, 29, 22, 59, tzinfo=UTC),
            120,
            [("day", 60), ("night", 60)],
            None,
            "0.0300",
        ),
    ],
    ids=["autumn_fall_back", "spring_forward", "inside_skipped_hour", "midnight"],
)
def test_dst_does_not_break_splits(night_day, start, seconds, parts, day_starts_utc, cost):
    r = rate_cdr(
        night_day,
        meter="voice_seconds",
        quantity=D(seconds),
        start=start,
        dimensions={"destination": "+4930"},
        bundle_used={},
    )
    assert [(s.band, s.usage) for s in r.segments] == [(b, D(u)) for b, u in parts]
    assert sum(s.usage for s in r.segments) == seconds
    if day_starts_utc is not None:
        assert r.segments[-1].start.astimezone(UTC) == day_starts_utc
    assert str(r.cost) == cost


def test_microsecond_start_splits_exactly(night_day):
    # 05:59:59.5 CET on a winter Tuesday + 1 s: 0.5 s night, 0.5 s day
    start = datetime(2025, 1, 7, 4, 59, 59, 500000, tzinfo=UTC)
    r = rate_cdr(
        night_day,
        meter="voice_seconds",
        quantity=D(1),
        start=start,
        dimensions={"destination": "+4930"},
        bundle_used={},
    )
    assert [(s.band, s.usage) for s in r.segments] == [("night", D("0.5")), ("day", D("0.5"))]
    # 1/1: the one increment starts at night -> billed 1 s at 0.01/60
    assert [s.billed for s in r.segments] == [D(1), D(0)]


def test_week_long_call_splits_every_band_change(plan):
    # Monday 00:00 Berlin, 7 days: the evening offpeak runs on into the next morning's offpeak (one
    # piece), so: off, peak, off, peak, ... Friday peak, Friday evening off, then the weekend
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(7 * 86400),
        start=berlin(2025, 3, 3),
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    bands = [s.band for s in r.segments]
    assert bands == ["offpeak", "peak"] * 5 + ["offpeak", "weekend"]
    # peak 5*11 h, offpeak 5*13 h, weekend 48 h, each per minute
    peak, off, we = 5 * 11 * 60, 5 * 13 * 60, 48 * 60
    assert r.precise_cost == D("0.10") * peak + D("0.04") * off + D("0.02") * we
