"""ClickHouse sink: rated usage and dead letters from Kafka into ClickHouse, in batches: JSON messages
as one JSONEachRow block, JSON rows `rated-usage` messages (the columnar processor's) as one
JSONCompactEachRow block, Arrow ones (older topics) as one Arrow table.

At-least-once with idempotent effect: offsets are committed only after ClickHouse acknowledged the
insert; a batch inserted again after a crash carries the same dedup token (its offset ranges) and the
tables are keyed by identity, so FINAL reads see every event exactly once. When ClickHouse is down the
sink pauses its partitions, keeps the batch in memory, retries with backoff and reports itself degraded.

No record can stall the sink: when ClickHouse refuses a block, the records it refuses on their own are
found (`aggregation.refusals`, ClickHouse's own parser and CHECK constraints decide, e.g. a quantity too
big for Decimal(38, 12), bad JSON, a wrong type, a missing field, a negative quantity), written to the
`dead_letters` table with stage `sink` and ClickHouse's message as the reason, and the rest of the block
is inserted; the offsets are committed once, after both. Arrow blocks are searched the same way (slices of
the table, inserted as Arrow); a message that claims to be Arrow but cannot be read as rated usage is a
dead letter as a whole (its reason says why). Those dead letters go to the table only, not to
the dead-letters topic: they are rated records, not events, so `meterstream dlq replay` must not re-drive
them into the usage topic; read them with `SELECT ... FROM dead_letters FINAL WHERE stage = 'sink'`.

Larger blocks while a backlog waits: every insert is a part that ClickHouse's background merges rewrite
later, about a third of the sink's CPU with a part every 0.3 s at 50,000 rows/s. While many events wait for
the stream processor (its group's lag on the usage topic, `Backlog`) or rows for the sink itself (its own
lag), the rows of a backlog are old already, so the sink holds a batch up to `sink_backlog_batch_seconds` /
`sink_backlog_batch_rows` instead of `sink_batch_seconds` / `sink_batch_rows`; caught up, it flushes as
often as before, so the latency of a stream that keeps up is unchanged.

Stopping is bounded: on SIGTERM (or a revoke) while inserts fail, the sink gives up the batch in hand
without committing its offsets (the next sink reads them again; the dedup token and the table keys make
a repeat harmless) instead of retrying forever.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from meterstream.aggregation.client import insert_arrow
from meterstream.aggregation.refusals import NullProbe, is_data_error, refused_lines
from meterstream.aggregation.rows import (
    DEAD_LETTER_FIELDS,
    INSERT_SETTINGS,
    RATED_FIELDS,
    SINK_DEAD_LETTER_FIELDS,
    Position,
    RecordBatch,
    Unreadable,
    arrow_line,
    refusal_row,
    store_field,
    store_reason,
)
from meterstream.health import Clock, StallWatch
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.topics import Topics, processor_group
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
BAD_RECORDS = Counter(
    "meterstream_sink_bad_records_total", "Records ClickHouse refused (dead-lettered in dead_letters, stage sink)"
)
LAG = Gauge("meterstream_sink_consumer_lag", "Messages not yet inserted and committed", ["topic", "partition"])
COMMIT_FAILURES = Counter("meterstream_sink_commit_failures_total", "Offset commits that failed after an insert")
DEGRADED = Gauge("meterstream_sink_degraded", "1 while ClickHouse inserts are failing")
GIVEN_UP = Counter(
    "meterstream_sink_batches_given_up_total", "Batches left uncommitted on a stop or revoke while inserts failed"
)

BACKLOG = Gauge(
    "meterstream_sink_backlog_events",
    "Events waiting for the processor, as the sink last read them (larger blocks from sink_backlog_rows)",
)

REVOKE_FLUSH_SECONDS = 8.0  # how long a revoke (a rebalance, or the close at a stop) may retry a failing insert


class StoreUnavailable(ConnectionError):
    """ClickHouse cannot be reached (or the fault file says so): retry later, nothing is refused."""


class SinkState:
    """What /healthz reports: red while inserts fail, or when work waits and no commit happened for
    `stall_seconds` (a sink stuck in an insert, or not consuming, with lag > 0)."""

    def __init__(self, stall_seconds: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.degraded = False
        self.last_error = ""
        self.last_flush = time.time()
        self.rows = 0
        self.refused = 0
        self.watch = StallWatch(stall_seconds, clock)

    def health(self) -> tuple[bool, dict]:
        stalled = self.watch.stalled()
        return not (self.degraded or stalled), {
            "inserts_failing": self.degraded,
            "last_error": self.last_error,
            "rows_inserted": self.rows,
            "records_refused": self.refused,
            "lag": self.watch.behind(),
            "seconds_stalled": round(self.watch.idle_seconds(), 1),
            "seconds_since_flush": round(time.time() - self.last_flush, 1),
        }


class Backlog:
    """Events waiting for the stream processor: the usage topic's end offsets minus the processor group's
    committed offsets (`ingest.lag.LagProbe`: ListOffsets and an OffsetFetch; it never joins the group), read
    every `every` seconds in a daemon thread of its own, so a slow or absent broker never holds the sink's loop.
    `events()` is the last answer, or 0 when none is younger than `stale` seconds (no answer is no reason to
    hold rows back)."""

    def __init__(self, settings: Settings, every: float = 0.5, stale: float = 3.0, clock: Clock = time.monotonic):
        self.settings, self.every, self.stale, self.clock = settings, every, stale, clock
        self.group = processor_group(settings)  # the processor's group (both engines use it)
        self.topics = [Topics.from_settings(settings).usage]
        self.last: tuple[float, int] | None = None  # (when, events)
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def events(self) -> int:
        last = self.last
        return last[1] if last is not None and self.clock() - last[0] <= self.stale else 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="sink-backlog", daemon=True)
        self.thread.start()

    def stop(self, wait: float = 2.0) -> None:
        """Ask the thread to close its probe and end; wait at most `wait` s (it may be in a call that waits for an
        absent broker: a stop stays bounded, the daemon thread ends with the process)."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(wait)

    def _run(self) -> None:
        probe = None
        try:
            probe = LagProbe(self.settings)
            while not self.done.is_set():
                try:
                    lag = probe.group_lag(self.group, self.topics)
                except Exception as exc:  # e.g. a broker restarting: ask again (an old answer counts as none)
                    log.debug("processor lag not known (%s)", exc)
                    lag = None
                if lag is not None:
                    self.last = (self.clock(), lag)
                    BACKLOG.set(lag)
                self.done.wait(self.every)
        except Exception as exc:  # the probe cannot be made: never the sink's end, it flushes as if caught up
            log.warning("the processor's backlog cannot be read (%s); flushing as if caught up", exc)
        finally:
            if probe is not None:
                probe.close()


