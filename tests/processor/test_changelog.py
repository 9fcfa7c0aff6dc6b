"""The changelog as processor/store.py shapes it: a store rebuilt from its records equals the store that
wrote them (purges included), and a reader on a real broker applies whole commits only."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from meterstream.ingest.producer import make_producer
from meterstream.processor.changelog import ChangelogReader, ChangelogWriter, changelog_topic, ensure_changelog
from meterstream.processor.store import (
    COMMIT_END,
    DAY_MS,
    PartitionStore,
    decode_value,
    pack_entries,
    unpack_entries,
)
from meterstream.schemas.settings import Settings

DAY = 20_000  # days since the epoch (2024-10-04)


def entry(offset: int, day: int, ms: int = 0) -> dict:
    return {"p": 0, "o": offset, "t": day * DAY_MS + ms}


def contents(store: PartitionStore) -> dict[bytes, bytes]:
    return {k: v for k, v in store.db.items() if k != b"\x00changelog"}


def test_packed_entries_round_trip() -> None:
    pairs = [("d|t1\x1fe1", b"\x01" + bytes(20)), ("d|t1\x1fé", b'{"p":0}')]
    packed = pack_entries(pairs)
    assert len(packed) == 4 + 7 + 21 + 4 + 7 + 7  # two 4-byte headers, UTF-8 keys, values
    assert unpack_entries(packed) == pairs


def test_a_store_rebuilt_from_its_changelog_equals_it(tmp_path: Path) -> None:
    source = PartitionStore(tmp_path / "source")
    log: list[tuple[bytes, bytes | None]] = []

    def commit(writes: dict, next_offset: int, outcomes: dict) -> None:
        prepared = source.prepare(writes, next_offset, Counter(outcomes))
        log.extend(prepared.records)
        source.apply(prepared, len(log))

    commit({"d|t1\x1fa": entry(0, DAY), "d|t1\x1fb": entry(1, DAY), "c|t1|x|api|2024-10": ["2", 1]}, 2, {"rated": 2})
    commit({"d|t1\x1fc": entry(2, DAY + 1), "c|t1|x|api|2024-10": ["3", 2], "bal|t1|x": {"left": "7"}}, 3,
           {"rated": 1})  # fmt: skip
    # id a seen again two days later (after the window forgot it): a new entry, in a later day's index
    commit({"d|t1\x1fa": entry(3, DAY + 2), "c|t1|x|api|2024-10": ["4", 3]}, 4, {"rated": 1})
    purge = source.plan_purge(DAY + 1)  # forget what was first seen before day DAY + 1
    assert purge.forgotten == 1  # b; a was seen again on DAY + 2
    assert [k for k, v in purge.records] == [b"t|%08d|*%020d" % (DAY, 2), COMMIT_END]
    assert purge.records[0][1] is None  # a tombstone
    log.extend(purge.records)
    source.apply(purge, len(log))
    assert source.get("d|t1\x1fb") is None and source.get("d|t1\x1fa") == entry(3, DAY + 2)

    # each commit: one packed record per day, one per other key, then the counters and the offset
    assert len(log) == (1 + 1 + 2) + (1 + 2 + 2) + (1 + 1 + 2) + 2
    rebuilt = PartitionStore(tmp_path / "rebuilt")
    assert rebuilt.restore(log[:4], 4) == 2 + 1 + 1 + 1  # two dedup entries, the total, counters, offset
    assert rebuilt.next_offset() == 2 and rebuilt.changelog_next() == 4
    rebuilt.restore(log[4:], len(log))
    assert contents(rebuilt) == contents(source)
    assert rebuilt.counts == Counter({"rated": 4}) and rebuilt.next_offset() == 4
    assert rebuilt.get("bal|t1|x") == {"left": "7"}
    assert decode_value(rebuilt.db[b"d|t1\x1fc"]) == entry(2, DAY + 1)
    # the rebuilt store purges like the source: its day index came back with the entries
    assert rebuilt.purge_before(DAY + 3) == 2  # c and the second a
    source.close()
    rebuilt.close()


def test_a_restore_in_two_parts_equals_one(tmp_path: Path) -> None:
    """A tombstone read in a later restore than the record it deletes still deletes its entries."""
    source = PartitionStore(tmp_path / "source")
    prepared = source.prepare({"d|t1\x1fa": entry(0, DAY)}, 1, Counter({"rated": 1}))
    source.apply(prepared, 2)
    purge = source.plan_purge(DAY + 1)
    log = prepared.records + purge.records
    one, two = PartitionStore(tmp_path / "one"), PartitionStore(tmp_path / "two")
    one.restore(log, len(log))
    two.restore(log[:2], 2)
    two.restore(log[2:], len(log))
    assert one.get("d|t1\x1fa") is None and two.get("d|t1\x1fa") is None
    assert contents(one) == contents(two) and one.next_offset() == two.next_offset() == 1
    for s in (source, one, two):
        s.close()


@pytest.mark.kafka
def test_the_reader_applies_whole_commits_and_catches_up(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(update={"topic_prefix": f"cl{uuid.uuid4().hex[:8]}."})
    assert ensure_changelog(settings, 2) is True
    assert ensure_changelog(settings, 2) is False
    with pytest.raises(RuntimeError, match="has 2 partitions, the input topic 3"):
        ensure_changelog(settings, 3)
    source = PartitionStore(tmp_path / "source")
    producer = make_producer(settings)
    writer = ChangelogWriter(producer, changelog_topic(settings))
    first = source.prepare({"d|t1\x1fa": entry(0, DAY), "c|t1|x": ["1", 0]}, 1, Counter({"rated": 1}))
    assert writer.produce(1, first.records, None) == 4
    source.apply(first)
    second = source.prepare({"d|t1\x1fb": entry(1, DAY), "c|t1|x": ["2", 1]}, 2, Counter({"rated": 1}))
    writer.produce(1, second.records[:2], None)  # its writer died here: no counters, no offset
    assert producer.flush(30) == 0

    reader = ChangelogReader(settings)
    target = PartitionStore(tmp_path / "target")
    done = reader.catch_up(1, target)
    assert done is not None and done.full and done.records == 4 and done.entries == 4  # entry, total, counters, offset
    assert target.next_offset() == 1 and target.get("c|t1|x") == ["1", 0] and target.get("d|t1\x1fb") is None
    assert target.changelog_next() == 4  # before the unfinished commit, which is read again next time
    assert reader.catch_up(0, PartitionStore(tmp_path / "empty")) is None  # nothing logged there

    # the commit is produced whole (as a replay would), after the partial one: a catch-up applies both
    writer.produce(1, second.records, None)
    assert producer.flush(30) == 0
    done = reader.catch_up(1, target)
    assert done is not None and not done.full and done.records == 2 + 4
    assert target.next_offset() == 2 and target.get("c|t1|x") == ["2", 1] and target.changelog_next() == 10
    assert reader.catch_up(1, target) is None  # at the end: nothing to do
    # a store ahead of its changelog (the topic was recreated) is rebuilt from it, not trusted
    target.restore([], 50)
    done = reader.catch_up(1, target)
    assert done is not None and done.full and target.changelog_next() == 10 and target.next_offset() == 2
    reader.close()
    source.close()
    target.close()


def test_a_dead_writers_unfinished_commit_is_dropped_at_the_next_owners_start(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Owner A commits offset 0, then dies producing its commit of offsets 1-2 (the dedup entries of events b and
    c, no end). Owner B restores, replays with a smaller batch (offset 1 only) and commits it. A restore must
    hold b but not c: c was not processed by any committed batch, so B (or the next owner) must still rate it."""
    settings = kafka_settings.model_copy(update={"topic_prefix": f"cw{uuid.uuid4().hex[:8]}."})
    ensure_changelog(settings, 1)
    producer = make_producer(settings)
    writer = ChangelogWriter(producer, changelog_topic(settings))
    a = PartitionStore(tmp_path / "a")
    writer.start(0)
    first = a.prepare({"d|t1\x1fa": entry(0, DAY), "c|t1|x": ["1", 0]}, 1, Counter({"rated": 1}))
    writer.produce(0, first.records, None)
    a.apply(first)
    unfinished = a.prepare({"d|t1\x1fb": entry(1, DAY), "d|t1\x1fc": entry(2, DAY, 1), "c|t1|x": ["3", 2]}, 3,
                           Counter({"rated": 2}))  # fmt: skip
    assert unfinished.records[-1][0] == COMMIT_END
    writer.produce(0, unfinished.records[:1], None)  # the packed dedup record (b and c), then A died
    assert producer.flush(30) == 0
    a.close()

    reader = ChangelogReader(settings)
    b = PartitionStore(tmp_path / "b")
    reader.catch_up(0, b)
    assert b.next_offset() == 1 and b.get("d|t1\x1fc") is None  # the trailing partial commit is not applied
    writer.start(0)  # B takes the partition (runner._on_assign)
    replay = b.prepare({"d|t1\x1fb": entry(1, DAY, 5), "c|t1|x": ["2", 1]}, 2, Counter({"rated": 1}))
    writer.produce(0, replay.records, None)
    assert producer.flush(30) == 0
    b.close()

    c = PartitionStore(tmp_path / "c")  # a third owner, from nothing
    done = reader.catch_up(0, c)
    assert done is not None and done.full
    assert c.next_offset() == 2 and c.get("c|t1|x") == ["2", 1]
    assert c.get("d|t1\x1fb") == entry(1, DAY, 5)  # B's entry
    assert c.get("d|t1\x1fc") is None  # A's unfinished entry for c is void: c is rated when it is read
    assert c.counts == Counter({"rated": 2})
    reader.close()
    c.close()


