"""Interim and final records of one session; every expected number is worked by hand in the comment.

Plan: plans.py (NAT 60/1 at 0.10/0.04/0.02 per minute peak/offpeak/weekend, MOB 60/60 at 0.30,
INTL 0.50 connect + 1.20 first minute + 0.60/min, cap 3.00, bundle NAT_MIN 600 s national).
Peak is 08:00-19:00 on weekdays; 2025-03-04 is a Tuesday.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterstream.rating.telecom import NoRate, rate_cdr
from meterstream.rating.telecom.session_rules import SessionRules
from meterstream.rating.telecom.sessions import (
    MAX_HELD,
    SessionError,
    SessionRecord,
    rate_session_record,
    release_held,
)

from .plans import berlin

D = Decimal
NAT, MOB, INTL = "+4930123", "+4917123", "+44207"
TUE_10 = berlin(2025, 3, 4, 10)


def record(seq, usage=None, total=None, *, number=MOB, start=TUE_10, final=False, meter="voice_seconds", sid="s1"):
    return SessionRecord(
        session_id=sid,
        sequence=seq,
        meter=meter,
        start=start,
        dimensions={"destination": number} if number else {},
        usage=None if usage is None else D(usage),
        total_usage=None if total is None else D(total),
        final=final,
    )


def run(plan, records, used=None, rules=None, state=None):
    """Feed records in order; the caller's bundle use grows by what each slice took."""
    used = dict(used or {})
    rules = rules or SessionRules()
    out = []
    for r in records:
        state, s = rate_session_record(plan, state, r, bundle_used=used, rules=rules)
        for k, v in s.bundle_units_used.items():
            used[k] = used.get(k, D(0)) + v
        out.append(s)
    return state, out


def test_increments_continue_across_records(plan):
    # MOB 60/60 at 0.30/min, 90 s sent as 30 + 30 + 30. One record of 90 s bills 2 minutes = 0.60.
    # Record 1: [0,30) opens the first minute (0.30); record 2: [30,60) is inside it (0);
    # record 3: [60,90) opens the second minute (0.30). Each record rated alone would bill 3 minutes.
    state, slices = run(plan, [record(1, 30), record(2, 30), record(3, 30, final=True)])
    assert [(s.billed, s.increments, s.cost) for s in slices] == [
        (D(60), 1, D("0.3000")),
        (D(0), 0, D("0.0000")),
        (D(60), 1, D("0.3000")),
    ]
    assert (state.usage, state.billed, state.increments, state.cost, state.final) == (D(90), D(120), 2, D("0.6"), True)


def test_thirty_plus_forty_five_on_60_60(plan):
    # the brief's example: MOB 60/60, 30 s + 45 s = 75 s. Record 1 opens minute 1 (0.30); record 2
    # covers [30, 75): the rest of minute 1 and the start of minute 2 (0.30). 2 increments, 0.60,
    # as one record of 75 s (75 s -> 120 s billed).
    state, slices = run(plan, [record(1, 30), record(2, 45, final=True)])
    assert [(s.billed, s.increments, s.cost) for s in slices] == [(D(60), 1, D("0.30")), (D(60), 1, D("0.30"))]
    assert (state.increments, state.billed, state.cost) == (2, D(120), D("0.60"))


def test_connect_fee_once(plan):
    # INTL 60/60: 0.50 connect + 1.20 first minute. 30 s + 30 s are both in the first minute:
    # record 1 = 0.50 + 1.20 = 1.70, record 2 = 0 (alone it would be another 1.70).
    state, slices = run(plan, [record(1, 30, number=INTL), record(2, 30, number=INTL)])
    assert [(s.cost, s.connect_fee) for s in slices] == [(D("1.70"), D("0.50")), (D(0), D(0))]
    assert state.cost == D("1.70") and state.connect_fee == D("0.50")


def test_sixty_one_sixty_continues(plan):
    # NAT peak 60/1 at 0.10/min: 30 s bills the first 60 s block (0.10); 45 s more (total 75)
    # bills the one-second steps 60..74 = 15 s = 0.025. Total 0.125 = one record of 75 s.
    _, slices = run(plan, [record(1, 30, number=NAT), record(2, 45, number=NAT)], used={"NAT_MIN": D(600)})
    assert [(s.billed, s.increments, s.cost) for s in slices] == [(D(60), 1, D("0.1")), (D(15), 15, D("0.025"))]


