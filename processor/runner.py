"""The native processor: confluent-kafka in and out, RocksDB state, columnar batches.

Per batch: process the messages against a write buffer with the columnar path (processor/columnar.py,
proven equal to the per-message `step.process`; `METERSTREAM_PROCESSOR_ENGINE=legacy` runs
`step.process` on each message instead), produce the outputs (idempotent, acks=all,
to the input's partition number; rated records packed into few messages: JSON rows from the columnar
path, `schemas.rated.RowPacker`, JSON Lines from the legacy loop, `schemas.rated.pack`), and
once Kafka acknowledged all of them, log the state writes to the changelog (processor/changelog.py) and,
once acknowledged too, commit state + next offset atomically per partition. The waits
for the acknowledgements overlap the next batches (at most two batches are in flight while the next is
processed: batch N's changelog records are acknowledged while N+2 is processed, N+1's outputs too; it
reads their writes through its buffer, store.BatchState), and batches commit in order.
A crash before a state commit replays from the last committed batch with the same state, so the
outputs are repeated byte for byte and collapse in ClickHouse; nothing is skipped because the input
position lives in the same atomic write as the state.

Partitions come from the consumer group (cooperative-sticky: a rebalance moves only the partitions that
change owner). On assignment a partition's store is opened and brought up to its changelog (restored
from it when the local store is missing or behind: local RocksDB is a cache), and reading resumes at
the offset in its state. On revoke, the batches in flight are committed first; on a lost assignment
they are dropped uncommitted and replay on the new owner. Instances can be started and stopped at will
(docs/scale-out.md).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Container
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from meterstream.collector import BetweenBatches
from meterstream.health import Watchdog, exit_stalled, kafka_answers
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, processor_group
from meterstream.ops_http import serve_ops
from meterstream.processor import balances, metrics
from meterstream.processor.changelog import (
    ChangelogReader,
    ChangelogWriter,
    Restored,
    changelog_topic,
    ensure_changelog,
)
from meterstream.processor.checkpoint import Checkpointer, InFlight
from meterstream.processor.columnar import ColumnarStep, Columns, Message
from meterstream.processor.live_catalog import open_catalog_view
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import DAY_MS, BatchState, PartitionStore
from meterstream.rating.catalog import PlanSource, load_catalog
from meterstream.schemas.event import TimeWindow
from meterstream.schemas.rated import RowPacker, pack
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.processor")
# messages per polled batch at most: fewer instructions per event than 5,000 (-3.5%: per-batch work, the
# multi-gets, one WriteBatch); a batch's dedup entries are split into changelog records of at most
# CHANGELOG_RECORD_MAX (store.prepare). Under half the peak rate `consume` returns on its 0.1 s timeout with far
# fewer, so the batch size, and the latency it adds, grow only with the backlog (bench/e2e.py measures both).
BATCH_MAX = 20_000


def app_id(settings: Settings) -> str:
    return processor_group(settings)


def state_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "processor" / f"{app_id(settings)}-native"


def committed_counts(settings: Settings) -> Counter[str]:
    """Outcome counters committed with the state, summed over partitions (only while no worker runs)."""
    total: Counter[str] = Counter()
    for path in sorted(state_dir(settings).glob("p*")):
        store = PartitionStore(path)
        total += store.counts
        store.close()
    return total


def worker_partitions(partitions: int, worker: int, workers: int) -> list[int]:
    """Worker i of n takes the i-th of n contiguous, near-equal ranges of the partition numbers (kept for
    tools; processors take what the consumer group assigns them)."""
    return list(range(worker * partitions // workers, (worker + 1) * partitions // workers))


_error = KafkaMessage.error
_partition = KafkaMessage.partition
_offset = KafkaMessage.offset
_value = KafkaMessage.value
_timestamp = KafkaMessage.timestamp


def _kafka_message(m: KafkaMessage) -> Message:
    kind, ts = m.timestamp()
    return Message(m.partition(), m.offset(), m.key(), m.value(), ts if kind else None)


def kafka_columns(msgs: list[KafkaMessage], owned: Container[int]) -> dict[int, Columns]:
    """confluent-kafka's messages as the columnar path's columns per partition (`columnar.Columns`), in order, read
    with C-level passes (`map` over each method) and never copied into tuples; a message with an error is logged and
    left out, and so is one of a partition not in `owned` (fetched before its partition was revoked: its new owner
    reads it); the timestamp is None where Kafka has none. (A `Message` tuple per message first, then the columns:
    ~900 ns per message here with the passes the step and the balances made over them; this, ~400.)"""
    if any(map(_error, msgs)):  # rare: left out, one by one
        for m in msgs:
            if m.error():
                log.warning("consumer error: %s", m.error())
        msgs = [m for m in msgs if not m.error()]
    by_partition: dict[int, list[KafkaMessage]] = {}
    current, run = -1, []
    for p, m in zip(map(_partition, msgs), msgs, strict=True):  # a batch holds runs of one partition's messages
        if p != current:
            current, run = p, by_partition.setdefault(p, [])
        run.append(m)
    out: dict[int, Columns] = {}
    for p, ms in by_partition.items():
        if p in owned:
            stamps = [ts if kind else None for kind, ts in map(_timestamp, ms)]
            out[p] = Columns(ms, list(map(_offset, ms)), list(map(_value, ms)), stamps, _kafka_message)
    return out


class NativeProcessor:
    def __init__(self, settings: Settings, catalog: PlanSource, changelog: bool = True) -> None:
        self.settings = settings
        self.catalog = catalog
        self.topics = Topics.from_settings(settings)
        self.window_ms = settings.dedup_window_days * 86_400_000
        self.base = state_dir(settings)
        self.stores: dict[int, PartitionStore] = {}
        self.purged_day = -1
        self.status = metrics.ProcessorStatus(settings.stall_seconds)
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": app_id(settings),
                "partition.assignment.strategy": "cooperative-sticky",
                # a dead instance's partitions move after this long without its heartbeat (librdkafka: 45 s);
                # 10 s lost the assignment while a killed broker's group coordinator moved (the chaos run)
                "session.timeout.ms": 15_000,
                # a rebalance reaches a member with its next heartbeat, and a cooperative move takes two
                # rebalances: at 3 s, a second instance joining left the moved partitions unowned ~3 s and the
                # first instance alone ~3 s before that (bench/e2e.py, session 10); 2 requests/s are nothing
                "heartbeat.interval.ms": 500,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # how long the broker holds a fetch when no event is there (one with events returns at once, so the
                # wait costs no latency): each empty fetch cost the local broker ~2.5 ms of CPU, 5% of a core per
                # idle instance at 50 ms, nothing measurable at 500
                "fetch.wait.max.ms": 500,
            }
        )
        self.producer = make_producer(settings, **{"linger.ms": 5})
        self.changelog_topic = changelog_topic(settings) if changelog else None
        writer = ChangelogWriter(self.producer, self.changelog_topic) if self.changelog_topic else None
        self.reader = ChangelogReader(settings, self.changelog_topic) if self.changelog_topic else None
        self.restored: list[Restored] = []  # what each assignment restored (tests, logs)
        self.checkpoint = Checkpointer(
            self.producer, self.consumer, self.topics.usage, self._committed_batch, changelog=writer
        )
        self.latest: dict[int, BatchState] = {}  # per partition, the last batch's buffer
        self._catch_up_logged = float("-inf")
        self.time_window = TimeWindow.of(settings.event_max_age_days, settings.event_max_future_minutes)
        # native: the columnar batch path; legacy: step.process per message (the specification)
        self.legacy = settings.processor_engine == "legacy"
        self.columnar = ColumnarStep(catalog, self.topics.usage, self.window_ms, self.time_window)
        self.columnar.pack = RowPacker  # JSON rows, one orjson.dumps per chunk of rows (schemas.rated)
        self.columnar.keep_rows = False  # only the packed messages are produced
        self.balances = balances.install(self)  # prepaid debit and provisioning (processor/balances.py)

    def subscribe(self) -> None:
        """Join the group (cooperative-sticky): partitions arrive and leave through the callbacks below."""
        topic = self.topics.usage
        meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
        self.columnar.partitions = len(meta.partitions)  # checks each customer's partition (ColumnarStep)
        if self.changelog_topic is not None:
            ensure_changelog(self.settings, len(meta.partitions))
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Open each new partition's store, bring it up to its changelog, and read on from the offset in
        its state (the group's offset only when the partition has none: OFFSET_INVALID asks for it)."""
        topic = self.topics.usage
        tps = []
        for tp in partitions:
            p = tp.partition
            store = self.stores[p] = self._open(p)
            if self.reader is not None:
                restored = self.reader.catch_up(p, store)
                if restored is not None:
                    self.restored.append(restored)
                    log.warning("partition %d: restored %d state entries (%d changelog records) in %.2fs%s",
                                p, restored.entries, restored.records, restored.seconds,
                                " (full)" if restored.full else "")  # fmt: skip
            if self.checkpoint.changelog is not None:  # before this instance's first commit of p (changelog.py)
                self.checkpoint.changelog.start(p)
            start = store.next_offset()
            tps.append(TopicPartition(topic, p, start) if start is not None else TopicPartition(topic, p))
            if start is not None:  # the group's offset may be behind the state (an instance killed between its
                self.checkpoint.group_offsets[p] = start  # state commit and the group's): the refresh commits it
            self.status.committed(p, start)  # lag is measured from the start
        consumer.incremental_assign(tps)
        log.warning("assigned partitions %s; now %s", sorted(tp.partition for tp in partitions), sorted(self.stores))
        self._publish_counts()
        self.purged_day = -1  # purge the new stores too (next loop)

    def _open(self, p: int, wait_s: float = 60.0) -> PartitionStore:
        """Partition p's local store. Instances sharing a home (one machine) open the same directory when a
        partition moves between them: if the previous owner still holds its lock (it lost the partition
        but has not noticed yet), wait for it."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return PartitionStore(self.base / f"p{p}")
            except Exception as exc:  # rocksdict raises a plain Exception: "IO error: While lock file: ..."
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                log.warning("partition %d: its local store is still locked (%s); waiting", p, exc)
                time.sleep(0.5)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Finish and commit what is in flight (all partitions: batches commit in order), then let go."""
        if self.failed:
            self.checkpoint.drop()
        else:
            self.checkpoint.commit_delivered(keep=0)
        self._release([tp.partition for tp in partitions])
        consumer.incremental_unassign(partitions)
        log.warning("revoked partitions %s; now %s", sorted(tp.partition for tp in partitions), sorted(self.stores))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """The group moved them already (this instance was too slow to answer): nothing in flight may
        commit, since another instance may be writing their state; the batches replay there."""
        dropped = self.checkpoint.drop()
        self._release([tp.partition for tp in partitions])
        for p, store in self.stores.items():  # partitions still held (librdkafka loses all at once): back
            self.latest.pop(p, None)
            start = store.next_offset()
            if start is not None:
                consumer.seek(TopicPartition(self.topics.usage, p, start))
        consumer.incremental_unassign(partitions)
        log.warning("lost partitions %s (%d batches in flight dropped)", sorted(tp.partition for tp in partitions),
                    dropped)  # fmt: skip

    def _release(self, partitions: list[int]) -> None:
        for p in partitions:
            store = self.stores.pop(p, None)
            if store is not None:
                store.close()
            self.latest.pop(p, None)
            self.checkpoint.group_offsets.pop(p, None)  # its new owner commits the group's offset now
            self.status.positions.pop(p, None)
            self.status.set_lag(p, 0)
        self._publish_counts()

    def purge(self) -> None:
        """Forget ids older than the dedup window (run at assignment and when the day changes). With a
        changelog, its tombstones are produced and acknowledged before the stores delete (nothing in
        flight then, so each store's changelog position stays exact)."""
        cutoff_day = (int(time.time() * 1000) - self.window_ms) // DAY_MS
        if cutoff_day == self.purged_day or not self.stores:
            return
        self.checkpoint.commit_delivered(keep=0)
        plans = {p: store.plan_purge(cutoff_day) for p, store in self.stores.items()}
        reached: dict[int, int] = {}
        if self.changelog_topic is not None and any(plan.records for plan in plans.values()):
            batch = InFlight(time.perf_counter(), 0)
            for p, plan in plans.items():
                batch.outstanding += self.checkpoint.changelog.produce(p, plan.records, batch.logged_one)
            self.producer.flush()
            if batch.errors or batch.outstanding:
                raise KafkaException(f"changelog tombstones not delivered: {batch.errors[:1]}")
            reached = batch.changelog_next
        for p, plan in plans.items():
            self.stores[p].apply(plan, reached.get(p))
            metrics.DEDUP_PURGED.inc(plan.forgotten)
        self.purged_day = cutoff_day

    def _publish_counts(self) -> None:
        total: Counter[str] = Counter()
        for store in self.stores.values():
            total += store.counts
        for outcome in Kind:
            metrics.COMMITTED.labels(outcome.value).set(total.get(outcome.value, 0))

    failed = False  # a batch failed: what is in flight must not commit when the partitions go

    def run(self, stop: threading.Event) -> None:
        self.subscribe()
        process_batch = self.process_legacy if self.legacy else self.process_batch
        collector = BetweenBatches()  # no automatic collection inside a batch (meterstream/collector.py)
        poll_catalog = getattr(self.catalog, "poll_updates", None)
        catch_up = getattr(self.catalog, "catch_up", None)
        try:
            while not stop.is_set():
                if poll_catalog is not None:
                    poll_catalog()  # entity changes: seen by the next batch (issue #14)
                if self.balances is not None and (tick := self.balances.tick(self)) is not None:
                    self.checkpoint.add(tick)  # wallet changes without usage (a top-up): processor/balances.py
                msgs = self.consumer.consume(num_messages=BATCH_MAX, timeout=0.1)  # BATCH_MAX or the timeout
                self._watch_lag()  # before processing: a batch that never finishes shows as a stall
                if msgs:
                    if catch_up is not None:
                        self._catch_up(catch_up)
                    self.checkpoint.add(process_batch(msgs))
                    if not collector.settled:  # the catalog, caches and modules are loaded: frozen with start-up's
                        collector.settle()
                # two batches may stay in flight: the newest one's outputs and the one before's changelog
                # records are acknowledged while the next batch is processed (processor/checkpoint.py)
                self.checkpoint.commit_delivered(keep=2)
                self.checkpoint.refresh_group_offsets(time.monotonic())
                self.purge()
                collector.tick()
            self.checkpoint.commit_delivered(keep=0)
        except BaseException:
            self.failed = True
            raise
        finally:
            collector.restore()
            try:
                self.consumer.close()  # leaves the group: the revoke callback commits or drops, then releases
            finally:
                self._release(list(self.stores))
                if self.reader is not None:
                    self.reader.close()
            if (close_catalog := getattr(self.catalog, "close", None)) is not None:
                close_catalog()

    def _catch_up(self, catch_up: Any) -> None:
        """Read the entities topic to its end before rating a batch: every entity change Kafka acknowledged
        before this batch's events were produced (the API answers a change only then: entities/relay.py
        `flush`) is applied to them, whatever order the two topics are read in (docs/entities-stream.md).
        If the topic cannot be read now, the batch is rated with what was read so far (logged)."""
        try:
            catch_up(2.0)
        except (TimeoutError, KafkaException) as exc:
            now = time.monotonic()
            if now - self._catch_up_logged >= 60:
                self._catch_up_logged = now
                log.warning("entities topic not read to its end before a batch (%s): rated with what was read", exc)

    def process_batch(self, msgs: list) -> InFlight:
        """The columnar path (processor/columnar.py): process and produce one batch; the checkpoint
        commits it once Kafka has all its outputs."""
        now_ms = int(time.time() * 1000)
        batch = InFlight(time.perf_counter(), len(msgs))
        columns = kafka_columns(msgs, self.stores)
        states = batch.states
        for p in columns:
            states[p] = self.latest[p] = BatchState(self.stores[p], self.latest.get(p))
        out = self.columnar.run_columns(states, columns, now_ms)
        produce, dumps = self.checkpoint.produce, orjson.dumps
        dead_topic, rated_topic = self.topics.dead_letters, self.topics.rated
        for p, key, dl in out.dead_letters:
            metrics.DEAD_LETTERS.labels(dl["stage"], dl["field"]).inc()
            produce(dead_topic, key, dumps(dl), p, batch)
        for p, values in out.messages.items():  # the rated rows, packed by the step (ColumnarStep.pack)
            for value in values:
                produce(rated_topic, None, value, p, batch)
        for topic, key, value in out.balances:  # balances, provisioning, notifications (keyed by customer)
            produce(topic, key, value, -1, batch)
        batch.last, batch.outcomes = out.last, out.outcomes
        self._count(batch)
        batch.busy_s = time.perf_counter() - batch.started
        return batch

    def _count(self, batch: InFlight) -> None:
        for kind in Kind:  # per batch, not per message
            if count := sum(c[kind.value] for c in batch.outcomes.values()):
                metrics.OUTCOMES.labels(kind.value).inc(count)

    def process_legacy(self, msgs: list) -> InFlight:
        """The per-message loop (`step.process` on each message), kept to measure the columnar path
        against (`METERSTREAM_PROCESSOR_ENGINE=legacy`); same outputs, same state."""
        now_ms = int(time.time() * 1000)
        time_window = self.time_window
        batch = InFlight(time.perf_counter(), len(msgs))
        buffers = batch.states
        kinds: dict[int, list[Kind]] = {}  # per input partition, one per message (counted once, at the end)
        rated_lines: dict[int, list[bytes]] = {}  # per input partition, packed into few messages (schemas.rated)
        last = batch.last
        usage_topic, rated_topic, dead_topic = self.topics.usage, self.topics.rated, self.topics.dead_letters
        catalog, window_ms, dumps = self.catalog, self.window_ms, orjson.dumps
        produce = self.checkpoint.produce
        current = -1
        for m in msgs:
            if m.error():
                log.warning("consumer error: %s", m.error())
                continue
            p = m.partition()
            if p not in self.stores:  # fetched before its partition was revoked: its new owner reads it
                continue
            if p != current:
                current = p
                state = buffers.get(p)
                if state is None:
                    state = buffers[p] = self.latest[p] = BatchState(self.stores[p], self.latest.get(p))
                    kinds[p], rated_lines[p] = [], []
                add_kind, add_line = kinds[p].append, rated_lines[p].append
            offset, key = m.offset(), m.key()
            kind, ts = m.timestamp()
            pos = Position(usage_topic, p, offset, key, ts if kind else None)
            out = process(catalog, state, m.value(), pos, now_ms, window_ms, time_window=time_window)
            if out.rated is not None:
                add_line(dumps(out.rated))
            elif out.dead_letter is not None:
                dl = out.dead_letter
                metrics.DEAD_LETTERS.labels(dl["stage"], dl["field"]).inc()
                produce(dead_topic, key, dumps(dl), p, batch)
            add_kind(out.kind)
            last[p] = offset
        for p, lines in rated_lines.items():
            for value in pack(lines):
                produce(rated_topic, None, value, p, batch)
        if self.balances is not None:  # prepaid debit of the rated lines (processor/balances.py)
            for topic, key, value in self.balances.after_lines(buffers, rated_lines, now_ms):
                produce(topic, key, value, -1, batch)
        batch.outcomes = {p: Counter({k.value: n for k in Kind if (n := ks.count(k))}) for p, ks in kinds.items()}
        self._count(batch)
        batch.busy_s = time.perf_counter() - batch.started
        return batch

    def _committed_batch(self, batch: InFlight) -> None:
        """After a batch's state is durable (checkpoint step 5): status, counters, lag."""
        self.status.processed(batch.size)
        self._publish_counts()
        for p, offset in batch.last.items():
            self.status.committed(p, offset + 1)
        self._watch_lag()

    def _watch_lag(self) -> None:
        """Per partition: watermarks as last seen by the consumer vs the committed position (health)."""
        for p in self.stores:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topics.usage, p), cached=True)
            self.status.watermarks(p, low, high)


def run_native(settings: Settings, worker: int = 0, workers: int = 1) -> None:
    """Run until SIGTERM/SIGINT; the batch in hand is finished and committed first.

    Partitions come from the consumer group; `worker` only picks this instance's ops port
    (`processor_metrics_port + worker`) and `workers` is ignored (kept for one release)."""
    # live entities (the compacted `entities` topic) first, the catalog file as fallback
    view = open_catalog_view(settings, load_catalog(settings.catalog))
    processor = NativeProcessor(settings, view)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_ops(
        settings.processor_metrics_port + worker,
        host=settings.ops_host,
        health=processor.status.health,
        setting="METERSTREAM_PROCESSOR_METRICS_PORT",
    )
    # stalled with work waiting while the broker answers: exit with status 75, the supervisor starts it again
    Watchdog(processor.status.watch, settings.watchdog_seconds, reachable=lambda: kafka_answers(settings.bootstrap)
             ).run_in_thread(exit_stalled(log))  # fmt: skip
    processor.run(stop)


__all__ = ["InFlight", "NativeProcessor", "run_native"]