@pytest.mark.kafka
def test_a_batch_of_long_ids_goes_through_kafka_and_comes_back(kafka_settings: Settings, tmp_path: Path) -> None:
    """5,000 ids of 200 characters, one partition, one batch: 1,145,000 bytes of packed entries (229 each, by
    hand: tests/processor/test_store.py), which one record could not carry (the producer refused it:
    MSG_SIZE_TOO_LARGE). Produced with the processor's producer settings and read back into an empty store."""
    settings = kafka_settings.model_copy(update={"topic_prefix": f"cl{uuid.uuid4().hex[:8]}."})
    ensure_changelog(settings, 1)
    source = PartitionStore(tmp_path / "source")
    producer = make_producer(settings)
    writer = ChangelogWriter(producer, changelog_topic(settings))
    ids = [f"d|t\x1f{i:05d}".ljust(204, "x") for i in range(5000)]
    batch = source.prepare({k: entry(i, DAY) for i, k in enumerate(ids)}, 5000, Counter({"rated": 5000}))
    assert writer.produce(0, batch.records, None) == 3 + 2  # three packed records, the counters, the offset
    assert producer.flush(30) == 0
    reader = ChangelogReader(settings)
    target = PartitionStore(tmp_path / "target")
    done = reader.catch_up(0, target)
    assert done is not None and done.entries == 5000 + 2
    assert target.next_offset() == 5000 and all(target.get(k) == entry(i, DAY) for i, k in enumerate(ids))
    reader.close()
    source.close()
    target.close()
