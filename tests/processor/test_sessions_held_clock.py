"""Held session records released by the clock (processor/sessions.py through `Balances.tick`), holds and releases
reported on the notifications topic, and the released cost debited once across a crash.

Plan of tests/processor/test_sessions.py: national calls 60/60, 0.10 connect fee, 0.06/min peak; the session
starts Tuesday 3 November 2026 09:00Z (10:00 Berlin, peak). Record 1 (30 s) costs 0.10 + 0.06 = 0.16. Record 2 is
lost; record 3 (60 s) arrives 60 s after record 1 and is held. No further record comes: 10 minutes after record 3
was received the tick releases it as if record 2 were empty: 30..90 s opens the second minute, 0.06. The
customer's wallet of 1.00 EUR falls to 0.84, then to 0.78.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from test_sessions import CATALOG, NOW, WINDOW, record

from meterstream.processor import balances as balances_module
from meterstream.processor.balances import Balances, balance_key
from meterstream.processor.live_catalog import EntityTable
from meterstream.processor.sessions import OUTBOX_KEY, held_key, session_key
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.schemas.entities import WalletDoc, WalletEntryDoc
from meterstream.schemas.provisioning import decode_balance, decode_notification
from meterstream.schemas.rated import row_of, unpack
from meterstream.schemas.settings import Settings

T0 = NOW  # record 1's Kafka timestamp: 2026-11-03T10:00:00Z
HELD_AT = T0 + 60_000  # record 3's
DUE = HELD_AT + 600_000  # 10 minutes later
SKEY = session_key("telco", "line-1", "c-81")


class Checkpoint:
    """processor/checkpoint.py's Checkpointer as the tick uses it: a batch the tick adds itself (the decision of a
    release, no outputs) commits at the next `commit_delivered`; the batch the tick returns is the runner's."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes, int]] = []
        self.in_flight: list = []

    def add(self, batch) -> None:
        self.in_flight.append(batch)

    def commit_delivered(self, keep: int = 0) -> None:
        while self.in_flight:
            commit(self.in_flight.pop(0))

    def produce(self, topic, key, value, partition, batch) -> None:
        self.produced.append((topic, key, value, partition))


class Consumer:
    def __init__(self, high: int) -> None:
        self.high = high

    def get_watermark_offsets(self, tp, cached=True):
        return 0, self.high


def wallet_table() -> EntityTable:
    table = EntityTable()
    lot = WalletEntryDoc(id="t1", kind="paid", units=100, settled_at=datetime(2026, 11, 3, tzinfo=UTC))
    table.apply(WalletDoc(tenant="telco", id="W1", customer="line-1", currency="EUR", rate_amount=Decimal(1),
                          priority=50, started_at=datetime(2026, 11, 3, tzinfo=UTC), version=1,
                          entries=[lot]))  # fmt: skip
    return table


def processor(store: PartitionStore, high: int) -> SimpleNamespace:
    return SimpleNamespace(stores={0: store}, latest={}, checkpoint=Checkpoint(), consumer=Consumer(high),
                           topics=SimpleNamespace(usage="usage", rated="rated-usage"))  # fmt: skip


def balances() -> Balances:
    b = Balances(Settings(), wallet_table())
    b.catalog = CATALOG
    b._refresh()
    b.dirty.clear()  # the wallet is known; no top-up to evaluate
    return b


def commit(batch) -> None:
    for p, state in batch.states.items():
        state.commit(batch.last[p] + 1, batch.outcomes[p])


