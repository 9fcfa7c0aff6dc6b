"""Larger blocks while a backlog waits (aggregation/sink.py: `batch_limits`, `Backlog`, `ClickHouseSink._due`): the
rated batch is held up to sink_backlog_batch_seconds / _rows while many events wait for the processor or rows for
the sink, and flushed as before (sink_batch_seconds / _rows) once caught up. The processor group's lag is read from
a real broker."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from sink_helpers import RECORD, CountingConsumer, new_database

from meterstream.aggregation.rows import RATED_FIELDS, RecordBatch
from meterstream.aggregation.sink import Backlog, ClickHouseSink, batch_limits
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.topics import ensure_topics
from meterstream.processor.runner import app_id
from meterstream.schemas.settings import Settings

LIMITS = {
    "sink_batch_rows": 10,
    "sink_batch_seconds": 0.3,
    "sink_backlog_rows": 100,
    "sink_backlog_batch_rows": 1000,
    "sink_backlog_batch_seconds": 2.0,
}


def test_limits_are_the_short_ones_below_the_backlog_threshold_and_the_long_ones_from_it() -> None:
    settings = Settings(**LIMITS)
    assert batch_limits(settings, 0) == (10, 0.3)
    assert batch_limits(settings, 99) == (10, 0.3)
    assert batch_limits(settings, 100) == (1000, 2.0)
    assert batch_limits(settings, 5_000_000) == (1000, 2.0)
    never = Settings(**{**LIMITS, "sink_backlog_rows": 0})  # 0: never
    assert batch_limits(never, 5_000_000) == (10, 0.3)


class Waiting:
    """A backlog that says how many events wait."""

    def __init__(self, events: int) -> None:
        self.n = events

    def events(self) -> int:
        return self.n


class Watermarks:
    """The rated topic's high watermarks as the sink's consumer last fetched them."""

    def __init__(self, high: dict[int, int]) -> None:
        self.high = high

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        assert cached  # never a request to the broker from the loop
        return 0, self.high[tp.partition]


def bare_sink(waiting: int, high: dict[int, int], consumed: dict[int, int], rows_per_message: float) -> ClickHouseSink:
    sink = ClickHouseSink.__new__(ClickHouseSink)  # only the flush decision is exercised
    sink.settings = Settings(**LIMITS)
    sink.topics = type("T", (), {"rated": "rated-usage"})()
    sink.rated, sink.dead = RecordBatch("rated_usage", RATED_FIELDS), RecordBatch("dead_letters", ())
    sink.max_age = {"dead_letters": 2.0}
    sink.backlog = Waiting(waiting)
    sink.consumer = Watermarks(high)
    sink.assigned = {("rated-usage", p) for p in high}
    sink.consumed = {("rated-usage", p): o for p, o in consumed.items()}
    sink.rows_per_message = rows_per_message
    sink.behind = False
    return sink


def held(sink: ClickHouseSink, rows: int, age: float) -> bool:
    """Does the sink keep a rated batch of `rows` records, `age` seconds old?"""
    sink.rated.rows = rows
    sink.started = {"rated_usage": 100.0}
    return not sink._due(sink.rated, 100.0 + age)


def test_caught_up_the_sink_flushes_at_the_short_age_and_size() -> None:
    sink = bare_sink(waiting=99, high={0: 50, 1: 70}, consumed={0: 50, 1: 70}, rows_per_message=800)
    assert sink._own_waiting() == 0
    assert held(sink, rows=5, age=0.29)
    assert not held(sink, rows=5, age=0.31)
    assert not held(sink, rows=10, age=0.0)


def test_with_events_waiting_for_the_processor_the_sink_holds_the_batch_longer() -> None:
    sink = bare_sink(waiting=100, high={0: 50}, consumed={0: 50}, rows_per_message=800)
    assert held(sink, rows=999, age=1.99)
    assert not held(sink, rows=999, age=2.01)
    assert not held(sink, rows=1000, age=0.0)
    sink.backlog = Waiting(99)  # caught up again: the batch in hand goes at once
    assert not held(sink, rows=999, age=0.5)


def test_with_rows_waiting_in_its_own_topic_the_sink_holds_the_batch_longer() -> None:
    # 40 + 23 messages not read yet, at 2 rows per message: 126 rows >= 100
    sink = bare_sink(waiting=0, high={0: 90, 1: 123}, consumed={0: 50, 1: 100}, rows_per_message=2)
    assert sink._own_waiting() == 126
    assert held(sink, rows=500, age=1.5)
    sink.rows_per_message = 1.5  # 94 rows: below the threshold
    assert sink._own_waiting() == 94
    assert not held(sink, rows=500, age=1.5)


def test_an_old_answer_counts_as_no_backlog() -> None:
    now = [10.0]
    backlog = Backlog(Settings(), every=0.5, stale=3.0, clock=lambda: now[0])
    assert backlog.events() == 0  # no answer yet
    backlog.last = (10.0, 250_000)
    now[0] = 12.9
    assert backlog.events() == 250_000
    now[0] = 13.1
    assert backlog.events() == 0


def wait_for(what, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return bool(what())


def test_the_backlog_is_the_usage_events_the_processor_group_has_not_committed(kafka_settings) -> None:
    prefix = f"bl{uuid.uuid4().hex[:8]}."
    settings = Settings(**{**kafka_settings.model_dump(), "topic_prefix": prefix, "partitions": 2})
    ensure_topics(settings)
    usage = settings.topic("usage-events")
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    for i in range(30):  # 20 on partition 0, 10 on partition 1
        producer.produce(usage, value=b"{}", partition=0 if i < 20 else 1)
    producer.flush(10)
    backlog = Backlog(settings, every=0.1)
    backlog.start()
    try:
        # the processor group has committed nothing yet: every event waits
        assert wait_for(lambda: backlog.events() == 30), backlog.events()
        # the processor commits 15 of partition 0 and all of partition 1: 5 wait
        group = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": app_id(settings)})
        group.commit(offsets=[TopicPartition(usage, 0, 15), TopicPartition(usage, 1, 10)], asynchronous=False)
        group.close()
        assert wait_for(lambda: backlog.events() == 5), backlog.events()
        probe = LagProbe(settings)  # the same figure as the tools that wait for the pipeline read
        assert probe.group_lag(app_id(settings), [usage]) == 5
        probe.close()
    finally:
        backlog.stop()
    assert backlog.thread is not None and not backlog.thread.is_alive()


class FlakyProbe:
    """A LagProbe whose broker fails twice (a restart), then answers 42."""

    closed = False

    def __init__(self, settings: Settings) -> None:
        self.calls = 0

    def group_lag(self, group: str, topics: list[str]) -> int:
        self.calls += 1
        if self.calls <= 2:
            raise RuntimeError("broker restarting")
        return 42

    def close(self) -> None:
        FlakyProbe.closed = True


def test_a_failing_probe_is_asked_again_and_closed_at_the_stop(monkeypatch) -> None:
    monkeypatch.setattr("meterstream.aggregation.sink.LagProbe", FlakyProbe)
    backlog = Backlog(Settings(), every=0.05)
    backlog.start()
    try:
        assert wait_for(lambda: backlog.events() == 42, timeout=5), "the thread ended on the first failure"
    finally:
        backlog.stop()
    assert FlakyProbe.closed and backlog.thread is not None and not backlog.thread.is_alive()


@pytest.mark.kafka
@pytest.mark.parametrize("backlog", [True, False])
def test_the_running_sink_inserts_one_block_while_a_backlog_waits_and_one_per_age_without(
    chdb_client, kafka_settings, backlog: bool
) -> None:
    """Three bursts of rated records 0.6 s apart. With 20 events waiting for a processor that has committed none
    (threshold 10) the sink holds them for up to 4 s and inserts them as one block (one commit); with the backlog
    threshold at 0 (never) it inserts a block every 0.2 s: three commits. Both land every record once."""
    db = new_database(chdb_client, "k" if backlog else "n")
    settings = Settings(
        **{
            **kafka_settings.model_dump(),
            "clickhouse_database": db,
            "topic_prefix": f"{db}.",
            "partitions": 1,
            "sink_batch_seconds": 0.2,
            "sink_backlog_rows": 10 if backlog else 0,
            "sink_backlog_batch_seconds": 4.0,
        }
    )
    ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    for _ in range(20):  # events no processor has read
        producer.produce(settings.topic("usage-events"), value=b"{}")
    producer.flush(10)
    sink = ClickHouseSink(settings, chdb_client)
    counting = CountingConsumer(sink.consumer)
    sink.consumer = counting  # type: ignore[assignment]
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    runner.start()
    try:
        if backlog:
            assert wait_for(lambda: sink.backlog.events() == 20), sink.backlog.events()
        else:
            time.sleep(2.0)  # the group's assignment, as the backlog's wait gives the other case
        for burst in range(3):
            for i in range(5):
                record = {**RECORD, "id": f"evt-{burst}-{i}", "src_offset": 5 * burst + i}
                producer.produce(sink.topics.rated, value=orjson.dumps(record))
            producer.flush(10)
            time.sleep(0.6)
        assert wait_for(lambda: bool(counting.commits) and counting.commits[-1][0].offset == 15, 20)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage FINAL") == 15
    offsets = [[tp.offset for tp in c] for c in counting.commits]
    if backlog:
        assert offsets == [[15]], offsets  # one block: the three bursts held together
    else:
        assert offsets == [[5], [10], [15]], offsets  # a block per burst
