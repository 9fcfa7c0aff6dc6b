"""The processor's state changelog: a compacted topic that makes the local RocksDB stores a cache.

One partition per input partition (changelog partition p holds input partition p's state). Every state
change a checkpoint commits is produced here first (processor/checkpoint.py: outputs acknowledged ->
changelog records -> acknowledged -> RocksDB), as `store.PartitionStore.prepare` shapes it: one record
per key (running totals, bundle use, balances, counters, the input offset: compaction keeps the newest),
and one packed record per commit and day for the dedup entries, keyed like the store's day index
(`t|<day>|*<offset>`), which the daily purge deletes with one tombstone. Each store keeps the changelog
offset it reached; a partition assigned to an instance whose store is missing or behind the changelog's
end is restored from it (`restore`) before any input is read.

Whole commits only: a commit's records end with its offset record (`store.COMMIT_END`). A writer that died
while producing a commit leaves its first records without that end; the batch never committed and replays
on the partition's next owner, whose commit may cover fewer input messages. So every owner, on taking a
partition, first writes a `WRITER_START` record to it: a reader drops the unfinished records before one, and
never mixes a dead writer's partial commit (dedup entries of events the replay has not reached yet) into the
next owner's first commit.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from meterstream.ingest.producer import produce_waiting
from meterstream.ingest.topics import replication
from meterstream.processor.store import COMMIT_END, PartitionStore
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.processor")

CHANGELOG = "meterstream-processor-changelog"
# compacted; a tombstone stays a day so a restore that began before the compaction still sees it
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "delete.retention.ms": "86400000", "segment.ms": "3600000"}
_RESTORE_CHUNK = 20_000  # records per RocksDB WriteBatch while restoring
WRITER_START = b"\x00writer"  # a new owner's first record on a partition: unfinished records before it are void


def changelog_topic(settings: Settings) -> str:
    return settings.topic(CHANGELOG)


def ensure_changelog(settings: Settings, partitions: int, timeout: float = 30.0) -> bool:
    """Create the compacted changelog with `partitions` partitions (the input topic's) when missing,
    replicated as `ingest.topics.replication` says; True when it created it. An existing changelog with
    fewer partitions than the input is an error (its state would be read for the wrong partitions)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    name = changelog_topic(settings)
    md = admin.list_topics(timeout=timeout)
    if name in md.topics and md.topics[name].error is None:
        have = len(md.topics[name].partitions)
        if have != partitions:
            raise RuntimeError(f"changelog {name} has {have} partitions, the input topic {partitions}")
        return False
    rf, config = replication(len(md.brokers))
    new = NewTopic(name, num_partitions=partitions, replication_factor=rf, config={**CHANGELOG_CONFIG, **config})
    for _, fut in admin.create_topics([new], operation_timeout=timeout).items():
        try:
            fut.result()
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            return False
    return True


@dataclass
class Restored:
    partition: int
    records: int  # changelog records read
    entries: int  # state entries written (a packed record holds many dedup entries)
    seconds: float
    full: bool  # from the changelog's start (no usable local store) rather than from the local position


class ChangelogReader:
    """Reads changelog partitions into stores (no group: plain assignment)."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or changelog_topic(settings)
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": f"{self.topic}.restore",  # never joins nor commits: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 52_428_800,
            }
        )

    def watermarks(self, partition: int, timeout: float = 120.0) -> tuple[int, int]:
        """The changelog partition's (low, high) offsets, asked again while the cluster cannot answer (a
        broker down: its leaderships move; NOT_LEADER_FOR_PARTITION, timeouts) for up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("changelog partition %d: watermarks not read (%s); asking again", partition, exc)
                time.sleep(1.0)

    def catch_up(self, partition: int, store: PartitionStore, timeout: float = 600.0) -> Restored | None:
        """Bring `store` to the changelog's end: nothing when it is there already; from its own position
        when it is behind; wiped and rebuilt from the start when it has no position, or one the changelog
        does not have (a changelog recreated, or truncated past it). Returns what it did (None: nothing)."""
        low, high = self.watermarks(partition)
        local = store.changelog_next()
        if local is not None and local == high:
            return None
        if local is None and high == 0:
            return None  # nothing logged yet: a fresh partition (or a store written before changelogs)
        full = local is None or local > high or local < low
        if full and (local is not None or store.next_offset() is not None):
            log.warning("partition %d: local store (changelog position %s) does not match the changelog "
                        "[%d, %d): rebuilt from it", partition, local, low, high)  # fmt: skip
            store.wipe()
        start = low if full else local
        started = time.perf_counter()
        records = entries = 0
        if start < high:
            records, entries = self._read(partition, start, high, store, timeout)
        else:
            store.restore([], high)
        return Restored(partition, records, entries, time.perf_counter() - started, full)

    def _read(self, partition: int, start: int, high: int, store: PartitionStore, timeout: float) -> tuple[int, int]:
        """Apply records from `start` to `high` in whole commits: a commit's records end with its offset
        record (`store.COMMIT_END`); a trailing commit without one (its writer died while producing it, so
        its batch never committed and will replay) is not applied, and the store's position stays before it."""
        consumer = self.consumer
        consumer.assign([TopicPartition(self.topic, partition, start)])
        deadline = time.monotonic() + timeout
        records = entries = 0
        chunk: list[tuple[bytes, bytes | None]] = []
        unit: list[tuple[bytes, bytes | None]] = []  # the commit being read
        position = start  # the next offset to read
        applied = start  # the offset after the last whole commit in `chunk`
        try:
            while position < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog partition {partition}: restore stopped at {position} of {high}")
                msgs = consumer.consume(num_messages=10_000, timeout=0.1)  # returns at the timeout when fewer
                if not msgs:  # the end may be a gap (a tombstone compacted away): ask where the fetch is
                    at = consumer.position([TopicPartition(self.topic, partition)])[0].offset
                    if at >= high:
                        position = high
                for m in msgs:
                    if (err := m.error()) is not None:
                        if err.retriable():  # e.g. a leader moving: the fetch goes on from where it is
                            log.warning("changelog partition %d: %s; reading on", partition, err)
                            continue
                        raise KafkaException(err)
                    offset = m.offset()
                    if offset >= high:
                        position = high
                        break
                    key = m.key()
                    position = offset + 1
                    if key == WRITER_START:  # a new owner: what its predecessor left unfinished never committed
                        if unit:
                            log.warning("changelog partition %d: %d records of an unfinished commit before offset "
                                        "%d dropped (its writer died)", partition, len(unit), offset)  # fmt: skip
                        unit = []
                        continue
                    unit.append((key, m.value()))
                    if key == COMMIT_END:
                        chunk.extend(unit)
                        unit = []
                        applied = position
                if len(chunk) >= _RESTORE_CHUNK:
                    entries += store.restore(chunk, applied)
                    records += len(chunk)
                    chunk = []
            if not unit:
                applied = high  # nothing partial at the end (a gap left by compaction counts as read)
            entries += store.restore(chunk, applied)
            records += len(chunk)
            if unit:
                log.warning("changelog partition %d: %d records of an unfinished commit at its end not applied",
                            partition, len(unit))  # fmt: skip
        finally:
            consumer.unassign()
        return records, entries

    def close(self) -> None:
        self.consumer.close()