def test_rounding_remainder_carried(plan):
    # NAT peak 60/1 at 0.10/min, 61 s + 1 s + 1 s. Exact totals: 61 s = 0.101666.. -> 0.1017;
    # 62 s = 0.103333.. -> 0.1033; 63 s = 0.105 -> 0.1050. Slices: 0.1017, 0.0016, 0.0017 = 0.1050,
    # the one-record cost. Rounding each slice alone would give 0.1017 + 0.0017 + 0.0017 = 0.1051.
    used = {"NAT_MIN": D(600)}
    _, slices = run(plan, [record(1, 61, number=NAT), record(2, 1, number=NAT), record(3, 1, number=NAT)], used)
    assert [str(s.cost) for s in slices] == ["0.1017", "0.0016", "0.0017"]
    one = rate_cdr(plan, meter="voice_seconds", quantity=D(63), start=TUE_10, dimensions={"destination": NAT},
                   bundle_used=used)  # fmt: skip
    assert one.cost == D("0.1050") == sum(s.cost for s in slices)


def test_rounding_per_increment(plan):
    # per increment: the 60 s block costs 0.10, each 1 s step 0.10/60 = 0.001666.. -> 0.0017.
    # 61 s = 0.1017, then 0.0017 and 0.0017: 0.1051, however the call is cut (63 s in one record: 0.1051).
    rules = SessionRules(rounding="per_increment")
    used = {"NAT_MIN": D(600)}
    _, slices = run(plan, [record(1, 61, number=NAT), record(2, 1, number=NAT), record(3, 1, number=NAT)],
                    used, rules)  # fmt: skip
    assert [str(s.cost) for s in slices] == ["0.1017", "0.0017", "0.0017"]
    state, (one,) = run(plan, [record(1, 63, number=NAT)], used, rules)
    assert one.cost == D("0.1051") == state.cost


def test_band_change_inside_a_slice(plan):
    # NAT Tue 18:58, 180 s as 100 s + 80 s; peak ends at 19:00 (120 s in).
    # Record 1: peak, billed 100 s = 0.1666.. -> 0.1667. Record 2: peak [100,120) 20 s = 0.0333..,
    # offpeak [120,180) 60 s at 0.04/min = 0.04; exact total 0.24 -> slice 0.24 - 0.1667 = 0.0733.
    used = {"NAT_MIN": D(600)}
    start = berlin(2025, 3, 4, 18, 58)
    _, slices = run(plan, [record(1, 100, number=NAT, start=start), record(2, 80, number=NAT, start=start)], used)
    assert [str(s.cost) for s in slices] == ["0.1667", "0.0733"]
    assert [(g.band, g.usage, g.billed) for g in slices[1].segments] == [("peak", 20, 20), ("offpeak", 60, 60)]
    assert slices[1].lines == (("voice_seconds/national/peak", D("0.0333")), ("voice_seconds/national/offpeak",
                                                                              D("0.0400")))  # fmt: skip
    assert slices[1].segments[1].start == berlin(2025, 3, 4, 19)


def test_bundle_across_records(plan):
    # 60 of the 600 bundle seconds left. Record 1 (30 s) bills the 60 s block: covered, 0.
    # The caller adds the 60 s it took; record 2 (total 120 s) bills steps 60..119 = 60 s = 0.10.
    state, slices = run(plan, [record(1, 30, number=NAT), record(2, None, 120, number=NAT)], used={"NAT_MIN": D(540)})
    assert [(s.cost, s.bundle_units_used) for s in slices] == [(D(0), {"NAT_MIN": D(60)}), (D("0.10"), {})]
    assert dict(state.bundle_units_used) == {"NAT_MIN": D(60)}


def test_duplicate_is_not_charged(plan):
    state, _ = run(plan, [record(1, 30)])
    again, dup = rate_session_record(plan, state, record(1, 30), bundle_used={})
    assert (dup.outcome, dup.cost, dup.sequences) == ("duplicate", 0, (1,))
    assert again == state


def test_gap_in_slices_is_held_then_rated(plan):
    # MOB 60/60: 1 (30 s) bills the first minute; 3 waits for 2; when 2 arrives, 2 and 3 are rated
    # together: usage [30, 90) bills the second minute, 0.30.
    state, (_, s3) = run(plan, [record(1, 30), record(3, 30)])
    assert (s3.outcome, s3.cost, s3.missing) == ("held", 0, (2,))
    assert "waiting for sequence 2" in s3.reason
    assert [r.sequence for r in state.held] == [3] and state.usage == D(30)
    state, s2 = rate_session_record(plan, state, record(2, 30), bundle_used={})
    assert (s2.outcome, s2.sequences, s2.usage, s2.cost) == ("rated", (2, 3), D(60), D("0.30"))
    assert state.held == () and state.last_sequence == 3


