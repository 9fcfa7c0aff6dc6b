"""``max_duration``: the longest call a balance pays for; hand calculations, then a differential test.

Hand plan (below): Berlin, peak Mon-Fri 08:00-18:00, off-peak otherwise. National calls (49...):
connect fee 0.10, 60/60, 0.06/min peak, 0.03/min off-peak; bundle FREE5 of 5 free minutes.
2025-03-04 is a Tuesday.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.rating.telecom import NoRate, parse_telecom_plan, rate_cdr
from meterstream.rating.telecom.authorize import max_duration
from meterstream.rating.telecom.session_rules import SessionRules
from meterstream.rating.telecom.sessions import SessionError, SessionRecord, rate_session_record

from .plans import berlin
from .strategies import caps, starts, used

D = Decimal
NAT = {"destination": "+4930123"}
SPENT = {"FREE5": D(300)}  # the bundle used up
TUE_10 = berlin(2025, 3, 4, 10)

DATA, FREE = "R_DATA", "R_FREE"
SECTION = {
    "timezone": "Europe/Berlin",
    "rounding": {"decimals": 4, "method": "half_up"},
    "time_bands": {
        "default": "offpeak",
        "periods": [{"band": "peak", "days": ["weekdays"], "start": "08:00", "end": "18:00"}],
    },
    "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
    "rates": {
        "R_PEAK": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.06", "per": 60}]},
        "R_OFF": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.03", "per": 60}]},
        "R_SEC": {"increments": "60/1", "groups": [{"price": "0.10", "per": 60}]},
        "R_DATA": {"increments": "1/1", "groups": [{"price": "0.02", "per": 1}]},
        "R_FREE": {"groups": [{"price": "0", "per": 1}]},
    },
    "meters": {
        "voice_seconds": {
            "kind": "voice",
            "rates": [{"destination": "NAT", "bands": {"peak": "R_PEAK", "offpeak": "R_OFF"}}],
        },
        "voice_fine": {"kind": "voice", "rates": [{"destination": "NAT", "rate": "R_SEC"}]},
        "data_bytes": {"kind": "data", "unit": "MB", "rates": [{"destination": "*any", "group": "data", "rate": DATA}]},
        "data_free": {"kind": "data", "unit": "MB", "rates": [{"destination": "*any", "group": "data", "rate": FREE}]},
    },
    "bundles": [{"id": "FREE5", "meter": "voice_seconds", "amount": 5, "unit": "minutes"}],
}


@pytest.fixture(scope="module")
def auth_plan():
    return parse_telecom_plan(SECTION, currency="EUR")


def md(plan, balance, *, start=TUE_10, used=SPENT, meter="voice_seconds", dims=NAT, **kw):
    return max_duration(plan, meter=meter, balance=D(balance), start=start, dimensions=dims, bundle_used=used, **kw)


@pytest.mark.parametrize(
    ("balance", "start", "used", "seconds"),
    [
        # 1.00 = 0.10 connect + 15 x 0.06: 15 minutes
        ("1.00", TUE_10, SPENT, 900),
        # 1.03: the 16th minute would make 1.06: still 15 minutes
        ("1.03", TUE_10, SPENT, 900),
        # 17:55: 0.10 + 5 peak minutes (0.30) = 0.40; 0.60 left at 0.03 = 20 off-peak minutes: 25 minutes
        ("1.00", berlin(2025, 3, 4, 17, 55), SPENT, 1500),
        # 5 free minutes first: 0.10 + 15 x 0.06 = 1.00 after them: 20 minutes
        ("1.00", TUE_10, {}, 1200),
        # less than the connect fee: nothing
        ("0.05", TUE_10, SPENT, 0),
        # connect fee + one minute = 0.16 > 0.15: nothing ...
        ("0.15", TUE_10, SPENT, 0),
        # ... unless the bundle pays the minutes: 0.10 then 5 free minutes, the 6th costs 0.06 (0.16)
        ("0.15", TUE_10, {}, 300),
        # 2 free minutes left, then 0.10 + 3 x 0.06 = 0.28: 5 minutes
        ("0.30", TUE_10, {"FREE5": D(180)}, 300),
        # 30 free seconds left: they end inside the first minute, whose other 30 s cost 0.03 (pro rata):
        # 0.10 pays the connect fee only, so nothing; 0.13 pays the first minute, the second costs 0.06
        ("0.10", TUE_10, {"FREE5": D(270)}, 0),
        ("0.13", TUE_10, {"FREE5": D(270)}, 60),
    ],
    ids=[
        "15_minutes",
        "just_short_of_16",
        "band_change_at_18",
        "bundle_first",
        "below_connect_fee",
        "connect_plus_minute_too_much",
        "bundle_then_stop",
        "half_spent_bundle",
        "bundle_ends_inside_a_minute",
        "bundle_ends_inside_a_minute_paid",
    ],
)
def test_hand_calculations(auth_plan, balance, start, used, seconds):
    assert md(auth_plan, balance, start=start, used=used) == D(seconds)


def test_rounding_decides_the_last_second(auth_plan):
    # 60/1 at 0.10/min, rounding half_up to 4 places. 61 s = 0.101666.. -> 0.1017; 62 s = 0.1033.
    # Balance 0.1017 -> 61 s; 0.1016 -> 60 s (0.1000); 0.0999 -> 0 (the first block costs 0.1000).
    assert md(auth_plan, "0.1017", meter="voice_fine") == D(61)
    assert md(auth_plan, "0.1016", meter="voice_fine") == D(60)
    assert md(auth_plan, "0.0999", meter="voice_fine") == D(0)


def test_running_session(auth_plan):
    # after 90 s (2 minutes billed, 0.10 + 0.12 = 0.22 charged) with 0.30 left: the rest of the
    # second minute (30 s) is paid, 0.30 buys 5 more minutes: 30 + 300 = 330 s from now.
    rec = SessionRecord("s", 1, "voice_seconds", TUE_10, NAT, usage=D(90))
    state, rated = rate_session_record(auth_plan, None, rec, bundle_used=SPENT)
    assert (rated.cost, state.billed) == (D("0.22"), D(120))
    assert md(auth_plan, "0.30", session=state) == D(330)
    assert md(auth_plan, "0", session=state) == D(30)
    last = replace(rec, sequence=2, usage=D(1), final=True)
    ended, _ = rate_session_record(auth_plan, state, last, bundle_used=SPENT)
    assert md(auth_plan, "0.30", session=ended) == 0  # a session that ended allows nothing more
    with pytest.raises(SessionError) as e:
        md(auth_plan, "0.30", session=state, dims={"destination": "+4940"})
    assert e.value.field == "dimensions.destination"


def test_caps(auth_plan):
    # cap 0.50, stop charging: the balance (1.00) covers the cap, the call is never cut: the horizon
    assert md(auth_plan, "1.00", rules=SessionRules(max_cost=({"amount": "0.50"},))) == D(31 * 86400)
    assert md(auth_plan, "1.00", rules=SessionRules(max_cost=({"amount": "0.50"},)), horizon=D(7200)) == D(7200)
    # with disconnect: 0.10 + 6 x 0.06 = 0.46; the 7th minute reaches 0.50: cut at its end, 420 s
    disconnect = SessionRules(max_cost=({"amount": "0.50", "strategy": "disconnect"},))
    assert md(auth_plan, "1.00", rules=disconnect) == D(420)
    # a balance below the cap decides first: 0.40 = 0.10 + 5 minutes
    assert md(auth_plan, "0.40", rules=disconnect) == D(300)
    # a cap only in off-peak (disconnect) does not stop a peak call: 1.00 -> 15 minutes
    offpeak = SessionRules(max_cost=({"band": "offpeak", "amount": "0.20", "strategy": "disconnect"},))
    assert md(auth_plan, "1.00", rules=offpeak) == D(900)
    # from 17:55 it does: 0.40 by 18:00 is already over 0.20, so the call is cut when the first
    # off-peak minute would start (CGRateS: no increment once the cost so far reaches the cap): 300 s
    assert md(auth_plan, "1.00", rules=offpeak, start=berlin(2025, 3, 4, 17, 55)) == D(300)


def test_per_increment_rounding(auth_plan):
    # 60/1 at 0.10/min with each 1 s step rounded: 0.001666.. -> 0.0017. 0.1034 = 0.10 + 2 x 0.0017:
    # 62 s (per record it would be 62 s too: 0.1033); 0.1033 buys 61 s per increment.
    rules = SessionRules(rounding="per_increment")
    assert md(auth_plan, "0.1034", meter="voice_fine", rules=rules) == D(62)
    assert md(auth_plan, "0.1033", meter="voice_fine", rules=rules) == D(61)


def test_data_and_free(auth_plan):
    # 0.02 per MB in 1 MB steps: 1.00 -> 50 MB; a free meter never runs out
    assert md(auth_plan, "1.00", meter="data_bytes", dims={}) == D(50_000_000)
    assert md(auth_plan, "1.00", meter="data_free", dims={}) == D("Infinity")


def test_errors(auth_plan):
    with pytest.raises(NoRate):
        md(auth_plan, "1.00", dims={"destination": "+331"})
    with pytest.raises(ValueError, match="balance"):
        md(auth_plan, "NaN")


# -- differential: against rate_cdr on the hand plan of plans.py (bands, 60/1 and 60/60, connect fee,
# rate groups, a 3.00 cap, a bundle) --------------------------------------------------------------

FIRST_STEP = {"+4930123": (60, 1), "+4917123": (60, 60), "+44207": (60, 60)}  # from plans.py, by hand


def _next_end(number: str, d: Decimal) -> Decimal:
    first, step = FIRST_STEP[number]
    return D(first) if d < first else d + step


@settings(max_examples=300, deadline=None)
@given(
    start=starts,
    number=st.sampled_from(sorted(FIRST_STEP)),
    balance=st.decimals(0, 6, places=4),
    used=used,
)
def test_differential_against_rate_cdr(plan, start, number, balance, used):
    dims = {"destination": number}

    def cost(q):
        return rate_cdr(plan, meter="voice_seconds", quantity=q, start=start, dimensions=dims, bundle_used=used).cost

    d = max_duration(plan, meter="voice_seconds", balance=balance, start=start, dimensions=dims, bundle_used=used)
    assert cost(d) <= balance
    if d < 31 * 86400:
        assert cost(_next_end(number, d)) > balance
    else:  # the 3.00 cap (stop charging) within the balance
        assert number == "+44207" and balance >= D("3.00")


@settings(max_examples=150, deadline=None)
@given(
    start=starts,
    number=st.sampled_from(sorted(FIRST_STEP)),
    first=st.integers(1, 400),
    balance=st.decimals(0, 3, places=4),
)
def test_differential_running_session(plan, start, number, first, balance):
    # after a first record of `first` seconds, the answer counts from there; the session's total
    # charge (one record of first + d seconds) stays within what was charged + balance
    dims = {"destination": number}
    used = {"NAT_MIN": D(600)}
    rec = SessionRecord("s", 1, "voice_seconds", start, dims, usage=D(first))
    state, _ = rate_session_record(plan, None, rec, bundle_used=used)

    def cost(q):
        return rate_cdr(plan, meter="voice_seconds", quantity=q, start=start, dimensions=dims, bundle_used=used).cost

    day = D(86400)  # a horizon that keeps first + d within one record's 31 days
    d = max_duration(plan, meter="voice_seconds", balance=balance, start=start, dimensions=dims,
                     bundle_used=used, session=state, horizon=day)  # fmt: skip
    assert d <= day
    assert cost(first + d) - state.cost <= balance
    if d < day:
        assert cost(_next_end(number, first + d)) - state.cost > balance


@settings(max_examples=200, deadline=None)
@given(
    start=starts,
    number=st.sampled_from(sorted(FIRST_STEP)),
    balance=st.decimals(0, 4, places=4),
    rounding=st.sampled_from(["per_record", "per_increment"]),
    max_cost=caps,
)
def test_differential_with_rules(plan, start, number, balance, rounding, max_cost):
    # rate_cdr knows neither per-increment rounding nor band caps: the reference is a one-record session
    rules = SessionRules(rounding=rounding, max_cost=tuple(max_cost))
    dims = {"destination": number}
    used = {"NAT_MIN": D(600)}
    day = D(86400)

    def session(q):
        rec = SessionRecord("s", 1, "voice_seconds", start, dims, usage=D(q))
        return rate_session_record(plan, None, rec, bundle_used=used, rules=rules)[0]

    d = max_duration(plan, meter="voice_seconds", balance=balance, start=start, dimensions=dims,
                     bundle_used=used, rules=rules, horizon=day)  # fmt: skip
    at = session(d)
    assert at.cost <= balance
    assert at.disconnect_at is None or at.disconnect_at >= d  # never past a disconnect
    if d < day:
        nxt = session(_next_end(number, d))
        # one increment more costs too much, or a disconnect cap ends the call at d
        assert nxt.cost > balance or (nxt.disconnect_at is not None and nxt.disconnect_at <= d)


@settings(max_examples=100, deadline=None)
@given(start=starts, balance=st.decimals(0, 20, places=4), meter=st.sampled_from(["data_bytes", "sms"]))
def test_differential_data_and_sms(plan, start, balance, meter):
    # data: 0.05/MB peak, 0.01/MB otherwise, 1/1 MB increments (one increment = 1,000,000 bytes); SMS 0.09 each
    step = D(1_000_000) if meter == "data_bytes" else D(1)
    dims = {"destination": "+4930123"}

    def cost(q):
        return rate_cdr(plan, meter=meter, quantity=q, start=start, dimensions=dims, bundle_used={}).cost

    d = max_duration(plan, meter=meter, balance=balance, start=start, dimensions=dims, bundle_used={})
    assert d % step == 0
    assert cost(d) <= balance < cost(d + step)
