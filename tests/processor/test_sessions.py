"""Telecom session records (interim and final) through the processor's specification path (`step.process`).

Hand calculations from docs/telecom.md's example plan: Berlin, peak Mon-Fri 08:00-18:00, national calls
60/60 with a 0.10 connect fee, 0.06/min peak and 0.03/min off-peak. Tuesday 3 November 2026, 10:00 Berlin
(09:00Z) is peak. One record of 75 s costs 0.10 + 2 x 0.06 = 0.22; two separate calls of 30 s and 45 s
would cost 2 x (0.10 + 0.06) = 0.32.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import yaml

from meterstream.processor.sessions import session_key
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog

PLANS = """
version: 1
plans:
  - id: tel
    currency: EUR
    telecom:
      version: 1
      timezone: Europe/Berlin
      rounding: {decimals: 4, method: half_up}
      time_bands:
        default: offpeak
        periods:
          - {band: peak, days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
      destinations:
        DE_FIXED: {group: national, prefixes: ["49"]}
      rates:
        RT_PEAK: {connect_fee: "0.10", increments: "60/60", groups: [{price: "0.06", per: 60}]}
        RT_OFF: {connect_fee: "0.10", increments: "60/60", groups: [{price: "0.03", per: 60}]}
      meters:
        voice_seconds:
          kind: voice
          rates:
            - {destination: DE_FIXED, bands: {peak: RT_PEAK, offpeak: RT_OFF}}
      BUNDLES
assignments:
  - {tenant: telco, customer: "*", plan: tel}
  - {tenant: telco, customer: bundled, plan: telb}
"""
BUNDLES = "bundles: [{id: free5, meter: voice_seconds, amount: 5, unit: minutes, groups: [national], period: month}]"


def catalog():
    text = PLANS.replace("BUNDLES", "")
    data = yaml.safe_load(text)
    with_bundle = yaml.safe_load(PLANS.replace("BUNDLES", BUNDLES))["plans"][0]
    data["plans"].append({**with_bundle, "id": "telb"})
    return parse_catalog(data)


CATALOG = catalog()
NOW = 1_793_700_000_000
WINDOW = 10**12
START = "2026-11-03T09:00:00.000Z"  # 10:00 in Berlin, a Tuesday: peak


def record(
    eid: str, seq: int, quantity: str, *, session: str = "c-81", total: bool = False, final: bool = False,
    customer: str = "line-1", time: str = "2026-11-03T09:30:00.000Z", destination: str = "+4930123456",
    start: str = START,
) -> bytes:  # fmt: skip
    s: dict = {"id": session, "sequence": seq, "start": start}
    if total:
        s["total_usage"] = True
    if final:
        s["final"] = True
    return orjson.dumps({"id": eid, "tenant": "telco", "customer": customer, "meter": "voice_seconds",
                         "quantity": quantity, "time": time, "dimensions": {"destination": destination},
                         "session": s})  # fmt: skip


class Run:
    """Messages through `step.process` on one partition's state, offsets counted from 0."""

    def __init__(self, state) -> None:
        self.state = state
        self.offset = 0

    def __call__(self, value: bytes):
        out = process(CATALOG, self.state, value, Position("usage", 0, self.offset, None), NOW, WINDOW)
        self.offset += 1
        return out


def amount(out) -> Decimal:
    return Decimal(out.rated["amount"]) if out.rated is not None else Decimal(0)


def test_a_call_cut_in_30_and_45_seconds_bills_the_connect_fee_once_and_2_increments() -> None:
    run = Run({})
    first = run(record("r1", 1, "30"))
    second = run(record("r2", 2, "45", final=True))
    assert first.kind is Kind.RATED and second.kind is Kind.RATED
    assert first.rated["amount"] == "0.1600"  # 0.10 connect + the first minute 0.06
    assert second.rated["amount"] == "0.0600"  # 30..75 s opens the second minute only
    assert first.rated["quantity"] == "30" and second.rated["quantity"] == "45"
    assert second.rated["cumulative"] == "75"  # the meter's period total grows by the slices
    assert second.rated["line"] == "voice_seconds/national/peak" and second.rated["period"] == "2026-11"
    # dated at the session's start; the session named in the dimensions (authorization holds read them)
    assert first.rated["time"] == START and second.rated["time"] == START
    assert first.rated["dimensions"] == {"destination": "+4930123456", "session_id": "c-81"}
    assert second.rated["dimensions"] == {"destination": "+4930123456", "session_id": "c-81", "final": "true"}


def test_total_usage_records_bill_the_same_as_slices() -> None:
    run = Run({})
    a = run(record("r1", 1, "30", total=True))
    b = run(record("r2", 2, "75", total=True, final=True))
    assert (a.rated["amount"], b.rated["amount"]) == ("0.1600", "0.0600")
    assert b.rated["quantity"] == "45"  # the slice: 75 - 30


def test_a_repeated_sequence_is_a_duplicate_never_charged() -> None:
    state: dict = {}
    run = Run(state)
    run(record("r1", 1, "30"))
    before = dict(state)
    again = run(record("r1-resent-with-new-id", 1, "30"))
    assert again.kind is Kind.DUPLICATE and again.rated is None
    assert state == before  # nothing written
    rest = run(record("r2", 2, "45"))
    assert rest.rated["amount"] == "0.0600"


def test_a_gap_is_held_uncharged_then_rated_when_the_missing_record_arrives() -> None:
    state: dict = {}
    run = Run(state)
    assert run(record("r1", 1, "30")).rated["amount"] == "0.1600"
    held = run(record("r3", 3, "30"))
    assert held.kind is Kind.HELD and held.rated is None
    stored = state[session_key("telco", "line-1", "c-81")][0]
    assert [h["sequence"] for h in stored["held"]] == [3]
    filled = run(record("r2", 2, "30"))
    # 30..90 s: record 2 and the held record 3 together open the second minute: 0.06; 0.22 in all = one 90 s record
    assert filled.kind is Kind.RATED and filled.rated["amount"] == "0.0600" and filled.rated["quantity"] == "60"
    assert state[session_key("telco", "line-1", "c-81")][0]["held"] == []
    # the held record sent again is a duplicate
    assert run(record("r3", 3, "30")).kind is Kind.DUPLICATE


def test_a_final_record_behind_a_gap_releases_what_is_held_and_a_late_record_is_not_charged() -> None:
    state: dict = {}
    run = Run(state)
    run(record("r1", 1, "90"))  # 0.10 + 2 minutes = 0.22
    final = run(record("r3", 3, "60", final=True))
    # record 2 lost: released as if it were empty; 90..150 s opens the third minute: 0.06
    assert final.kind is Kind.RATED and final.rated["amount"] == "0.0600"
    key = session_key("telco", "line-1", "c-81")
    assert state[key][0] == {"closed": 3, "missing": [2], "usage": "150", "cost": "0.2800"}  # all that is kept
    late = run(record("r2", 2, "30"))
    assert late.kind is Kind.DUPLICATE and late.rated is None
    assert state[key][0]["missing"] == []
    assert run(record("r3-again", 3, "60", final=True)).kind is Kind.DUPLICATE
    after = run(record("r4", 4, "30"))
    assert after.kind is Kind.DEAD_LETTER and after.dead_letter["field"] == "session.sequence"
    assert "after the final record 3" in after.dead_letter["reason"]


def test_a_final_total_covers_a_gap_exactly() -> None:
    run = Run({})
    run(record("r1", 1, "30", total=True))
    final = run(record("r3", 3, "150", total=True, final=True))
    assert final.kind is Kind.RATED and final.rated["amount"] == "0.1200"  # 0.10 + 3 x 0.06 = 0.28 in all


def test_bad_session_records_are_dead_letters_naming_the_field() -> None:
    run = Run({})
    run(record("r1", 1, "30"))
    moved = run(record("r2", 2, "30", destination="+4989000"))
    assert moved.kind is Kind.DEAD_LETTER and moved.dead_letter["stage"] == "rate"
    assert moved.dead_letter["field"] == "dimensions.destination"
    restarted = run(record("r3", 2, "30", start="2026-11-03T09:00:01.000Z"))
    assert restarted.dead_letter["field"] == "session.start"
    early = run(record("r4", 1, "30", session="c-2", start="2026-11-03T10:00:00.000Z"))
    assert early.kind is Kind.DEAD_LETTER and early.dead_letter["stage"] == "parse"
    assert (early.dead_letter["field"], early.dead_letter["reason"]) == (
        "session.start", "must not be after the record's time")  # fmt: skip
    bad = orjson.loads(record("r5", 1, "30", session="c-3"))
    bad["session"]["sequence"] = "1"
    out = run(orjson.dumps(bad))
    assert (out.dead_letter["field"], out.kind) == ("session.sequence", Kind.DEAD_LETTER)


def test_a_session_of_a_non_telecom_meter_is_a_dead_letter() -> None:
    value = orjson.loads(record("r1", 1, "30"))
    value["meter"] = "api_calls"
    out = Run({})(orjson.dumps(value))
    assert out.kind is Kind.DEAD_LETTER and out.dead_letter["field"] == "session"


def test_session_state_is_committed_with_the_batch_and_a_replay_charges_once(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    try:
        first = BatchState(store)
        run = Run(first)
        assert run(record("r1", 1, "30")).rated["amount"] == "0.1600"
        held = run(record("r3", 3, "30"))
        assert held.kind is Kind.HELD
        first.commit(2, Counter({"rated": 1, "held": 1}))
        assert store.get(session_key("telco", "line-1", "c-81"))[0]["last_sequence"] == 1
        # a crash after the commit: the same messages come again at their offsets
        replay = Run(BatchState(store))
        assert [replay(record("r1", 1, "30")).kind, replay(record("r3", 3, "30")).kind] == [Kind.REPLAYED] * 2
        filled = replay(record("r2", 2, "30"))
        assert filled.rated["amount"] == "0.0600"
        assert store.counts == Counter({"rated": 1, "held": 1})
    finally:
        store.close()


def test_bundle_minutes_are_shared_with_single_records_of_the_period() -> None:
    state: dict = {}
    run = Run(state)
    cdr = orjson.loads(record("cdr", 1, "240", customer="bundled"))
    del cdr["session"]
    assert run(orjson.dumps(cdr)).rated["amount"] == "0.1000"  # the connect fee; 4 of the 5 free minutes
    a = run(record("r1", 1, "30", customer="bundled"))
    b = run(record("r2", 2, "60", customer="bundled"))
    # the session's connect fee 0.10; the last free minute covers 0..60 s; 60..90 s is a charged minute
    assert (a.rated["amount"], b.rated["amount"]) == ("0.1000", "0.0600")
    assert state["b|telco\x1fbundled\x1f2026-11"][0] == {"free5": "300"}


@pytest.mark.parametrize("start", ["2026-11-03T16:59:30.000Z"])  # 17:59:30 Berlin: 30 s before off-peak
def test_increments_are_priced_by_the_band_in_force_when_they_start(start: str) -> None:
    run = Run({})
    a = run(record("r1", 1, "20", start=start, time="2026-11-03T17:10:00.000Z"))
    b = run(record("r2", 2, "70", start=start, time="2026-11-03T17:10:00.000Z"))
    # minute 1 starts in peak (0.10 + 0.06), minute 2 starts at 18:00:30, off-peak (0.03)
    assert (a.rated["amount"], b.rated["amount"]) == ("0.1600", "0.0300")


def test_held_records_are_released_when_a_record_of_the_session_comes_10_minutes_after_the_oldest() -> None:
    state: dict = {}
    outs = []
    sent = [
        (NOW, record("r1", 1, "30")),  # 0.16
        (NOW + 60_000, record("r3", 3, "30")),  # held (record 2 lost)
        (NOW + 60_000 + 599_999, record("r4", 4, "30")),  # held: 1 ms short of 10 minutes after record 3
        (NOW + 60_000 + 600_000, record("r5", 5, "30")),  # 10 minutes after record 3: 3, 4, 5 released
        (NOW + 700_000, record("r2", 2, "30")),  # record 2 after all: late, not charged
    ]
    for offset, (ms, value) in enumerate(sent):
        outs.append(process(CATALOG, state, value, Position("usage", 0, offset, None, ms), NOW, WINDOW))
    assert [o.kind for o in outs] == [Kind.RATED, Kind.HELD, Kind.HELD, Kind.RATED, Kind.DUPLICATE]
    # released as if record 2 were empty: 30..120 s, the second minute: 0.06
    assert outs[3].rated["amount"] == "0.0600" and outs[3].rated["quantity"] == "90"
    stored = state[session_key("telco", "line-1", "c-81")][0]
    assert stored["held"] == [] and stored["missing"] == [] and "held_since" not in stored
    assert stored["usage"] == "120" and stored["cost"] == "0.2200"