def tick(b: Balances, proc: SimpleNamespace, now_ms: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(balances_module.time, "time", lambda: now_ms / 1000)
    return b.tick(proc)


def notes(out) -> list:
    return [decode_notification(v) for t, _, v in out if t.endswith("notifications")]


def first_batch(store: PartitionStore, b: Balances) -> list:
    """Records 1 and 3 in one batch (offsets 0 and 1), debited and committed; the batch's outputs."""
    state = BatchState(store)
    one = process(CATALOG, state, record("r1", 1, "30"), Position("usage", 0, 0, None, T0), NOW, WINDOW)
    three = process(CATALOG, state, record("r3", 3, "60"), Position("usage", 0, 1, None, HELD_AT), NOW, WINDOW)
    assert (one.kind, three.kind) == (Kind.RATED, Kind.HELD) and one.rated["amount"] == "0.1600"
    out = b.after_batch({0: state}, {0: [row_of(one.rated)]}, {0: 1}, NOW)
    state.commit(2, Counter({"rated": 1, "held": 1}))
    return out


def test_a_held_session_is_released_by_the_clock_once_across_a_crash(tmp_path, monkeypatch) -> None:
    store = PartitionStore(tmp_path / "p0")
    b = balances()
    out = first_batch(store, b)
    [held] = notes(out)
    assert held.kind == "session.held" and held.customer == "line-1"
    assert held.data["sequences"] == [3] and held.data["waiting_for"] == [2] and held.data["session_id"] == "c-81"
    assert held.at == "2026-11-03T10:01:00.000Z"  # record 3's Kafka timestamp: a replay says the same
    assert [decode_balance(v).balance for t, _, v in out if t.endswith("balances")] == ["0.84"]
    # the session's own key in the held index (tagged with record 3's offset), in the store's in-memory index too;
    # the outbox taken by the batch's outputs: deleted
    assert store.get(held_key(SKEY)) == [[HELD_AT, "telco", "line-1"], 1]
    assert store.held == {held_key(SKEY): [[HELD_AT, "telco", "line-1"], 1]} and store.get(OUTBOX_KEY) is None

    proc = processor(store, high=2)
    assert tick(b, proc, DUE - 1, monkeypatch) is None  # 1 ms short of 10 minutes
    assert tick(b, processor(store, high=3), DUE, monkeypatch) is None  # a record still to read: it may be the gap

    batch = tick(b, proc, DUE, monkeypatch)
    assert batch is not None and batch.last == {0: 1}  # commits with the partition's position
    produced = proc.checkpoint.produced
    [rated] = [r for t, _, v, p in produced if t == "rated-usage" for r in unpack(v)]
    # released as if record 2 were empty: 30..90 s opens the second minute, 0.06; named after the held record
    assert (rated["id"], rated["amount"], rated["quantity"], rated["src_offset"]) == ("r3", "0.0600", "60", 1)
    assert rated["time"] == "2026-11-03T09:00:00.000Z" and rated["cumulative"] == "90"
    out = [(t, k, v) for t, k, v, _ in produced]
    [released] = notes(out)
    assert released.kind == "session.released" and released.data["sequences"] == [3]
    assert released.data["missing"] == [2] and released.data["amount"] == "0.0600"
    assert released.at == "2026-11-03T10:11:00.000Z"  # held since + 10 minutes: the same after a crash
    assert [decode_balance(v).balance for t, _, v in out if t.endswith("balances")] == ["0.78"]

    # a crash before the tick's commit: the next run releases the same, byte for byte
    store.close()
    store = PartitionStore(tmp_path / "p0")
    proc2 = processor(store, high=2)
    b2 = balances()
    batch = tick(b2, proc2, DUE + 5_000, monkeypatch)
    assert proc2.checkpoint.produced == produced
    for p, state in batch.states.items():
        state.commit(batch.last[p] + 1, batch.outcomes[p])

    # committed: a restart releases nothing again, and the wallet holds 0.16 + 0.06 of usage, debited once
    store.close()
    store = PartitionStore(tmp_path / "p0")
    try:
        assert tick(balances(), processor(store, high=2), DUE + 3_600_000, monkeypatch) is None
        assert store.get(held_key(SKEY)) is None and store.held == {} and store.get(OUTBOX_KEY) is None
        entry = store.get(balance_key("telco", "line-1"))
        assert sum(Decimal(v) for v in entry["u"].values()) == Decimal("0.22")
        stored = store.get(SKEY)[0]
        assert stored["held"] == [] and stored["missing"] == [2] and stored["cost"] == "0.2200"
        # record 2 after all: covered (late), never charged
        late = process(CATALOG, BatchState(store), record("r2", 2, "30"), Position("usage", 0, 2, None, DUE), NOW,
                       WINDOW)  # fmt: skip
        assert late.kind is Kind.DUPLICATE and late.rated is None
    finally:
        store.close()


def test_holds_and_releases_by_a_record_are_reported_once_each(tmp_path) -> None:
    """Record 3 held, record 4 held, record 2 fills the gap: two `session.held` and one `session.released`."""
    store = PartitionStore(tmp_path / "p0")
    try:
        b = balances()
        state = BatchState(store)
        values = [record("r1", 1, "30"), record("r3", 3, "30"), record("r4", 4, "30")]
        outs = [process(CATALOG, state, value, Position("usage", 0, i, None, T0 + i * 1000), NOW, WINDOW)
                for i, value in enumerate(values)]  # fmt: skip
        out = b.after_batch({0: state}, {0: [row_of(o.rated) for o in outs if o.rated]}, {0: 2}, NOW)
        state.commit(3, Counter())
        assert [(n.kind, n.data["sequences"], n.data["waiting_for"]) for n in notes(out)] == [
            ("session.held", [3], [2]), ("session.held", [4], [2])]  # fmt: skip
        state = BatchState(store)
        filled = process(CATALOG, state, record("r2", 2, "30"), Position("usage", 0, 3, None, T0 + 5000), NOW, WINDOW)
        # records 2, 3, 4: 30..120 s, the second minute: 0.06
        assert filled.rated["amount"] == "0.0600" and filled.rated["quantity"] == "90"
        out = b.after_batch({0: state}, {0: [row_of(filled.rated)]}, {0: 3}, NOW)
        state.commit(4, Counter())
        [released] = notes(out)
        assert released.kind == "session.released" and released.data["sequences"] == [3, 4]
        assert released.data["missing"] == [] and released.data["reason"] == "the missing records arrived"
        assert store.get(held_key(SKEY)) is None and store.held == {} and store.get(OUTBOX_KEY) is None
        # a batch that holds nothing produces no session messages (its outbox is not even read)
        state = BatchState(store)
        assert b.session_messages({0: state}) == []
    finally:
        store.close()


def test_a_busy_partition_releases_by_stream_time(tmp_path, monkeypatch) -> None:
    """Records of other customers keep arriving (the partition is never caught up: its high watermark stays ahead):
    the held session is released once the partition's newest Kafka timestamp read reaches record 3's + 10 minutes
    (DUE), not before, whatever the wall clock says."""
    from meterstream.processor.columnar import Message

    store = PartitionStore(tmp_path / "p0")
    try:
        b = balances()
        first_batch(store, b)
        b.observe([Message(0, 0, None, None, T0), Message(0, 1, None, None, HELD_AT)])
        busy = processor(store, high=50)  # records still to read, for ever
        late_wall = DUE + 3_600_000  # an hour past due by the wall clock: not what decides on a busy partition
        for i, ts in enumerate(range(HELD_AT + 60_000, DUE, 60_000)):  # other customers, one a minute up to 10:10
            b.observe([Message(0, 2 + i, b"telco/line-9", None, ts)])
            assert tick(b, busy, late_wall, monkeypatch) is None
        b.observe([Message(0, 20, b"telco/line-9", None, DUE - 1)])  # 1 ms short of 10 minutes of stream time
        assert tick(b, busy, late_wall, monkeypatch) is None
        b.observe([Message(0, 21, b"telco/line-9", None, DUE)])  # 10:11:00.000: record 3's + 10 minutes
        batch = tick(b, busy, late_wall, monkeypatch)
        assert batch is not None
        [rated] = [r for t, _, v, p in busy.checkpoint.produced if t == "rated-usage" for r in unpack(v)]
        assert (rated["id"], rated["amount"], rated["quantity"], rated["src_offset"]) == ("r3", "0.0600", "60", 1)
        [released] = notes([(t, k, v) for t, k, v, _ in busy.checkpoint.produced])
        assert released.at == "2026-11-03T10:11:00.000Z" and released.data["missing"] == [2]
        # an older timestamp read later (producers' clocks differ) never moves stream time back
        b.observe([Message(0, 22, None, None, T0)])
        assert b.stream_ms[0] == DUE
    finally:
        store.close()


def test_sessions_timed_without_a_timestamp_are_forgotten_once_released_or_revoked(tmp_path, monkeypatch) -> None:
    """Record 3 held without a Kafka timestamp is timed from when the tick first saw it (`first_held`); once record 2
    releases it, or once its partition is revoked, the next tick forgets it."""
    store = PartitionStore(tmp_path / "p0")
    try:
        b = balances()
        state = BatchState(store)
        for i, (eid, seq, quantity) in enumerate((("r1", 1, "30"), ("r3", 3, "60"))):
            process(CATALOG, state, record(eid, seq, quantity), Position("usage", 0, i, None, None), NOW, WINDOW)
        b.after_batch({0: state}, {0: []}, {0: 1}, NOW)
        state.commit(2, Counter())
        proc = processor(store, high=2)
        assert tick(b, proc, NOW, monkeypatch) is None and b.first_held == {SKEY: NOW}
        state = BatchState(store)  # record 2 arrives: records 2 and 3 rated, nothing held any more
        filled = process(CATALOG, state, record("r2", 2, "30"), Position("usage", 0, 2, None, None), NOW, WINDOW)
        assert filled.kind is Kind.RATED
        b.after_batch({0: state}, {0: [row_of(filled.rated)]}, {0: 2}, NOW)
        state.commit(3, Counter())
        assert tick(b, processor(store, high=3), NOW + 1_000, monkeypatch) is None and b.first_held == {}

        b2 = balances()  # a session of a partition this worker then loses
        other = PartitionStore(tmp_path / "p1")
        try:
            state = BatchState(other)
            for i, (eid, seq) in enumerate((("x1", 1), ("x3", 3))):
                process(CATALOG, state, record(eid, seq, "30", session="c-82"), Position("usage", 0, i, None, None),
                        NOW, WINDOW)  # fmt: skip
            state.commit(2, Counter())
            assert tick(b2, processor(other, high=2), NOW, monkeypatch) is None
            assert list(b2.first_held) == [session_key("telco", "line-1", "c-82")]
            assert tick(b2, processor(store, high=3), NOW + 1_000, monkeypatch) is None  # p1 revoked: only p0
            assert b2.first_held == {}
        finally:
            other.close()
    finally:
        store.close()


def test_the_columnar_step_feeds_stream_time_per_partition_before_rating(monkeypatch, tmp_path) -> None:
    """`install` hands the balances to the columnar step, which gives each partition's messages to
    `observe_partition` before rating them: the newest Kafka timestamp per partition becomes its stream time (a
    message without one, None, leaves it)."""
    from meterstream.ingest import topics
    from meterstream.processor.columnar import ColumnarStep, Message
    from meterstream.processor.store import BatchState, PartitionStore
    from meterstream.rating.catalog import load_catalog

    monkeypatch.setattr(topics, "ensure_provisioning_topics", lambda settings: None)
    step = ColumnarStep(load_catalog(Settings().catalog), "usage", 35 * 86_400_000)
    live = SimpleNamespace(table=wallet_table())
    proc = SimpleNamespace(settings=Settings(), catalog=SimpleNamespace(live=live), columnar=step)
    b = balances_module.install(proc)
    assert b is not None and step.balances is b
    order: list[str] = []
    monkeypatch.setattr(b, "after_batch", lambda *args: order.append("after_batch") or [])
    stores = {p: PartitionStore(tmp_path / f"p{p}") for p in (0, 1, 2)}
    try:
        states = {p: BatchState(store) for p, store in stores.items()}
        msgs = [Message(0, 5, None, b"{}", HELD_AT), Message(1, 7, None, b"{}", T0), Message(0, 6, None, b"{}", T0),
                Message(2, 1, None, b"{}", None)]  # fmt: skip
        step.run(states, msgs, NOW)
    finally:
        for store in stores.values():
            store.close()
    assert b.stream_ms == {0: HELD_AT, 1: T0}  # partition 0's newest is HELD_AT (later than T0); 2 has none
    assert order == ["after_batch"]