def _names(partitions: list[TopicPartition]) -> str:
    """Partitions for a log line: `topic[0, 1]`, per topic."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items())) or "nothing"


def batch_limits(settings: Settings, waiting: int) -> tuple[int, float]:
    """(rows, seconds) after which the rated batch is inserted, with `waiting` events or rows in a backlog."""
    if settings.sink_backlog_rows and waiting >= settings.sink_backlog_rows:
        return settings.sink_backlog_batch_rows, settings.sink_backlog_batch_seconds
    return settings.sink_batch_rows, settings.sink_batch_seconds


def insert_records(client: Client, db: str, batch: RecordBatch, token: str) -> None:
    """The batch's JSON values as one JSONEachRow insert, its JSON rows as one JSONCompactEachRow insert and its
    Arrow records as one Arrow insert; the same `token` makes a repeated insert of the same batch a no-op (each
    insert has its own token, derived from it: two inserts with one token would make ClickHouse drop the second
    as a repeat)."""
    # parallel parsing pays off for blocks of many MB only; on a small block its threads cost CPU.
    # optimize_on_insert=0: no collapsing of repeated keys inside the block at insert time (~15% of
    # the insert's CPU here); the tables are read with FINAL, which collapses them anyway.
    # INSERT_SETTINGS: strict reading (see aggregation.rows; a null is refused in Arrow too).
    settings = {"input_format_parallel_parsing": 0, "optimize_on_insert": 0, **INSERT_SETTINGS[batch.table]}
    if batch.values:
        client.raw_insert(
            f"{db}.{batch.table}",
            batch.fields,
            batch.block(),
            settings={"insert_deduplication_token": token, **settings},
            fmt="JSONEachRow",
        )
    if batch.rows_values:
        client.raw_insert(
            f"{db}.{batch.table}",
            batch.fields,
            batch.rows_block(),
            settings={"insert_deduplication_token": f"{token}:rows", **settings},
            fmt="JSONCompactEachRow",
        )
    if batch.arrow:  # as client.insert_arrow, without its copies on the embedded store (aggregation/client.py)
        insert_arrow(
            client,
            f"{db}.{batch.table}",
            batch.arrow_table(),
            {"insert_deduplication_token": f"{token}:arrow", **settings},
        )


class ClickHouseSink:
    """Consume `rated-usage` and `dead-letters`; insert in batches; commit after the insert."""

    def __init__(self, settings: Settings, client: Client, group: str | None = None) -> None:
        self.settings = settings
        self.client = client
        self.topics = Topics.from_settings(settings)
        self.group = group or settings.topic("meterstream-sink")
        self.state = SinkState(settings.stall_seconds)
        self.stop = threading.Event()  # `run` uses the caller's
        self.rated = RecordBatch("rated_usage", RATED_FIELDS)
        self.dead = RecordBatch("dead_letters", DEAD_LETTER_FIELDS)
        self.refused = RecordBatch("dead_letters", SINK_DEAD_LETTER_FIELDS)  # what ClickHouse refused, as rows
        self.ranges: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [first, last] offset
        self.started: dict[str, float] = {}  # per table, when its batch got its first record
        self.assigned: set[tuple[str, int]] = set()
        self.committed: dict[tuple[str, int], int | None] = {}  # the group's next offsets (None: none yet)
        self.uncommitted: list[TopicPartition] = []  # inserted, but the commit failed: retried from the loop
        self.commit_retry_at = 0.0
        self.lookup_after = 0.0  # when to ask the broker for committed offsets not known yet
        # how long a batch may wait: dead letters are rare and not latency-bound, so they are inserted
        # less often (every insert has a fixed cost of ~25 ms in embedded ClickHouse, see README)
        self.max_age = {"rated_usage": settings.sink_batch_seconds, "dead_letters": settings.sink_dead_letter_seconds}
        self.backlog = Backlog(settings)  # events waiting for the processor: larger blocks meanwhile
        self.consumed: dict[tuple[str, int], int] = {}  # the rated topic's next offset to read, per partition
        self.rows_per_message = 1.0  # of the last rated batch: the sink's own lag in rows, roughly
        self.behind = False  # inserting larger blocks (a backlog waits)
        self.last_message = time.monotonic()  # when a poll last brought messages
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
        self.stop = stop
        self.consumer.subscribe(
            [self.topics.rated, self.topics.dead_letters], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        if self.settings.sink_backlog_rows:
            self.backlog.start()
        try:
            while not stop.is_set():
                msgs = self.consumer.consume(num_messages=10_000, timeout=0.1)  # 10,000 or the timeout
                for msg in msgs:
                    self._add(msg)
                self._watch_lag()
                now = time.monotonic()
                if msgs:
                    self.last_message = now
                # nothing came for as long as a rated batch may wait: the stream paused or ended
                quiet = now - self.last_message >= self.settings.sink_batch_seconds
                due = [b for b in (self.rated, self.dead) if len(b) and self._due(b, now, quiet)]
                if due:
                    self.flush(due)
                elif self.uncommitted and now >= self.commit_retry_at:
                    self._commit_offsets([])
            self.flush()  # one attempt: when it fails, the offsets stay uncommitted and are read again
        finally:
            self.backlog.stop()
            self.consumer.close()

    def _due(self, batch: RecordBatch, now: float, quiet: bool = False) -> bool:
        """Is the batch to be inserted now: big or old enough (rated usage: larger and older in a backlog)?

        Dead letters wait for their own clock (`sink_dead_letter_seconds`) while rated usage keeps coming, so that
        they do not add an insert to every rated one; once the stream is `quiet` (nothing came for
        `sink_batch_seconds`) and no rated row waits, they are due: the sink has nothing else to do, and the dead
        letters of a burst's last events are visible about as soon as its rated rows."""
        if batch is self.rated:
            waiting = self.backlog.events() + self._own_waiting()
            rows, seconds = batch_limits(self.settings, waiting)
            behind = seconds != self.settings.sink_batch_seconds or rows != self.settings.sink_batch_rows
            if behind != self.behind:
                self.behind = behind
                log.info(
                    "%d events or rows wait: %s", waiting, "larger blocks" if behind else "caught up, short flushes"
                )
        else:
            if quiet and not len(self.rated):
                return True
            rows, seconds = self.settings.sink_batch_rows, self.max_age[batch.table]
        return len(batch) >= rows or now - self.started[batch.table] >= seconds

    def _own_waiting(self) -> int:
        """Rated rows in the topic after those read (the watermarks as last fetched), estimated with the rows per
        message of the last batch."""
        waiting = 0
        for t, p in self.assigned:
            if t == self.topics.rated and (t, p) in self.consumed:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                waiting += max(high - self.consumed[(t, p)], 0)
        return int(waiting * self.rows_per_message)

    def _add(self, msg: Message) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", msg.error())
            return
        batch = self.rated if msg.topic() == self.topics.rated else self.dead
        if not len(batch):
            self.started[batch.table] = time.monotonic()
        value, pos = msg.value(), Position(msg.topic(), msg.partition(), msg.offset(), msg.key())
        if value is None:  # a tombstone: a dead letter (stage sink) at the insert, its offset committed with the batch
            batch.unreadable.append(Unreadable(b"", pos, f"tombstone (null value) on {msg.topic()}: nothing to store"))
            batch.rows += 1
        else:
            batch.add(value, pos)
        span = self.ranges.setdefault((msg.topic(), msg.partition()), [msg.offset(), msg.offset()])
        span[1] = msg.offset()
        if batch is self.rated:
            self.consumed[(msg.topic(), msg.partition())] = msg.offset() + 1

    def _token(self, table: str, ranges: dict[tuple[str, int], list[int]]) -> str:
        spans = ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(ranges.items()))
        return hashlib.sha256(f"{table}|{spans}".encode()).hexdigest()

    def _ranges(self, batch: RecordBatch) -> dict[tuple[str, int], list[int]]:
        """The offset ranges the batch's records came from (its topic's partitions)."""
        topic = self.topics.rated if batch is self.rated else self.topics.dead_letters
        return {tp: span for tp, span in self.ranges.items() if tp[0] == topic}

    def flush(self, batches: list[RecordBatch] | None = None, deadline: float | None = None) -> bool:
        """Insert the batches (default: both) and what ClickHouse refused of them (as dead letters), then
        commit their topics' offsets once. While inserts fail: retry with backoff until they land, or
        until the sink is stopped or `deadline` (monotonic) passes; then give the batches up uncommitted
        and return False (their offsets are read again by the next owner of the partitions)."""
        batches = [b for b in (batches or [self.rated, self.dead]) if len(b)]
        if not any(self._ranges(b) for b in batches):
            return True
        backoff = 0.25
        paused = False
        try:
            while True:
                try:
                    fault = self.settings.sink_fault_file
                    if fault is not None and fault.exists():
                        raise StoreUnavailable(f"ClickHouse unavailable (injected: {fault} exists)")
                    for batch in batches:
                        with INSERT_SECONDS.time():
                            self._insert(batch)
                    self._insert_refused(batches)
                    break
                except Exception as exc:
                    if is_data_error(exc) and self._refusals_found(batches, exc):
                        continue  # ClickHouse refused records: they are dead letters now; insert the rest
                    INSERT_FAILURES.inc()
                    DEGRADED.set(1)
                    self.state.degraded, self.state.last_error = True, str(exc)[:500]
                    if self.stop.is_set() or (deadline is not None and time.monotonic() + backoff > deadline):
                        self._give_up(batches, exc)
                        return False
                    log.warning("insert failed (%s); retrying in %.1fs", str(exc)[:200], backoff)
                    if not paused:
                        self.consumer.pause(list(self.consumer.assignment()))
                        paused = True
                    self.stop.wait(backoff)  # a SIGTERM ends the wait at once
                    self._keep_alive()
                    backoff = min(backoff * 2, 10.0)
        finally:
            if paused and not self.stop.is_set():
                try:
                    self.consumer.resume(list(self.consumer.assignment()))
                except KafkaException as exc:
                    log.warning("resume failed: %s", exc)
        DEGRADED.set(0)
        self.state.degraded = False
        rows = sum(len(b) for b in batches)
        BATCHES.inc()
        BATCH_ROWS.observe(rows)
        self.state.rows += rows
        self.state.last_flush = time.time()
        ranges = {tp: span for b in batches for tp, span in self._ranges(b).items()}
        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in ranges.items()]
        if not offsets:  # a revoke during the retries gave the batches up (their new owner reads them)
            return True
        if self.rated in batches:
            messages = sum(b - a + 1 for (t, _), (a, b) in ranges.items() if t == self.topics.rated)
            self.rows_per_message = len(self.rated) / messages if messages else self.rows_per_message
        self._commit_offsets(offsets)
        self._clear(batches, ranges)
        self._watch_lag()
        return True

    COMMIT_RETRY_S = 2.0

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        """Commit the inserted batches' offsets. A failed commit (e.g. the coordinator moving in a broker
        restart) is kept and retried every COMMIT_RETRY_S from the loop, merged with later ones: the rows
        are in, but without a commit the group stays behind when no new record arrives, and tools that
        wait for the group (lag probes, the demo, the chaos run) would wait for ever."""
        pending = {(tp.topic, tp.partition): tp.offset for tp in self.uncommitted}
        pending.update({(tp.topic, tp.partition): tp.offset for tp in offsets})
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.uncommitted = []
            for tp in offsets:
                self.committed[(tp.topic, tp.partition)] = tp.offset
            self.state.watch.progressed()
        except KafkaException as exc:  # the rows are in: a later re-delivery is collapsed by the table key
            COMMIT_FAILURES.inc()
            self.uncommitted = offsets
            self.commit_retry_at = time.monotonic() + self.COMMIT_RETRY_S
            log.warning("offset commit failed after a successful insert (%s); retrying", exc)

    def _clear(self, batches: list[RecordBatch], ranges: dict[tuple[str, int], list[int]]) -> None:
        for batch in batches:
            batch.clear()
        self.refused.clear()
        for tp in ranges:
            self.ranges.pop(tp, None)

    def _give_up(self, batches: list[RecordBatch], exc: BaseException) -> None:
        """Stopping (or handing partitions over) while inserts fail: drop the batches, commit nothing."""
        GIVEN_UP.inc()
        held = sum(len(b) for b in batches)
        log.warning(
            "insert failed (%s) while %s: leaving %d records uncommitted; they will be read again",
            str(exc)[:200],
            "stopping" if self.stop.is_set() else "handing partitions over",
            held,
        )
        self._clear(batches, {tp: span for b in batches for tp, span in self._ranges(b).items()})

    def _keep_alive(self) -> None:
        """Stay in the group while paused; a message delivered anyway is kept, not skipped."""
        msg = self.consumer.poll(0)
        if msg is not None:
            self._add(msg)

    def _insert(self, batch: RecordBatch) -> None:
        if batch.unreadable:
            self._set_aside_unreadable(batch)
        if len(batch):
            token = self._token(batch.table, self._ranges(batch))
            insert_records(self.client, self.settings.clickhouse_database, batch, token)
            ROWS.labels(batch.table).inc(len(batch))

    def _insert_refused(self, batches: list[RecordBatch]) -> None:
        """The refused records' dead letters, before the offsets of their messages are committed."""
        if len(self.refused):
            ranges = {tp: span for b in batches for tp, span in self._ranges(b).items()}
            insert_records(self.client, self.settings.clickhouse_database, self.refused, self._token("refused", ranges))
            ROWS.labels("dead_letters").inc(len(self.refused))

    def _refusals_found(self, batches: list[RecordBatch], exc: BaseException) -> bool:
        try:
            return self._set_aside_refused(batches, exc)
        except Exception as err:  # the search itself failed (ClickHouse went away meanwhile): retry later
            log.warning("could not look for the records ClickHouse refuses (%s)", str(err)[:300])
            return False

    def _set_aside_refused(self, batches: list[RecordBatch], exc: BaseException) -> bool:
        """After ClickHouse refused a block: move every record it refuses on its own out of the batches and
        into `self.refused` (dead letters with its reason); True if any was found."""
        log.warning("ClickHouse refused a block (%s); looking for the records it cannot store", str(exc)[:300])
        found = False
        db = self.settings.clickhouse_database
        for batch in batches:
            lines, where = batch.records()
            row_lines, row_where = batch.rows_records()
            table, arrow_where = batch.arrow_rows() if batch.arrow else (None, [])
            with NullProbe(self.client, db, batch.table, batch.fields, INSERT_SETTINGS[batch.table]) as probe:
                bad = refused_lines(probe, lines)
                bad_json_rows = refused_lines(probe, row_lines)
                bad_rows = refused_lines(probe, table) if table is not None else {}
            if not bad and not bad_json_rows and not bad_rows:
                continue
            found = True
            unreadable = batch.unreadable
            batch.clear()
            batch.unreadable, batch.rows = unreadable, len(unreadable)
            for i, (line, pos) in enumerate(zip(lines, where, strict=True)):
                error = bad.get(i)
                if error is None:
                    batch.add(line, pos)
                    continue
                self._refuse(batch, pos, line, store_reason(error), store_field(error, batch.fields))
            batch.keep_rows(row_lines, row_where, bad_json_rows)
            for i, error in sorted(bad_json_rows.items()):
                self._refuse(batch, row_where[i], row_lines[i], store_reason(error), store_field(error, batch.fields))
            if table is not None:
                batch.keep_arrow(table, arrow_where, bad_rows)
                for i, error in sorted(bad_rows.items()):
                    line = arrow_line(table, i)
                    self._refuse(batch, arrow_where[i], line, store_reason(error), store_field(error, batch.fields))
        return found

    def _set_aside_unreadable(self, batch: RecordBatch) -> None:
        """Messages that claim to be Arrow but cannot be read as rated usage: dead letters as a whole."""
        for value, pos, reason in batch.take_unreadable():
            self._refuse(batch, pos, value, reason, "")

    def _refuse(self, batch: RecordBatch, pos: Position | None, line: bytes, reason: str, field: str) -> None:
        self.refused.add(refusal_row(pos, line, batch.table, reason, field))
        self.state.refused += 1
        BAD_RECORDS.inc()
        log.error(
            "a %s record at %s cannot be stored (%s); it goes to dead_letters (stage sink): %.300r",
            batch.table,
            f"{pos.topic}:{pos.partition}:{pos.offset}#{pos.record}" if pos else "?",
            reason,
            line,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.add((tp.topic, tp.partition))
        log.warning("assigned %s; now %d partitions", _names(partitions), len(self.assigned))  # as the processor logs

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # hand partitions over with everything consumed so far inserted and committed; if inserts fail,
        # give the batches up uncommitted within a bound (the new owner reads them again)
        self.flush(deadline=time.monotonic() + REVOKE_FLUSH_SECONDS)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.uncommitted = [tp for tp in self.uncommitted if (tp.topic, tp.partition) not in gone]
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            self.committed.pop(key, None)
            self.consumed.pop(key, None)
            self.state.watch.forget(key)
        log.warning("revoked %s; now %d partitions", _names(partitions), len(self.assigned))

    def _watch_lag(self) -> None:
        """Lag of the group on our partitions: watermarks (as last fetched) minus committed offsets."""
        unknown = [TopicPartition(t, p) for (t, p) in self.assigned if (t, p) not in self.committed]
        if unknown and time.monotonic() >= self.lookup_after:
            try:
                for tp in self.consumer.committed(unknown, timeout=5):
                    self.committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
            except KafkaException as exc:  # e.g. the group coordinator is still loading: ask again later
                log.warning("cannot read the group's committed offsets yet (%s)", exc)
                self.lookup_after = time.monotonic() + 5.0
        for t, p in list(self.assigned):
            if (t, p) not in self.committed:
                continue  # its committed offset is not known yet
            low, high = self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            if high < 0:
                continue  # not fetched yet
            start = self.committed[(t, p)]
            lag = max(high - (start if start is not None else max(low, 0)), 0)
            LAG.labels(t, str(p)).set(lag)
            self.state.watch.set_lag((t, p), lag)
