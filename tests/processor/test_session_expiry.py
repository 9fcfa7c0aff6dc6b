"""A finished telecom session's state (`s|...`) is deleted once the dedup window has passed, not before.

Until then a repeated record of the session is still a duplicate (never charged twice). The records and the
plan are those of tests/processor/test_sessions.py (a 30 s + 45 s call: 0.16 then 0.06). The purge is driven
as the runner drives it: cutoff day = (now - window) // one day.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from test_sessions import CATALOG, record  # the same plan and records (tests/processor is on the path)

from meterstream.processor.sessions import SESSION_PREFIX, session_key
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import _SESSION_PREFIX, DAY_MS, BatchState, PartitionStore

NOW = 1_793_700_000_000  # 2026-11-03 (day 20760 since the epoch)
WINDOW = 7 * DAY_MS
KEY = session_key("telco", "line-1", "c-81")


class Run:
    """Messages through `step.process`, one committed batch per call, offsets counted from 0."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.offset = 0

    def __call__(self, *values: bytes, now: int = NOW) -> list:
        state = BatchState(self.store)
        outs = []
        for value in values:
            outs.append(process(CATALOG, state, value, Position("usage", 0, self.offset, None), now, WINDOW))
            self.offset += 1
        state.commit(self.offset, Counter(o.kind.value for o in outs))
        return outs


def index(store: PartitionStore) -> dict[int, int]:
    """The finished-session index of KEY: day -> the offset of the write it names."""
    out = {}
    for key, value in store.db.items(from_key=b"u|"):
        if not key.startswith(b"u|"):
            break
        assert key.endswith(b"|" + KEY.encode())
        out[int(key[2:10])] = int(value)
    return out


def purge_at(store: PartitionStore, now: int) -> None:
    store.purge_before((now - WINDOW) // DAY_MS)  # the runner's cutoff


def test_the_store_knows_the_sessions_prefix() -> None:
    assert _SESSION_PREFIX == SESSION_PREFIX


def test_a_closed_session_is_kept_for_the_window_then_deleted(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    run = Run(store)
    outs = run(record("r1", 1, "30"), record("r2", 2, "45", final=True))
    assert [o.rated["amount"] for o in outs] == ["0.1600", "0.0600"]
    doc, offset = store.get(KEY)
    assert doc == {"closed": 2, "missing": [], "usage": "75", "cost": "0.2200"}  # what is kept: 0.16 + 0.06
    assert index(store) == {NOW // DAY_MS: offset}  # indexed on the batch's day, with the write's offset

    purge_at(store, NOW + 6 * DAY_MS)  # 6 days later: inside the 7-day window
    assert store.get(KEY) is not None
    (again,) = run(record("r2-resent", 2, "45", final=True), now=NOW + 6 * DAY_MS)
    assert again.kind is Kind.DUPLICATE and again.rated is None  # still recognised: not charged

    purge_at(store, NOW + 8 * DAY_MS)  # the window has passed (cutoff day = the close day + 1)
    assert store.get(KEY) is None
    assert index(store) == {}  # the index entry is gone too


def test_an_open_session_is_never_deleted(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    Run(store)(record("r1", 1, "30"))  # no final record yet
    purge_at(store, NOW + 30 * DAY_MS)
    doc, _ = store.get(KEY)
    assert "closed" not in doc
    assert index(store) == {}


def test_a_late_record_restamps_the_session_so_the_old_index_entry_does_not_delete_it(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    run = Run(store)
    # totals: 30 s, then 90 s final (sequence 2 not seen: covered, 2nd increment +0.06)
    outs = run(record("r1", 1, "30", total=True), record("r3", 3, "90", total=True, final=True))
    assert [o.rated["amount"] for o in outs] == ["0.1600", "0.0600"]
    later = NOW + 5 * DAY_MS
    (late,) = run(record("r2", 2, "60", total=True), now=later)  # covered by the total: late, not charged
    assert late.kind is not Kind.RATED and late.rated is None
    assert index(store) == {NOW // DAY_MS: 1, later // DAY_MS: 2}  # written at offset 1, again at offset 2
    purge_at(store, NOW + 8 * DAY_MS)  # the first stamp's day is purged, the session was stamped again since
    assert store.get(KEY) is not None
    purge_at(store, later + 8 * DAY_MS)
    assert store.get(KEY) is None


def test_the_purge_tombstones_reach_the_changelog_and_a_rebuilt_store_agrees(tmp_path: Path) -> None:
    source = PartitionStore(tmp_path / "src")
    state = BatchState(source)
    for offset, value in enumerate([record("r1", 1, "30"), record("r2", 2, "45", final=True)]):
        process(CATALOG, state, value, Position("usage", 0, offset, None), NOW, WINDOW)
    prepared = state.prepare(2, Counter(rated=2))
    state.commit(2, Counter(rated=2), prepared)
    log = list(prepared.records)
    index = [k for k, _ in log if k.startswith(b"u|")]
    assert index == [b"u|%08d|%s" % (NOW // DAY_MS, KEY.encode())]

    # rebuilt before the purge: the session and its index entry come back, so the copy purges it too
    copy = PartitionStore(tmp_path / "copy")
    copy.restore(log, len(log))
    assert copy.get(KEY) == source.get(KEY)
    purge_at(copy, NOW + 8 * DAY_MS)
    assert copy.get(KEY) is None

    purge = source.plan_purge((NOW + 8 * DAY_MS - WINDOW) // DAY_MS)
    tombstones = {k for k, v in purge.records if v is None}
    assert {KEY.encode(), index[0]} <= tombstones
    source.apply(purge, len(log) + len(purge.records))
    rebuilt = PartitionStore(tmp_path / "rebuilt")
    rebuilt.restore(log + purge.records, len(log) + len(purge.records))
    assert source.get(KEY) is None and rebuilt.get(KEY) is None