def test_gap_before_a_total_is_reported_and_rated(plan):
    # totals: 1 says 30 s, 3 says 90 s (2 never seen): 3 is rated on [30, 90), 2 reported missing.
    state, (_, s3) = run(plan, [record(1, None, 30), record(3, None, 90)])
    assert (s3.outcome, s3.missing, s3.cost) == ("rated", (2,), D("0.30"))
    assert state.missing == (2,)
    state, s2 = rate_session_record(plan, state, record(2, None, 60), bundle_used={})
    assert (s2.outcome, s2.cost) == ("late", 0)
    assert state.missing == ()


def test_total_covers_held_slices(plan):
    # 1 = 30 s slice, 3 = 30 s slice (held), 4 = total 120 s: the total covers 2 and 3.
    state, out = run(plan, [record(1, 30), record(3, 30), record(4, None, 120)])
    assert (out[2].outcome, out[2].sequences, out[2].missing, out[2].cost) == ("rated", (3, 4), (2,), D("0.30"))
    assert state.held == () and state.usage == D(120)


def test_release_held_assumes_missing_empty(plan):
    # 2 never arrives; 3 is final. Released: [30, 60) is inside the first minute: nothing more to pay.
    state, _ = run(plan, [record(1, 30), record(3, 30, final=True)])
    state, rel = release_held(plan, state, bundle_used={})
    assert (rel.outcome, rel.sequences, rel.missing, rel.cost, rel.final) == ("released", (3,), (2,), 0, True)
    assert (state.usage, state.cost) == (D(60), D("0.30"))


def test_record_after_final_is_refused(plan):
    state, _ = run(plan, [record(1, 30, final=True)])
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, state, record(2, 30), bundle_used={})
    assert e.value.field == "sequence" and "after the final record 1" in e.value.reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"number": INTL}, "dimensions.destination"),
        ({"start": berlin(2025, 3, 4, 11)}, "start"),
        ({"sid": "other"}, "session_id"),
        ({"meter": "sms"}, "meter"),
    ],
)
def test_record_must_match_the_session(plan, change, field):
    state, _ = run(plan, [record(1, 30)])
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, state, record(2, 30, **change), bundle_used={})
    assert e.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"usage": 30, "total": 30}, "usage", "exactly one"),
        ({}, "usage", "exactly one"),
        ({"usage": -1}, "usage", ">= 0"),
        ({"total": "NaN"}, "total_usage", "finite"),
    ],
)
def test_bad_records(plan, kwargs, field, words):
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, None, record(1, kwargs.get("usage"), kwargs.get("total")), bundle_used={})
    assert e.value.field == field and words in e.value.reason


def test_bad_sequence_and_backwards_total(plan):
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, None, record(0, 30), bundle_used={})
    assert e.value.field == "sequence"
    state, _ = run(plan, [record(1, None, 90)])
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, state, record(2, None, 60), bundle_used={})
    assert e.value.field == "total_usage" and "less than the usage already rated (90)" in e.value.reason


def test_unpriced_destination_is_no_rate(plan):
    with pytest.raises(NoRate) as e:
        rate_session_record(plan, None, record(1, 30, number="+33123"), bundle_used={})
    assert e.value.reason == "no rate for destination"


def test_too_many_held(plan):
    state, _ = run(plan, [record(1, 30)])
    for seq in range(3, 3 + MAX_HELD):
        state, s = rate_session_record(plan, state, record(seq, 1), bundle_used={})
        assert s.outcome == "held"
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, state, record(3 + MAX_HELD, 1), bundle_used={})
    assert e.value.field == "sequence"


def test_plan_cap_stops_charging_across_records(plan):
    # INTL cap 3.00 (stop charging): 0.50 + 1.20 + 0.60 = 2.30 after 120 s; the third minute would
    # make 2.90, the fourth 3.50 -> cut to 3.00. Sent as 120 s + 120 s: 2.30 then 0.70, capped.
    state, slices = run(plan, [record(1, 120, number=INTL), record(2, 120, number=INTL)])
    assert [(s.cost, s.capped, s.disconnect) for s in slices] == [(D("2.30"), False, False), (D("0.70"), True, False)]
    assert state.capped and state.cost == D("3.00")


