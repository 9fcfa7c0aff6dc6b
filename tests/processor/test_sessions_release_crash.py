"""A release by the clock that crashed before its commit, then a record of the session read before any tick: the
released amount is in one rated row identity only (issue #16 item 5; docs/telecom.md, *Released by the clock*).

Plan and records of tests/processor/test_sessions_held_clock.py: record 1 (30 s, 0..30 s) costs 0.10 + 0.06 = 0.16
and is committed; record 3 (60 s) is held behind the lost record 2. Ten minutes later the tick releases record 3
as if record 2 were empty: 30..90 s opens the second minute, 0.06, in a row named after record 3 ("r3"), and the
process dies before that commit. On restart, before any tick, a record of the session arrives:

- record 4 (30 s, 90..120 s, still in the second minute): it joins the decided release: one row, named "r3", 90 s,
  0.06 (records 3 and 4, record 2 empty);
- record 2 (30 s) itself: the release was decided with record 2 empty, so it is released first, as the tick did
  (record 3 alone, 60 s, 0.06, row "r3", the same `session.released` notification), and record 2 is covered;
- record 5 (30 s), whose Kafka timestamp (the producer's clock) is only 1 s after record 3's, so no timeout by
  Kafka timestamps: it joins the decided release too (records 3 and 5, records 2 and 4 empty, 30..120 s): 0.06.

In every case ClickHouse (ReplacingMergeTree on (tenant, event_id), the later insert kept) ends with r1 0.16 and
r3 0.06: 0.22, which is also what the wallet was debited (1.00 -> 0.78), and a later tick releases nothing.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from test_sessions import CATALOG, NOW, WINDOW, record
from test_sessions_held_clock import DUE, HELD_AT, SKEY, balances, commit, first_batch, notes, processor, tick

from meterstream.processor.balances import balance_key
from meterstream.processor.sessions import held_key
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.schemas.rated import row_of, unpack

CASES = {  # the record read after the restart: (event id, sequence, Kafka timestamp), and its row's quantity
    "record 4 joins the release": (("r4", 4, DUE + 5_000), "90"),
    "record 2 is covered by it": (("r2", 2, DUE + 5_000), "60"),
    "record 5 on an early clock joins it": (("r5", 5, HELD_AT + 1_000), "90"),
}


def rated_rows(produced) -> list[dict]:
    return [r for t, _, v, _ in produced if t == "rated-usage" for r in unpack(v)]


@pytest.mark.parametrize("case", list(CASES))
def test_a_crashed_release_then_a_record_leaves_one_row_identity(case, tmp_path, monkeypatch) -> None:
    (eid, seq, ts), quantity = CASES[case]
    store = PartitionStore(tmp_path / "p0")
    b = balances()
    first_batch(store, b)  # r1 rated (0.16) and committed, r3 held
    rows = [{"tenant": "telco", "id": "r1", "amount": "0.1600", "quantity": "30"}]

    # run 1: the tick releases r3 (its outputs produced) and the process dies before the commit
    proc = processor(store, high=2)
    assert tick(b, proc, DUE, monkeypatch) is not None
    released = rated_rows(proc.checkpoint.produced)
    assert [(r["id"], r["amount"], r["quantity"]) for r in released] == [("r3", "0.0600", "60")]
    rows += released
    first_notes = notes([(t, k, v) for t, k, v, _ in proc.checkpoint.produced])
    store.close()

    # run 2: the record is read before any tick
    store = PartitionStore(tmp_path / "p0")
    try:
        b2 = balances()
        state = BatchState(store)
        out = process(CATALOG, state, record(eid, seq, "30"), Position("usage", 0, 2, None, ts), NOW, WINDOW)
        assert out.kind is Kind.RATED and out.rated is not None
        assert (out.rated["id"], out.rated["amount"], out.rated["quantity"]) == ("r3", "0.0600", quantity)
        rows.append(out.rated)
        outputs = b2.after_batch({0: state}, {0: [row_of(out.rated)]}, {0: 2}, NOW)
        state.commit(3, Counter({"rated": 1}))
        if eid == "r2":  # released exactly as the tick did: the same row (but its source offset) and notification
            assert {**out.rated, "src_offset": 1} == released[0]
            assert notes(outputs) == first_notes
        # then the ticks: nothing is left to release
        proc = processor(store, high=3)
        later = tick(b2, proc, DUE + 3_600_000, monkeypatch)
        if later is not None:
            commit(later)
        rows += rated_rows(proc.checkpoint.produced)

        identities = {(r["tenant"], r["id"]) for r in rows}
        assert identities == {("telco", "r1"), ("telco", "r3")}  # the released amount under one identity
        kept = {(r["tenant"], r["id"]): r for r in rows}  # ReplacingMergeTree: the later insert of an identity
        assert sum(Decimal(r["amount"]) for r in kept.values()) == Decimal("0.22")
        entry = store.get(balance_key("telco", "line-1"))
        assert sum(Decimal(v) for v in entry["u"].values()) == Decimal("0.22")  # debited once: 1.00 -> 0.78
        assert store.get(held_key(SKEY)) is None and store.held == {}
        assert "release" not in store.get(SKEY)[0] and store.get(SKEY)[0]["held"] == []
    finally:
        store.close()


def test_the_decision_is_committed_before_any_release_output(tmp_path, monkeypatch) -> None:
    """Phase one (the decision and its identity) is durable when phase two's outputs exist: a process that dies
    right after the tick finds the decision on disk, and the tick's returned batch holds only the release."""
    store = PartitionStore(tmp_path / "p0")
    b = balances()
    first_batch(store, b)
    proc = processor(store, high=2)
    assert tick(b, proc, DUE, monkeypatch) is not None
    store.close()
    store = PartitionStore(tmp_path / "p0")
    try:
        doc = store.get(SKEY)[0]
        assert doc["release"] == ["r3", 1, "", ""]  # the newest held record: its event id and offset
        assert store.get(held_key(SKEY)) == [[HELD_AT, "telco", "line-1", True], 1]  # tagged with the position
        assert store.next_offset() == 2  # committed at the partition's position, no input consumed
        # a tick that is not caught up (a record still to read) still performs a decided release
        proc = processor(store, high=5)
        batch = tick(balances(), proc, DUE + 1, monkeypatch)
        assert batch is not None
        assert [(r["id"], r["amount"]) for r in rated_rows(proc.checkpoint.produced)] == [("r3", "0.0600")]
    finally:
        store.close()