def restored_from_changelog(settings: Settings, partitions: int, scratch: Path) -> Iterator[PartitionStore]:
    """Each partition's state as its changelog alone holds it: restored into an empty store under `scratch` and
    yielded open (closed after; `scratch` removed at the end). What any instance taking the partitions over would
    hold (tools and checks: `changelog_counts`, the chaos run's balance check)."""
    reader = ChangelogReader(settings)
    try:
        for p in range(partitions):
            store = PartitionStore(scratch / f"p{p}")
            try:
                reader.catch_up(p, store)
                yield store
            finally:
                store.close()
    finally:
        reader.close()
        shutil.rmtree(scratch, ignore_errors=True)


def changelog_counts(settings: Settings, partitions: int, scratch: Path) -> Counter[str]:
    """The outcome counters committed with the state, summed over partitions, read from the changelog alone."""
    total: Counter[str] = Counter()
    for store in restored_from_changelog(settings, partitions, scratch):
        total += store.counts
    return total


class ChangelogWriter:
    """Produces a partition's changelog records on the processor's producer, tracking the offsets reached."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def produce(self, partition: int, records: list[tuple[bytes, bytes | None]], on_delivery: Any) -> int:
        """Produce `records` to changelog partition `partition` in order; returns how many."""
        produce, topic = self.producer.produce, self.topic
        for key, value in records:  # ingest.producer.produce_waiting inlined: this runs once per changelog record
            while True:
                try:
                    produce(topic, value, key, partition, on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        return len(records)

    def start(self, partition: int) -> None:
        """Mark this writer's start on `partition` (call on taking it, before its first commit): readers drop
        any unfinished commit a previous owner left before this point. Ordered before the commits that follow
        by the idempotent producer; a failed delivery fails those commits too."""
        produce_waiting(self.producer, self.topic, value=b"1", key=WRITER_START, partition=partition,
                        on_delivery=_start_delivered)  # fmt: skip


def _start_delivered(err: Any, msg: Any) -> None:
    if err is not None:
        log.warning("changelog: a writer start mark not delivered (%s)", err)


__all__ = [
    "CHANGELOG", "WRITER_START", "ChangelogReader", "ChangelogWriter", "Restored", "changelog_counts",
    "changelog_topic", "ensure_changelog", "restored_from_changelog",
]  # fmt: skip
