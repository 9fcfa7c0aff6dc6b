"""ClickHouse sink: rated usage and dead letters from Kafka into ClickHouse, in JSONEachRow batches.

At-least-once with idempotent effect: offsets are committed only after ClickHouse acknowledged the
insert; a batch inserted again after a crash carries the same dedup token (its offset ranges) and the
tables are keyed by identity, so FINAL reads see every event exactly once. When ClickHouse is down the
sink pauses its partitions, keeps the batch in memory, retries with backoff and reports itself degraded.
The values go to ClickHouse as they came from Kafka (see `aggregation.rows`); when ClickHouse refuses a
block, the records it cannot parse are found, logged, counted and left out (they stay in Kafka).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from meterstream.aggregation.rows import DEAD_LETTER_FIELDS, RATED_FIELDS, RecordBatch, problem
from meterstream.ingest.topics import Topics
from meterstream.schemas.rated import record_lines
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.sink")

ROWS = Counter("meterstream_sink_rows_inserted_total", "Rows inserted into ClickHouse", ["table"])
BATCHES = Counter("meterstream_sink_batches_total", "Batches inserted into ClickHouse")
BATCH_ROWS = Histogram(
    "meterstream_sink_batch_rows",
    "Rows per inserted batch",
    buckets=(10, 100, 1_000, 10_000, 50_000, 100_000),
)
INSERT_SECONDS = Histogram("meterstream_sink_insert_seconds", "Time to insert one batch")
INSERT_FAILURES = Counter("meterstream_sink_insert_failures_total", "Failed insert attempts (retried)")
BAD_RECORDS = Counter("meterstream_sink_bad_records_total", "Records the sink could not decode (kept in Kafka)")
LAG = Gauge("meterstream_sink_consumer_lag", "Messages not yet inserted", ["topic", "partition"])
COMMIT_FAILURES = Counter("meterstream_sink_commit_failures_total", "Offset commits that failed after an insert")
DEGRADED = Gauge("meterstream_sink_degraded", "1 while ClickHouse inserts are failing")


@dataclass
class SinkState:
    """What /healthz reports."""

    degraded: bool = False
    last_error: str = ""
    last_flush: float = field(default_factory=time.time)
    rows: int = 0

    def health(self) -> tuple[bool, dict]:
        return not self.degraded, {
            "last_error": self.last_error,
            "rows_inserted": self.rows,
            "seconds_since_flush": round(time.time() - self.last_flush, 1),
        }


def insert_records(client: Client, db: str, batch: RecordBatch, token: str) -> None:
    """One JSONEachRow insert; the same `token` makes a repeated insert of the same block a no-op."""
    client.raw_insert(
        f"{db}.{batch.table}",
        batch.fields,
        batch.block(),
        # parallel parsing pays off for blocks of many MB only; on a small block its threads cost CPU.
        # optimize_on_insert=0: no collapsing of repeated keys inside the block at insert time (~15% of
        # the insert's CPU here); the tables are read with FINAL, which collapses them anyway
        settings={"insert_deduplication_token": token, "input_format_parallel_parsing": 0, "optimize_on_insert": 0},
        fmt="JSONEachRow",
    )


class ClickHouseSink:
    """Consume `rated-usage` and `dead-letters`; insert in batches; commit after the insert."""

    def __init__(self, settings: Settings, client: Client, group: str | None = None) -> None:
        self.settings = settings
        self.client = client
        self.topics = Topics.from_settings(settings)
        self.group = group or settings.topic("meterstream-sink")
        self.state = SinkState()
        self.rated = RecordBatch("rated_usage", RATED_FIELDS)
        self.dead = RecordBatch("dead_letters", DEAD_LETTER_FIELDS)
        self.ranges: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [first, last] offset
        self.started: dict[str, float] = {}  # per table, when its batch got its first record
        # how long a batch may wait: dead letters are rare and not latency-bound, so they are inserted
        # less often (every insert has a fixed cost of ~25 ms in embedded ClickHouse, see README)
        self.max_age = {"rated_usage": settings.sink_batch_seconds, "dead_letters": settings.sink_dead_letter_seconds}
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": self.group,
                "session.timeout.ms": 10_000,  # a killed sink's partitions move on within 10 s
                "heartbeat.interval.ms": 2_000,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.min.bytes": 65536,
                "fetch.wait.max.ms": 100,
                "max.poll.interval.ms": 600_000,
            }
        )

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe([self.topics.rated, self.topics.dead_letters], on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                for msg in self.consumer.consume(num_messages=10_000, timeout=0.1):  # 10,000 or the timeout
                    self._add(msg)
                now = time.monotonic()
                due = [
                    b
                    for b in (self.rated, self.dead)
                    if len(b)
                    and (
                        len(b) >= self.settings.sink_batch_rows or now - self.started[b.table] >= self.max_age[b.table]
                    )
                ]
                if due:
                    self.flush(stop, due)
            self.flush(stop)
        finally:
            self.consumer.close()

    def _add(self, msg: Message) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", msg.error())
            return
        batch = self.rated if msg.topic() == self.topics.rated else self.dead
        if not len(batch):
            self.started[batch.table] = time.monotonic()
        batch.add(msg.value())
        span = self.ranges.setdefault((msg.topic(), msg.partition()), [msg.offset(), msg.offset()])
        span[1] = msg.offset()

    def _token(self, table: str, ranges: dict[tuple[str, int], list[int]]) -> str:
        spans = ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(ranges.items()))
        return hashlib.sha256(f"{table}|{spans}".encode()).hexdigest()

    def _ranges(self, batch: RecordBatch) -> dict[tuple[str, int], list[int]]:
        """The offset ranges the batch's records came from (its topic's partitions)."""
        topic = self.topics.rated if batch is self.rated else self.topics.dead_letters
        return {tp: span for tp, span in self.ranges.items() if tp[0] == topic}

    def flush(self, stop: threading.Event | None = None, batches: list[RecordBatch] | None = None) -> None:
        """Insert the batches (default: both; retrying until they land or we are stopped), then commit
        their topics' offsets."""
        batches = [b for b in (batches or [self.rated, self.dead]) if len(b)]
        ranges = {tp: span for b in batches for tp, span in self._ranges(b).items()}
        if not ranges:
            return
        backoff = 0.25
        paused = False
        while True:
            try:
                fault = self.settings.sink_fault_file
                if fault is not None and fault.exists():
                    raise ConnectionError(f"ClickHouse unavailable (injected: {fault} exists)")
                for batch in batches:
                    with INSERT_SECONDS.time():
                        self._insert(batch)
                break
            except Exception as exc:
                if self._set_aside_bad_records(batches):
                    continue  # ClickHouse refused what it cannot parse: insert the rest now
                INSERT_FAILURES.inc()
                DEGRADED.set(1)
                self.state.degraded, self.state.last_error = True, str(exc)[:500]
                log.warning("insert failed (%s); retrying in %.1fs", str(exc)[:200], backoff)
                if not paused:
                    self.consumer.pause(self.consumer.assignment())
                    paused = True
                if stop is not None and stop.is_set() and backoff >= 8:
                    raise  # shutting down while ClickHouse is away: nothing committed, nothing lost
                time.sleep(backoff)
                self.consumer.poll(0)  # stay in the group while paused
                backoff = min(backoff * 2, 10.0)
        if paused:
            self.consumer.resume(self.consumer.assignment())
        DEGRADED.set(0)
        self.state.degraded = False
        rows = sum(len(b) for b in batches)
        BATCHES.inc()
        BATCH_ROWS.observe(rows)
        self.state.rows += rows
        self.state.last_flush = time.time()
        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in ranges.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # the rows are in: a later re-delivery is collapsed by the table key
            COMMIT_FAILURES.inc()
            log.warning("offset commit failed after a successful insert (%s); a replay will be idempotent", exc)
        self._update_lag(offsets)
        for batch in batches:
            batch.clear()
        for tp in ranges:
            del self.ranges[tp]

    def _insert(self, batch: RecordBatch) -> None:
        if len(batch):
            token = self._token(batch.table, self._ranges(batch))
            insert_records(self.client, self.settings.clickhouse_database, batch, token)
            ROWS.labels(batch.table).inc(len(batch))

    def _set_aside_bad_records(self, batches: list[RecordBatch]) -> bool:
        """After a refused insert: drop (log, count) the records ClickHouse cannot parse; True if any."""
        found = False
        for batch in batches:
            values = batch.values
            batch.clear()
            for value in values:
                for line in record_lines(value) if batch.packed else [value]:
                    why = problem(batch, line)
                    if why is None:
                        batch.add(line)
                    else:
                        found = True
                        BAD_RECORDS.inc()
                        log.error("cannot insert a %s record (%s); it stays in Kafka: %.300r", batch.table, why, line)
        return found

    def _update_lag(self, committed: list[TopicPartition]) -> None:
        for tp in committed:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                LAG.labels(tp.topic, str(tp.partition)).set(max(high - tp.offset, 0))
            except Exception:
                pass

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()  # hand partitions over with everything consumed so far inserted and committed
