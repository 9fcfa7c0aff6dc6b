"""RocksDB partition store: atomic batches, durable counters, bounded dedup state."""

from collections import Counter
from pathlib import Path

from meterstream.processor.dedup import dedup_key
from meterstream.processor.store import DAY_MS, BatchState, PartitionStore


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
