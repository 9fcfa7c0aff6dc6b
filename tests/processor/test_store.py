"""RocksDB partition store: atomic batches, durable counters, bounded dedup state."""

from collections import Counter
from pathlib import Path

import orjson

from meterstream.processor.dedup import dedup_key
from meterstream.processor.store import (
    DAY_MS,
    ENTRY_TAG,
    BatchState,
    PartitionStore,
    Prepared,
    Uncommitted,
    _closed_session,
    encode_entry,
    pack_entries,
    pack_tagged_entry,
)


def test_batch_is_invisible_until_committed_and_survives_reopen(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    state = BatchState(store)
    state["c|x"] = ["5", 9]
    assert store.get("c|x") is None and state.get("c|x") == ["5", 9]
    store.commit(state.pending, 10, Counter(rated=3, duplicate=1))
    store.commit({}, 12, Counter(rated=2))
    store.close()
    again = PartitionStore(tmp_path / "p0")
    assert again.get("c|x") == ["5", 9]
    assert again.next_offset() == 12
    assert again.counts == Counter(rated=5, duplicate=1)


def test_purge_forgets_only_ids_older_than_the_cutoff(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    old, recent, reseen = dedup_key("t", "old"), dedup_key("t", "new"), dedup_key("t", "again")
    store.commit({old: {"p": 0, "o": 1, "t": 1 * DAY_MS}, reseen: {"p": 0, "o": 2, "t": 2 * DAY_MS}}, 3, Counter())
    # `again` expired and was seen anew on day 40: its old index entry must not delete the new entry
    store.commit({recent: {"p": 0, "o": 3, "t": 40 * DAY_MS}, reseen: {"p": 0, "o": 4, "t": 40 * DAY_MS}}, 5, Counter())
    assert store.purge_before(36) == 1
    assert store.get(old) is None
    assert store.get(recent) is not None and store.get(reseen)["o"] == 4
    assert store.purge_before(36) == 0  # the index entries are gone too
    assert store.purge_before(41) == 2


def test_workers_take_contiguous_ranges_that_cover_every_partition_once() -> None:
    from meterstream.processor.runner import worker_partitions

    assert [worker_partitions(4, i, 2) for i in range(2)] == [[0, 1], [2, 3]]
    assert [worker_partitions(5, i, 3) for i in range(3)] == [[0], [1, 2], [3, 4]]
    for partitions in range(1, 13):
        for workers in range(1, partitions + 1):
            got = [p for i in range(workers) for p in worker_partitions(partitions, i, workers)]
            assert got == list(range(partitions))


def test_next_batch_reads_the_uncommitted_batch_before_it(tmp_path: Path) -> None:
    """While batch A's outputs await Kafka's ack, batch B is processed over A's writes; commits go in order."""
    store = PartitionStore(tmp_path / "p0")
    store.commit({"c|x": ["1", 0], "c|y": ["7", 0]}, 1, Counter(rated=1))
    a = BatchState(store)
    a["c|x"] = ["5", 3]
    b = BatchState(store, after=a)
    assert b.get("c|x") == ["5", 3]  # A's write, not yet in the store
    assert b.get("c|y") == ["7", 0]  # untouched by A: from the store
    assert store.get("c|x") == ["1", 0]
    b["c|x"] = ["9", 6]
    assert a.get("c|x") == ["5", 3]  # B's writes stay out of A
    a.commit(4, Counter(rated=1))
    assert a.after is None and store.get("c|x") == ["5", 3] and store.next_offset() == 4
    b.commit(7, Counter(rated=1))
    assert b.after is None
    assert store.get("c|x") == ["9", 6] and store.next_offset() == 7 and store.counts == Counter(rated=3)


def test_dedup_entries_are_21_bytes_and_read_back_as_the_entry(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    key = dedup_key("t", "e1")
    store.commit({key: {"p": 2, "o": 5, "t": DAY_MS}, "c|x": ["1.5", 5]}, 6, Counter(rated=1))
    # tag 0x01, partition (4 bytes), offset (8), first seen ms (8), big endian: 1 + 4 + 8 + 8 = 21 bytes
    assert store.db.get(key.encode()) == b"\x01" + (2).to_bytes(4, "big") + (5).to_bytes(8, "big") + (
        86_400_000
    ).to_bytes(8, "big")
    assert store.get(key) == {"p": 2, "o": 5, "t": DAY_MS}
    assert BatchState(store).get(key) == {"p": 2, "o": 5, "t": DAY_MS}
    assert store.db.get(b"c|x") == b'["1.5",5]'  # other values stay JSON
    # what does not fit the binary form is kept as JSON, and read back unchanged
    odd = {dedup_key("t", "neg"): {"p": 0, "o": -1, "t": 0}, dedup_key("t", "more"): {"p": 0, "o": 1, "t": 0, "r": 1}}
    store.commit(odd, 7, Counter())
    assert store.db.get(dedup_key("t", "neg").encode()) == b'{"p":0,"o":-1,"t":0}'
    assert store.get(dedup_key("t", "more")) == {"p": 0, "o": 1, "t": 0, "r": 1}


def test_stores_written_by_earlier_versions_are_read_and_purged(tmp_path: Path) -> None:
    """Before the binary entries: JSON entries and one index key `t|<day>|<key>` per entry."""
    old, kept = dedup_key("t", "old"), dedup_key("t", "kept")
    store = PartitionStore(tmp_path / "p0")
    for key, day in ((old, 1), (kept, 50)):  # written as the earlier version wrote them
        store.db.put(key.encode(), b'{"p":0,"o":%d,"t":%d}' % (day, day * DAY_MS))
        store.db.put(b"t|%08d|%s" % (day, key.encode()), b"")
    assert store.get(old) == {"p": 0, "o": 1, "t": DAY_MS}
    assert BatchState(store).get(kept) == {"p": 0, "o": 50, "t": 50 * DAY_MS}
    new = dedup_key("t", "new")
    store.commit({new: {"p": 0, "o": 60, "t": 2 * DAY_MS}}, 61, Counter(rated=1))  # this version's index
    assert store.purge_before(10) == 2  # the old-style entry of day 1 and the new one of day 2
    assert store.get(old) is None and store.get(new) is None and store.get(kept) is not None
    assert store.purge_before(51) == 1
    assert [k for k in store.db.keys() if k.startswith(b"t|")] == []


def test_one_index_entry_per_commit_and_day_and_none_lost_on_a_repeated_offset(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    ids = [dedup_key("t", f"e{i}") for i in range(5)]
    store.commit({k: {"p": 0, "o": i, "t": 3 * DAY_MS + i} for i, k in enumerate(ids[:3])}, 3, Counter(rated=3))
    store.commit({ids[3]: {"p": 0, "o": 3, "t": 4 * DAY_MS}}, 3, Counter(rated=1))  # same offset, other day
    store.commit({ids[4]: {"p": 0, "o": 4, "t": 3 * DAY_MS}}, 3, Counter(rated=1))  # same offset and day
    index = [k for k in store.db.keys() if k.startswith(b"t|")]
    assert len(index) == 2  # days 3 and 4
    assert store.purge_before(4) == 4  # e0..e2 and e4, first seen on day 3
    assert [store.get(k) is None for k in ids] == [True, True, True, False, True]


def _plain_prepare(store: PartitionStore, writes: dict, next_offset: int, outcomes: Counter) -> Prepared:
    """`PartitionStore.prepare` as first written (two passes, `encode_entry` and `pack_entries` per entry):
    the specification the one-pass version must equal, record for record and byte for byte."""
    ops: list = []
    records: list = []
    first_seen: dict[int, list] = {}
    closed = []
    deletes = []  # the store's operations put them last
    last_t = None
    for key, value in writes.items():
        if key.startswith("d|"):
            raw = encode_entry(value)
            ops.append((key.encode(), raw))
            t = value["t"]
            last_t = t
            first_seen.setdefault(t // DAY_MS, []).append((key, raw))
        elif value is None:  # a delete: its tombstone
            deletes.append((key.encode(), None))
            records.append((key.encode(), None))
        else:
            raw = orjson.dumps(value)
            ops.append((key.encode(), raw))
            records.append((key.encode(), raw))
            if key.startswith("s|") and _closed_session(value):
                closed.append((key, value))
    for key, value in closed:
        index = (b"u|%08d|%s" % (last_t // DAY_MS, key.encode()), orjson.dumps(value[-1]))
        ops.append(index)
        records.append(index)
    for day, pairs in first_seen.items():
        index_key = b"t|%08d|*%020d" % (day, next_offset)
        earlier = store.db.get(index_key)
        if earlier is not None:
            known = {k for k, _ in pairs}
            old = [(k, store.db.get(k.encode())) for k in orjson.loads(earlier) if k not in known]
            pairs = [(k, v) for k, v in old if v is not None] + pairs
        ops.append((index_key, orjson.dumps([k for k, _ in pairs])))
        records.insert(0, (index_key, pack_entries(pairs)))
    counts = store.counts + outcomes
    tail = [(b"\x00counts", orjson.dumps(counts)), (b"\x00offset", str(next_offset).encode())]
    return Prepared(ops + tail + deletes, records + tail, counts)


def test_prepare_gives_the_plain_versions_operations_and_records(tmp_path: Path) -> None:
    """Two days in one batch, entries that stay JSON (negative offset, a fifth field, a partition past
    2^32), non-ASCII ids, running totals, a finished and an open session, and a repeated offset whose
    earlier index entry is merged: the same operations and changelog records as the plain two-pass version."""
    store = PartitionStore(tmp_path / "p0")
    store.commit({dedup_key("t", "early"): {"p": 1, "o": 7, "t": 9 * DAY_MS}}, 12, Counter(rated=1))
    writes = {
        dedup_key("t", "a"): {"p": 1, "o": 10, "t": 9 * DAY_MS + 5},
        "c|t|x|calls|2024-10": ["12.5", 10],
        dedup_key("t", "é✓"): {"p": 1, "o": 11, "t": 9 * DAY_MS + 5},
        dedup_key("u", "late"): {"p": 1, "o": 11, "t": 10 * DAY_MS},  # the next day
        dedup_key("t", "neg"): {"p": 1, "o": -1, "t": 10 * DAY_MS},
        dedup_key("t", "five"): {"p": 1, "o": 3, "t": 10 * DAY_MS, "r": 1},
        dedup_key("t", "huge"): {"p": 2**32, "o": 1, "t": 10 * DAY_MS},  # no 4-byte partition
        "s|t|x|sess": [{"closed": 3, "missing": []}, 11],
        "s|t|x|open": [{"seen": [1]}, 11],
        "b|t|x": [{"min": "3"}, 11],
        "h|held|s|t|x|gone": None,  # a delete
    }
    expected = _plain_prepare(store, writes, 12, Counter(rated=5, duplicate=1))
    got = store.prepare(writes, 12, Counter(rated=5, duplicate=1))
    assert got == expected
    # by hand: the day-10 record first, then day 9's, which holds "early" (same offset 12) before "a"
    assert [k for k, _ in got.records[:2]] == [b"t|00000010|*%020d" % 12, b"t|00000009|*%020d" % 12]
    early = dedup_key("t", "early").encode()
    assert got.records[1][1].startswith(len(early).to_bytes(2, "big") + (21).to_bytes(2, "big") + early + b"\x01")
    assert got.records[-2:] == [(b"\x00counts", b'{"rated":6,"duplicate":1}'), (b"\x00offset", b"12")]
    store.close()


def test_a_batch_started_behind_two_uncommitted_ones_reads_both(tmp_path: Path) -> None:
    """With two batches in flight (one awaiting its changelog's acknowledgement, one its outputs'), the
    third reads the newer write of a key both wrote, the older batch's other writes, the store for the rest;
    once they commit, batches after them link to nothing committed."""
    store = PartitionStore(tmp_path / "p0")
    store.commit({"c|x": ["1", 0], "c|y": ["7", 0], "c|z": ["3", 0]}, 1, Counter(rated=1))
    a = BatchState(store)
    a["c|x"], a["c|y"] = ["2", 1], ["8", 1]
    b = BatchState(store, after=a)
    b["c|x"] = ["4", 2]
    c = BatchState(store, after=b)  # a and b both uncommitted
    assert isinstance(c.after, Uncommitted) and c.after.members == [a, b]
    assert (c.get("c|x"), c.get("c|y"), c.get("c|z")) == (["4", 2], ["8", 1], ["3", 0])
    assert c.after.pending == {"c|x": ["4", 2], "c|y": ["8", 1]}  # what the columnar path reads
    c["c|y"] = ["9", 3]
    a.commit(2, Counter(rated=1))
    assert c.after.committed is False  # b is not
    d = BatchState(store, after=c)  # a committed: only b and c are in flight
    assert isinstance(d.after, Uncommitted) and d.after.members == [b, c]
    assert (d.get("c|x"), d.get("c|y"), d.get("c|z")) == (["4", 2], ["9", 3], ["3", 0])
    b.commit(3, Counter(rated=1))
    c.commit(4, Counter(rated=1))
    assert BatchState(store, after=c).after is None and BatchState(store, after=d).after is not None
    d.commit(5, Counter())
    assert store.get("c|x") == ["4", 2] and store.get("c|y") == ["9", 3] and store.next_offset() == 5
    assert store.counts == Counter(rated=4)


def test_a_batch_of_long_ids_is_logged_in_records_under_kafkas_message_limit(tmp_path: Path) -> None:
    """5,000 ids of 200 characters in one partition's batch: one packed record was 1.2 MB and the producer
    refused it (MSG_SIZE_TOO_LARGE, over librdkafka's 1,000,000-byte message.max.bytes): the processor stopped.
    By hand: an entry is 4 bytes of lengths + its key (`d|` + `t` + 0x1f + 200 = 204 bytes) + 21 = 229 bytes,
    1,145,000 for the batch; at most 524,288 per record (CHANGELOG_RECORD_MAX) is 2,289 entries: 3 records
    (2,289 + 2,289 + 422). Restored into an empty store they give back every entry; a purge forgets them all
    and tombstones all three records."""
    store = PartitionStore(tmp_path / "p0")
    ids = [dedup_key("t", f"{i:05d}".ljust(200, "x")) for i in range(5000)]
    writes = {k: {"p": 0, "o": i, "t": 3 * DAY_MS + 7} for i, k in enumerate(ids)}
    prepared = store.prepare(writes, 5000, Counter(rated=5000))
    index = [(k, v) for k, v in prepared.records if k.startswith(b"t|")]
    assert [len(v) for _, v in index] == [2289 * 229, 2289 * 229, 422 * 229]
    assert [k for k, _ in index] == [b"t|00000003|*%020d" % 5000, b"t|00000003|*%020d.1" % 5000,
                                     b"t|00000003|*%020d.2" % 5000]  # fmt: skip
    assert all(len(k) + len(v) < 1_000_000 for k, v in prepared.records)
    store.apply(prepared)

    restored = PartitionStore(tmp_path / "p0-restored")
    assert restored.restore(prepared.records, 1) == 5000 + 2  # the entries, the counters and the offset
    assert all(restored.get(k) == {"p": 0, "o": i, "t": 3 * DAY_MS + 7} for i, k in enumerate(ids))
    for s in (store, restored):
        plan = s.plan_purge(4)
        assert plan.forgotten == 5000
        assert sorted(k for k, v in plan.records if v is None) == sorted(k for k, _ in index)
        s.apply(plan)
        assert all(s.get(k) is None for k in ids) and not [k for k in s.db.keys() if k.startswith(b"t|")]
        s.close()


def test_a_batch_reads_the_stores_values_through_its_copy_of_recent_writes(tmp_path: Path, monkeypatch) -> None:
    """`PartitionStore.recent` answers a batch's reads of committed keys other than dedup entries: after commits,
    a purge that deletes a finished session, a copy grown past its bound, a restore from changelog records and a
    wipe, every read is what RocksDB itself holds (a stale copy would return the session after its purge, the old
    total after the restore, anything after the wipe)."""
    store = PartitionStore(tmp_path / "p0")
    sess = "s|t|x|sess"
    store.commit({dedup_key("t", "a"): {"p": 0, "o": 0, "t": 9 * DAY_MS + 5}, "c|x": ["1", 0],
                  sess: [{"closed": 3, "missing": []}, 0]}, 1, Counter(rated=1))  # fmt: skip
    store.commit({"c|x": ["2.5", 1], "b|x": [{"min": "3"}, 1]}, 2, Counter(rated=1))

    def reads() -> dict:
        state = BatchState(store)
        return {k: state.get(k) for k in ("c|x", "b|x", sess, "c|never")}

    assert {b"c|x", b"b|x", sess.encode()} <= store.recent.keys()
    assert dedup_key("t", "a").encode() not in store.recent
    assert all(store.db.get(k) == v for k, v in store.recent.items())
    assert reads() == {"c|x": ["2.5", 1], "b|x": [{"min": "3"}, 1], sess: [{"closed": 3, "missing": []}, 0],
                       "c|never": None}  # fmt: skip
    assert store.purge_before(10) == 1  # day 9's entry and the session finished that day
    assert reads() == {"c|x": ["2.5", 1], "b|x": [{"min": "3"}, 1], sess: None, "c|never": None}
    monkeypatch.setattr("meterstream.processor.store.RECENT_MAX", 3)
    store.commit({"c|x": ["4", 2], "c|y": ["1", 2], "c|z": ["1", 2]}, 3, Counter(rated=1))
    # 5 held (c|x, c|y, c|z, counts, offset), more than 3: the 4 least recently written go first, then this
    # commit's writes move to the end in its records' order (c|y, counts, offset)
    store.commit({"c|y": ["2", 3]}, 4, Counter(rated=1))
    assert list(store.recent) == [b"c|y", b"\x00counts", b"\x00offset"]
    assert reads()["c|x"] == ["4", 2] and BatchState(store).get("c|y") == ["2", 3]
    store.restore([(b"c|y", b'["7",4]'), (b"\x00offset", b"5")], 9)
    assert BatchState(store).get("c|y") == ["7", 4]
    store.commit({"c|x": ["8", 5]}, 6, Counter(rated=1))
    store.wipe()
    assert reads() == {"c|x": None, "b|x": None, sess: None, "c|never": None}
    store.close()


def test_a_none_write_deletes_the_key_and_the_held_index_follows(tmp_path: Path) -> None:
    """A write of None (a key other than a dedup entry) is a RocksDB delete and a changelog tombstone, forgotten by
    the recent writes; the store's in-memory index of held sessions (`held`, the `h|held|` keys) follows puts and
    deletes, and is read back by a prefix scan on reopening and after a restore, emptied by a wipe."""
    store = PartitionStore(tmp_path / "p0")
    a, b = "h|held|s|t\x1fc\x1fa", "h|held|s|t\x1fc\x1fb"
    store.commit({a: [[1000, "t", "c"], 1], b: [[2000, "t", "c"], 2], "h|helc": ["x", 2], "c|x": ["1", 2]}, 3,
                 Counter())  # fmt: skip
    assert store.held == {a: [[1000, "t", "c"], 1], b: [[2000, "t", "c"], 2]}  # not "h|helc": another prefix
    version = store.held_version
    state = BatchState(store)
    state[a] = None
    state["c|x"] = None
    assert state.get(a) is None and state.get("c|x") is None  # the pending delete hides the stored value
    prepared = state.prepare(4, Counter())
    assert (a.encode(), None) in prepared.records and (b"c|x", None) in prepared.records
    state.commit(4, Counter(), prepared)
    assert store.get(a) is None and store.get("c|x") is None and b"c|x" not in store.recent
    assert BatchState(store).get("c|x") is None and store.get(b) == [[2000, "t", "c"], 2]
    assert store.held == {b: [[2000, "t", "c"], 2]} and store.held_version > version
    store.commit({}, 5, Counter())  # a commit that writes no held key leaves the index and its version
    assert store.held_version == version + 1
    store.close()
    store = PartitionStore(tmp_path / "p0")
    assert store.held == {b: [[2000, "t", "c"], 2]}
    store.restore([(a.encode(), b'[[3000,"t","c"],6]'), (b.encode(), None)], 9)
    assert store.held == {a: [[3000, "t", "c"], 6]}
    store.wipe()
    assert store.held == {} and store.get(a) is None
    store.close()


def test_packed_entries_in_a_buffer_are_written_and_read_as_the_dicts(tmp_path: Path) -> None:
    """The batch path holds its dedup entries packed (`pack_tagged_entry`), beside the specification's dicts, in
    any order and over two days: `prepare` gives the operations and records the dicts give, and `BatchState.get`
    (the specification's read), this batch's or a later one's, gives the dict back."""
    as_dicts = {
        dedup_key("t", "a"): {"p": 1, "o": 10, "t": 9 * DAY_MS + 5},
        dedup_key("t", "b"): {"p": 1, "o": 11, "t": 9 * DAY_MS + 5},
        "c|t|x|calls|2024-10": ["12.5", 11],
        dedup_key("t", "c"): {"p": 1, "o": 12, "t": 10 * DAY_MS},  # the next day, as a dict between packed ones
        dedup_key("t", "d"): {"p": 1, "o": 13, "t": 9 * DAY_MS + 5},  # back to the first day: its record again
        dedup_key("t", "e"): {"p": 1, "o": 14, "t": 10 * DAY_MS},
    }
    mixed = dict(as_dicts)
    for name in ("a", "b", "d", "e"):
        v = as_dicts[dedup_key("t", name)]
        mixed[dedup_key("t", name)] = pack_tagged_entry(ENTRY_TAG, v["p"], v["o"], v["t"])
    # by hand: tag 1, partition 1 (4 bytes), offset 10 (8), first seen 9 days + 5 ms (8), big endian
    assert mixed[dedup_key("t", "a")] == b"\x01" + (1).to_bytes(4, "big") + (10).to_bytes(8, "big") + (
        9 * DAY_MS + 5
    ).to_bytes(8, "big")
    one, two = PartitionStore(tmp_path / "one"), PartitionStore(tmp_path / "two")
    try:
        assert two.prepare(mixed, 15, Counter(rated=5)) == one.prepare(as_dicts, 15, Counter(rated=5))
        state = BatchState(two)
        state.pending.update(mixed)
        later = BatchState(two, after=state)  # reads the uncommitted batch's buffer
        for key, value in as_dicts.items():
            assert state.get(key) == value and later.get(key) == value
        state.commit(15, Counter(rated=5))
        assert [two.get(k) for k in as_dicts] == list(as_dicts.values())
    finally:
        one.close()
        two.close()
