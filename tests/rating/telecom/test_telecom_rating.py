"""Table-driven rating cases; every expected number is worked by hand in the comment.

Plan: see plans.py (NAT 60/1 at 0.10/0.04/0.02 per minute peak/offpeak/weekend,
MOB 60/60 at 0.30, INTL 0.50 connect + 1.20 first minute + 0.60/min, cap 3.00,
bundle NAT_MIN 600 s national).  2025-03-04 is a Tuesday, 2025-03-07 a Friday.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterstream.rating.telecom import NoRate, parse_telecom_plan, rate_cdr

from .plans import berlin, section

D = Decimal

# (id, meter, destination, start, quantity, bundle_used, cost, segments, lines)
# segments: (band, usage, billed, increments, bundle_id, amount)
CASES = [
    (
        # peak [0,120) billed 120 s -> 0.10*120/60 = 0.20 (1 block + 60 steps = 61 increments)
        # offpeak [120,180) billed 60 s -> 0.04; total 0.24
        "peak_to_offpeak",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 18, 58),
        180,
        {"NAT_MIN": 600},
        "0.2400",
        [("peak", 120, 120, 61, None, "0.20"), ("offpeak", 60, 60, 60, None, "0.04")],
        [("voice_seconds/national/peak", "0.2000"), ("voice_seconds/national/offpeak", "0.0400")],
    ),
    (
        # Fri 23:59:30 +90 s: offpeak [0,30) but the first 60 s block starts there -> offpeak bills 60 s
        # = 0.04; weekend [30,90) bills the 1 s steps 60..89 = 30 s at 0.02/min = 0.01; total 0.05
        "midnight_friday_to_weekend",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 7, 23, 59, 30),
        90,
        {"NAT_MIN": 600},
        "0.0500",
        [("offpeak", 30, 60, 1, None, "0.04"), ("weekend", 60, 30, 30, None, "0.01")],
        [("voice_seconds/national/offpeak", "0.0400"), ("voice_seconds/national/weekend", "0.0100")],
    ),
    (
        # Tue 23:59:30 -> Wed: offpeak on both sides, no split: 90 s * 0.04/60 = 0.06
        "midnight_same_band_not_split",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 23, 59, 30),
        90,
        {"NAT_MIN": 600},
        "0.0600",
        [("offpeak", 90, 90, 31, None, "0.06")],
        [("voice_seconds/national/offpeak", "0.0600")],
    ),
    (
        # 60/1, 25 s: the first block bills 60 s -> 0.10
        "sub_minute_60_1",
        "voice_seconds",
        "4930123",
        berlin(2025, 3, 4, 10),
        25,
        {"NAT_MIN": 600},
        "0.1000",
        [("peak", 25, 60, 1, None, "0.10")],
        [("voice_seconds/national/peak", "0.1000")],
    ),
    (
        # 60/1, 61 s: 60 + 1 -> 61 s * 0.10/60 = 0.101666.. -> half_up 0.1017
        "just_over_a_minute_60_1",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 10),
        61,
        {"NAT_MIN": 600},
        "0.1017",
        [("peak", 61, 61, 2, None, "0.10" + "1" + "6" * 56 + "7")],  # 61/600 to 60 significant digits
        [("voice_seconds/national/peak", "0.1017")],
    ),
    (
        # 60/60, 25 s -> one 60 s block at 0.30/min = 0.30
        "sub_minute_60_60",
        "voice_seconds",
        "+4917123",
        berlin(2025, 3, 4, 10),
        25,
        {},
        "0.3000",
        [("peak", 25, 60, 1, None, "0.30")],
        [("voice_seconds/mobile/peak", "0.3000")],
    ),
    (
        # 60/60, 61 s -> two blocks, 120 s -> 0.60
        "just_over_a_minute_60_60",
        "voice_seconds",
        "+4917123",
        berlin(2025, 3, 4, 10),
        61,
        {},
        "0.6000",
        [("peak", 61, 120, 2, None, "0.60")],
        [("voice_seconds/mobile/peak", "0.6000")],
    ),
    (
        # a zero-length record bills nothing, no connect fee
        "zero_duration",
        "voice_seconds",
        "+44207",
        berlin(2025, 3, 4, 10),
        0,
        {},
        "0.0000",
        [("peak", 0, 0, 0, None, "0")],
        [("voice_seconds/international/peak", "0.0000")],
    ),
    (
        # INTL Tue 18:59 +150 s, 60/60: peak [0,60) -> block [0,60) group 1.20 + connect 0.50 = 1.70;
        # offpeak [60,150) -> blocks [60,180) at 0.60/min = 1.20 (no second connect fee); total 2.90
        "connect_fee_once_across_bands",
        "voice_seconds",
        "+44207",
        berlin(2025, 3, 4, 18, 59),
        150,
        {},
        "2.9000",
        [("peak", 60, 60, 1, None, "1.70"), ("offpeak", 90, 120, 2, None, "1.20")],
        [("voice_seconds/international/peak", "1.7000"), ("voice_seconds/international/offpeak", "1.2000")],
    ),
    (
        # INTL 120 s: 0.50 + 1.20 (first minute) + 0.60 (second) = 2.30, under the 3.00 cap
        "rate_groups_under_cap",
        "voice_seconds",
        "+44207",
        berlin(2025, 3, 4, 10),
        120,
        {},
        "2.3000",
        [("peak", 60, 60, 1, None, "1.70"), ("peak", 60, 60, 1, None, "0.60")],
        [("voice_seconds/international/peak", "2.3000")],
    ),
    (
        # INTL 300 s: 0.50 + 1.20 + 4*0.60 = 4.10 > cap 3.00 -> 3.00; first piece keeps 1.70,
        # the second is cut from 2.40 to 1.30
        "cost_cap",
        "voice_seconds",
        "+44207",
        berlin(2025, 3, 4, 10),
        300,
        {},
        "3.0000",
        [("peak", 60, 60, 1, None, "1.70"), ("peak", 240, 240, 4, None, "1.30")],
        [("voice_seconds/international/peak", "3.0000")],
    ),
    (
        # 540 of 600 bundle seconds used -> 60 left: [0,60) free, [60,150) = 90 s * 0.10/60 = 0.15
        "bundle_runs_out_mid_call",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 10),
        150,
        {"NAT_MIN": 540},
        "0.1500",
        [("peak", 60, 60, 1, "NAT_MIN", "0"), ("peak", 90, 90, 90, None, "0.15")],
        [("voice_seconds/national/peak", "0.1500")],
    ),
    (
        # 30 s left: the bundle ends inside the first 60 s block; [0,30) free, [30,150) = 120 s charged
        # pro rata = 0.20; the block is counted once, in the piece where it starts
        "bundle_runs_out_inside_first_block",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 10),
        150,
        {"NAT_MIN": 570},
        "0.2000",
        [("peak", 30, 30, 1, "NAT_MIN", "0"), ("peak", 120, 120, 90, None, "0.20")],
        [("voice_seconds/national/peak", "0.2000")],
    ),
    (
        # 100 s left, call 18:58 +180 s: peak [0,120): 100 s free, 20 s * 0.10/60 = 0.0333..;
        # offpeak 60 s = 0.04; total 0.07333.. -> 0.0733 (lines 0.0333 + 0.0400)
        "bundle_runs_out_then_band_changes",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 18, 58),
        180,
        {"NAT_MIN": 500},
        "0.0733",
        # increments: the free piece holds the block at 0 and steps 60..99 (41), the charged one 100..119
        [
            ("peak", 100, 100, 41, "NAT_MIN", "0"),
            ("peak", 20, 20, 20, None, "0.0" + "3" * 60),  # 1/30 to 60 significant digits (money.PRECISION)
            ("offpeak", 60, 60, 60, None, "0.04"),
        ],
        [("voice_seconds/national/peak", "0.0333"), ("voice_seconds/national/offpeak", "0.0400")],
    ),
    (
        # bundle untouched: all 150 s free
        "bundle_covers_call",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 10),
        150,
        {},
        "0.0000",
        [("peak", 150, 150, 91, "NAT_MIN", "0")],
        [("voice_seconds/national/peak", "0.0000")],
    ),
    (
        # bundle spent (or overspent): 150 s * 0.10/60 = 0.25
        "bundle_spent",
        "voice_seconds",
        "+4930123",
        berlin(2025, 3, 4, 10),
        150,
        {"NAT_MIN": 700},
        "0.2500",
        [("peak", 150, 150, 91, None, "0.25")],
        [("voice_seconds/national/peak", "0.2500")],
    ),
    (
        # the national bundle does not cover mobile: 60 s * 0.30/60 = 0.30
        "bundle_other_group",
        "voice_seconds",
        "+4917123",
        berlin(2025, 3, 4, 10),
        60,
        {},
        "0.3000",
        [("peak", 60, 60, 1, None, "0.30")],
        [("voice_seconds/mobile/peak", "0.3000")],
    ),
    (
        # holiday (Thu 25 Dec) -> weekend band: 120 s * 0.02/60 = 0.04
        "holiday",
        "voice_seconds",
        "+4930123",
        berlin(2025, 12, 25, 10),
        120,
        {"NAT_MIN": 600},
        "0.0400",
        [("weekend", 120, 120, 61, None, "0.04")],
        [("voice_seconds/national/weekend", "0.0400")],
    ),
    (
        # the day before is an ordinary Wednesday: peak, 120 s * 0.10/60 = 0.20
        "day_before_holiday",
        "voice_seconds",
        "+4930123",
        berlin(2025, 12, 24, 10),
        120,
        {"NAT_MIN": 600},
        "0.2000",
        [("peak", 120, 120, 61, None, "0.20")],
        [("voice_seconds/national/peak", "0.2000")],
    ),
    (
        # data session from 18:30 (peak) moving 50 MB, running past 19:00: rated at its start band,
        # 50 MB * 0.05 = 2.50
        "data_straddling_band_rated_at_start",
        "data_bytes",
        None,
        berlin(2025, 3, 4, 18, 30),
        50_000_000,
        {},
        "2.5000",
        [("peak", 50_000_000, 50_000_000, 50, None, "2.50")],
        [("data_bytes/data/peak", "2.5000")],
    ),
    (
        # the same session starting at 19:00 is offpeak: 50 * 0.01 = 0.50
        "data_started_offpeak",
        "data_bytes",
        None,
        berlin(2025, 3, 4, 19),
        50_000_000,
        {},
        "0.5000",
        [("offpeak", 50_000_000, 50_000_000, 50, None, "0.50")],
        [("data_bytes/data/offpeak", "0.5000")],
    ),
    (
        # 1,500,001 bytes with 1/1 MB increments -> 2 MB billed -> 0.10
        "data_rounds_up_to_whole_mb",
        "data_bytes",
        None,
        berlin(2025, 3, 4, 10),
        1_500_001,
        {},
        "0.1000",
        [("peak", 1_500_001, 2_000_000, 2, None, "0.10")],
        [("data_bytes/data/peak", "0.1000")],
    ),
    (
        # 3 SMS at 0.09 = 0.27, priced by the *any default rate
        "sms",
        "sms",
        "+4917123",
        berlin(2025, 3, 4, 10),
        3,
        {},
        "0.2700",
        [("peak", 3, 3, 3, None, "0.27")],
        [("sms/sms/peak", "0.2700")],
    ),
]


@pytest.mark.parametrize(
    ("meter", "destination", "start", "quantity", "used", "cost", "segments", "lines"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_rating_cases(plan, meter, destination, start, quantity, used, cost, segments, lines):
    dims = {} if destination is None else {"destination": destination}
    used = {k: D(v) for k, v in used.items()}
    r = rate_cdr(plan, meter=meter, quantity=D(quantity), start=start, dimensions=dims, bundle_used=used)
    assert r.cost == D(cost)
    assert str(r.cost) == cost  # rounded to exactly 4 places
    got = [(s.band, s.usage, s.billed, s.increments, s.bundle_id, s.amount) for s in r.segments]
    want = [(b, D(u), D(bl), n, bid, D(a)) for b, u, bl, n, bid, a in segments]
    assert got == want
    assert [(k, str(a)) for k, a in r.lines] == lines
    assert r.line_key == lines[0][0]
    assert r.currency == "EUR"
    # invariants of every record
    assert sum(s.usage for s in r.segments) == D(quantity)
    assert sum(s.billed for s in r.segments) == r.billed
    assert sum(a for _, a in r.lines) == r.cost
    assert sum(s.connect_fee for s in r.segments[1:]) == 0


def test_bundle_units_used_reported(plan):
    start = berlin(2025, 3, 4, 10)
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(150),
        start=start,
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(540)},
    )
    assert r.bundle_units_used == {"NAT_MIN": D(60)}  # 60 s were left
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(150),
        start=start,
        dimensions={"destination": "+4930"},
        bundle_used={},
    )
    assert r.bundle_units_used == {"NAT_MIN": D(150)}
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(150),
        start=start,
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert r.bundle_units_used == {}


def test_cap_flag_and_precise_cost(plan):
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(300),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": "+44207"},
        bundle_used={},
    )
    assert r.capped and r.precise_cost == D("3.00")
    assert sum(s.amount for s in r.segments) == D("3.00")
    assert [s.connect_fee for s in r.segments] == [D("0.50"), D(0)]


def test_segment_start_times_follow_the_split(plan):
    # 18:58 Berlin (17:58 UTC) +180 s: the offpeak part starts at 19:00 Berlin = 18:00 UTC
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(180),
        start=berlin(2025, 3, 4, 18, 58),
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert [s.start.astimezone(UTC) for s in r.segments] == [
        datetime(2025, 3, 4, 17, 58, tzinfo=UTC),
        datetime(2025, 3, 4, 18, 0, tzinfo=UTC),
    ]
    assert [s.rate_id for s in r.segments] == ["R_PEAK", "R_OFF"]


# --- rounding method --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "seconds", "cost"),
    [
        # 0.0001 per 60 s with 1/1 increments: 30 s -> 0.00005 (a tie), 20 s -> 0.0000333..
        ("half_up", 30, "0.0001"),
        ("up", 30, "0.0001"),
        ("down", 30, "0.0000"),
        ("half_up", 20, "0.0000"),
        ("up", 20, "0.0001"),
        ("down", 20, "0.0000"),
        # exact values are never moved: 60 s -> 0.0001
        ("up", 60, "0.0001"),
        ("down", 60, "0.0001"),
    ],
)
def test_rounding_methods(method, seconds, cost):
    s = section()
    s["rounding"]["method"] = method
    s["rates"]["R_PEAK"] = {"increments": "1/1", "groups": [{"price": "0.0001", "per": 60}]}
    plan = parse_telecom_plan(s, currency="EUR")
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(seconds),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert str(r.cost) == cost


@pytest.mark.parametrize(("method", "cost"), [("half_up", "0.0417"), ("up", "0.0417"), ("down", "0.0416")])
def test_sub_minute_1_1(method, cost):
    # 1/1 at 0.10/min, 25 s -> 25 * 0.10/60 = 0.041666..
    s = section()
    s["rounding"]["method"] = method
    s["rates"]["R_PEAK"]["increments"] = "1/1"
    plan = parse_telecom_plan(s, currency="EUR")
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(25),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert str(r.cost) == cost
    assert r.segments[0].billed == 25 and r.segments[0].increments == 25


def test_sum_of_pieces_is_rounded_once():
    # 07:59:30 +60 s at 0.0001/min (1/1): offpeak 30 s = 0.00005, peak 30 s = 0.00005.  Rounding each
    # piece half_up would give 0.0001 + 0.0001 = 0.0002; the record is rounded once: 0.0001.
    s = section()
    s["rates"]["R_PEAK"] = {"increments": "1/1", "groups": [{"price": "0.0001", "per": 60}]}
    s["rates"]["R_OFF"] = {"increments": "1/1", "groups": [{"price": "0.0001", "per": 60}]}
    plan = parse_telecom_plan(s, currency="EUR")
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(60),
        start=berlin(2025, 3, 4, 7, 59, 30),
        dimensions={"destination": "+4930"},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert [s.band for s in r.segments] == ["offpeak", "peak"]
    assert r.precise_cost == D("0.0001") and str(r.cost) == "0.0001"
    # lines round half_up to 0.0001 each; the largest (first) absorbs the -0.0001 difference
    assert [str(a) for _, a in r.lines] == ["0.0000", "0.0001"]


# --- longest prefix -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "destination_id", "rate_id"),
    [
        ("+491709555", "MOB", "R_MOB"),  # 491709 is declared but not priced: falls to 4917
        ("491709555", "MOB", "R_MOB"),  # without '+'
        ("+4917123", "MOB", "R_MOB"),
        ("+4930123", "NAT", "R_PEAK"),  # 4930 is not a prefix: 49
        ("+44207", "INTL", "R_INTL"),
    ],
)
def test_longest_priced_prefix(plan, number, destination_id, rate_id):
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(60),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": number},
        bundle_used={"NAT_MIN": D(600)},
    )
    assert (r.destination_id, r.segments[0].rate_id) == (destination_id, rate_id)


def test_priced_longer_prefix_wins():
    s = section()
    s["rates"]["R_PREMIUM"] = {"increments": "60/60", "groups": [{"price": "2.00", "per": 60}]}
    s["meters"]["voice_seconds"]["rates"].append({"destination": "MOB_PREMIUM", "rate": "R_PREMIUM"})
    plan = parse_telecom_plan(s, currency="EUR")
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(60),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": "+491709555"},
        bundle_used={},
    )
    assert r.destination_id == "MOB_PREMIUM" and str(r.cost) == "2.0000"


@pytest.mark.parametrize("dims", [{"destination": "+33123"}, {}, {"destination": ""}, {"destination": "+49-30"}])
def test_no_rate_for_destination(plan, dims):
    with pytest.raises(NoRate) as exc:
        rate_cdr(
            plan,
            meter="voice_seconds",
            quantity=D(60),
            start=berlin(2025, 3, 4, 10),
            dimensions=dims,
            bundle_used={},
        )
    assert exc.value.reason == "no rate for destination"


def test_default_rate_when_nothing_matches():
    s = section()
    s["rates"]["R_WORLD"] = {"increments": "60/60", "groups": [{"price": "1.00", "per": 60}]}
    s["meters"]["voice_seconds"]["rates"].append({"destination": "*any", "group": "world", "rate": "R_WORLD"})
    plan = parse_telecom_plan(s, currency="EUR")
    r = rate_cdr(
        plan,
        meter="voice_seconds",
        quantity=D(30),
        start=berlin(2025, 3, 4, 10),
        dimensions={"destination": "+33123"},
        bundle_used={},
    )
    assert (r.destination_id, r.line_key, str(r.cost)) == ("*any", "voice_seconds/world/peak", "1.0000")


def test_unrated_meter(plan):
    with pytest.raises(NoRate) as exc:
        rate_cdr(
            plan,
            meter="api_calls",
            quantity=D(1),
            start=berlin(2025, 3, 4, 10),
            dimensions={},
            bundle_used={},
        )
    assert exc.value.reason == "meter not rated by plan"


def test_bad_inputs(plan):
    with pytest.raises(ValueError, match="timezone-aware"):
        rate_cdr(plan, meter="sms", quantity=D(1), start=datetime(2025, 3, 4, 10), dimensions={}, bundle_used={})
    with pytest.raises(ValueError, match="quantity"):
        rate_cdr(plan, meter="sms", quantity=D(-1), start=berlin(2025, 3, 4, 10), dimensions={}, bundle_used={})