def test_band_cap_disconnect(plan):
    # peak cap 2.00 with disconnect on INTL: the first minute costs 0.50 + 1.20 = 1.70, the second
    # minute (0.60) reaches the cap after 0.30: charged 0.30, disconnect at the end of it (120 s).
    cap = {"destination": "INTL", "band": "peak", "amount": "2.00", "strategy": "disconnect"}
    rules = SessionRules(max_cost=(cap,))
    _, slices = run(plan, [record(1, 90, number=INTL), record(2, 60, number=INTL)], rules=rules)
    assert [(s.cost, s.capped, s.disconnect, s.disconnect_at) for s in slices] == [
        (D("2.00"), True, True, D(120)),
        (D(0), True, True, D(120)),
    ]


def test_nothing_charged_after_disconnect(plan):
    # the same peak cap from 18:58: minute 1 (peak) 1.70, minute 2 (peak) cut to 0.30 -> 2.00,
    # disconnect at 120 s. The switch goes on: minutes 3 and 4 are off-peak, where the plan's 3.00
    # cap would allow 0.60 more, but after the disconnect point nothing is charged: 2.00.
    cap = {"destination": "INTL", "band": "peak", "amount": "2.00", "strategy": "disconnect"}
    rules = SessionRules(max_cost=(cap,))
    start = berlin(2025, 3, 4, 18, 58)
    state, _ = run(plan, [record(1, 100, number=INTL, start=start), record(2, 140, number=INTL, start=start)],
                   rules=rules)  # fmt: skip
    assert (state.cost, state.disconnect_at) == (D("2.00"), D(120))
    # with stop_charging instead, off-peak charges again up to the plan cap: 2.60 after minute 3, then 3.00
    rules = SessionRules(max_cost=({**cap, "strategy": "stop_charging"},))
    state, _ = run(plan, [record(1, 240, number=INTL, start=start)], rules=rules)
    assert (state.cost, state.disconnect_at) == (D("3.00"), None)


def test_cap_per_band_compares_the_session_cost(plan):
    # CGRateS semantics: the session's cost so far against the cap of the band in force.
    # offpeak cap 2.00, peak cap 5.00 (stop charging). INTL Tue 07:58, 240 s (peak from 08:00):
    # offpeak minute 1: 0.50 + 1.20 = 1.70; minute 2 (0.60) cut to 0.30 -> 2.00;
    # peak minutes 3 and 4: 0.60 each under 5.00 -> 3.20 (the plan's 3.00 is overridden by the rules).
    rules = SessionRules(max_cost=({"band": "offpeak", "amount": "2.00"}, {"band": "peak", "amount": "5.00"}))
    start = berlin(2025, 3, 4, 7, 58)
    _, (s,) = run(plan, [record(1, 240, number=INTL, start=start)], rules=rules)
    assert (s.cost, s.capped) == (D("3.20"), True)
    assert s.lines == (("voice_seconds/international/offpeak", D("2.00")),
                       ("voice_seconds/international/peak", D("1.20")))  # fmt: skip
    # the other way round (18:58, peak then offpeak): 2.30 in peak, offpeak minutes are free (2.30 >= 2.00)
    _, (s,) = run(plan, [record(1, 240, number=INTL, start=berlin(2025, 3, 4, 18, 58))], rules=rules)
    assert (s.cost, s.capped) == (D("2.30"), True)


def test_data_session_rated_at_its_start_band(plan):
    # data from 18:30 (peak 0.05/MB, 1/1 MB): 30 MB + 20 MB past 19:00 are both peak, as one record
    # of 50 MB: 2.50. 1.5 MB + 1.5 MB bill 2 + 1 MB (the grid continues), not 2 + 2.
    start = berlin(2025, 3, 4, 18, 30)
    recs = [record(1, 30_000_000, number=None, start=start, meter="data_bytes"),
            record(2, 20_000_000, number=None, start=start, meter="data_bytes")]  # fmt: skip
    state, _ = run(plan, recs)
    assert state.cost == D("2.50")
    recs = [record(1, 1_500_000, number=None, start=start, meter="data_bytes"),
            record(2, 1_500_000, number=None, start=start, meter="data_bytes")]  # fmt: skip
    _, slices = run(plan, recs)
    assert [(s.billed, s.cost) for s in slices] == [(D(2_000_000), D("0.10")), (D(1_000_000), D("0.05"))]


def test_naive_start_is_refused(plan):
    naive = record(1, 30, start=TUE_10.replace(tzinfo=None))
    with pytest.raises(SessionError) as e:
        rate_session_record(plan, None, naive, bundle_used={})
    assert e.value.field == "start" and "timezone-aware" in e.value.reason
