"""What the sink tests share (test_sink_arrow.py, test_sink_rows.py, test_sink_refusals.py, test_sink_tombstone.py,
test_insert.py): a rated-usage record ClickHouse takes as it is, a database of their own in the session's embedded
ClickHouse, and the sink's consumer with its commits counted, one flush run in a thread with a time limit, the sink
run until its consumer group has caught up, and the running sink fed three records and a replay in a given form."""

from __future__ import annotations

import threading
import time
import uuid

from meterstream.aggregation.ddl import create_schema

RECORD = {
    "tenant": "cloudco", "id": "evt-1", "customer": "org-7", "subject": "user-3", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "quantity": "12.5", "amount": "1.25",
    "cumulative": "100", "currency": "USD", "plan": "cloud-standard", "line": "api_calls",
    "dimensions": {"region": "eu-west-1"}, "source": "gw-1", "src_partition": 3, "src_offset": 77,
}  # fmt: skip


def new_database(chdb_client, letter: str) -> str:  # type: ignore[no-untyped-def]
    """A fresh database with the tables (aggregation/ddl.py), named `letter` + a random tag: also a topic prefix."""
    name = f"{letter}_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    return name


class CountingConsumer:
    """The sink's consumer with its commits counted (confluent's Consumer cannot be patched)."""

    def __init__(self, consumer) -> None:
        self._consumer = consumer
        self.commits: list[list] = []

    def commit(self, *args, **kwargs):
        self.commits.append(kwargs.get("offsets"))
        return self._consumer.commit(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)


def flush_within(sink, seconds: float = 60.0) -> list[bool]:  # type: ignore[no-untyped-def]
    """Run `sink.flush()` in a thread; fail when it does not finish within `seconds` (a refused row must not stall
    the sink). The sink is stopped and its consumer closed afterwards. Returns [flush's result]."""
    done = threading.Event()
    result: list[bool] = []
    worker = threading.Thread(target=lambda: (result.append(sink.flush()), done.set()), daemon=True)
    worker.start()
    try:
        assert done.wait(seconds), "the flush did not finish: a refused row stalls the sink"
    finally:
        sink.stop.set()
        worker.join(30)
        sink.consumer.close()
    return result


def drain(sink, settings, topics: list[str], seconds: float = 60.0) -> tuple[int | None, list[BaseException]]:  # type: ignore[no-untyped-def]
    """Run the sink (`sink.run`) in a thread until its group's lag on `topics` is 0, `seconds` passed or it raised;
    then stop it (it must stop). Returns (the last lag read, what `sink.run` raised)."""
    from meterstream.ingest.lag import LagProbe

    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    probe = LagProbe(settings)
    lag = None
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not errors:
            lag = probe.group_lag(sink.group, topics)
            if lag == 0:
                break
            time.sleep(0.2)
    finally:
        probe.close()
        stop.set()
        runner.join(30)
    assert not runner.is_alive(), "the sink did not stop"
    return lag, errors


def landed_ids(chdb_client, db: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    """The event ids in `db.rated_usage` (FINAL), in order."""
    return chdb_client.query(f"SELECT event_id FROM {db}.rated_usage FINAL ORDER BY event_id").result_rows


def sink_dead_letters(chdb_client, db: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    """`db.dead_letters` (FINAL) as (offset, record, stage, field, tenant, event_id, reason, raw), in order."""
    return chdb_client.query(
        f"SELECT offset, record, stage, field, tenant, event_id, reason, raw "
        f"FROM {db}.dead_letters FINAL ORDER BY offset, record"
    ).result_rows


def land_replayed_records(chdb_client, db: str, kafka_settings, encode, encode_second=None) -> None:  # type: ignore[no-untyped-def]
    """The running sink on a real broker: three records x1-x3 in two messages (`encode(*records)` -> a `rated-usage`
    message value in the form under test; the second message by `encode_second` when given) and a processor's replay
    of x1 in a third; they land as written, the replay collapsing into its original (FINAL), and no dead letter."""
    from datetime import datetime
    from decimal import Decimal

    from meterstream.aggregation.sink import ClickHouseSink
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics
    from meterstream.schemas.settings import Settings

    settings = Settings(
        **{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}.", "partitions": 1}
    )
    ensure_topics(settings)
    producer = make_producer(settings)
    topic = settings.topic("rated-usage")
    x1, x3 = {**RECORD, "id": "x1", "src_offset": 1}, {**RECORD, "id": "x3", "amount": "-0.5", "src_offset": 3}
    producer.produce(topic, encode(x1, {**RECORD, "id": "x2", "quantity": "0", "amount": "0", "src_offset": 2}))
    producer.produce(topic, (encode_second or encode)(x3))
    producer.produce(topic, encode(x1))  # a processor's replay: same row, collapses
    assert producer.flush(30) == 0
    sink = ClickHouseSink(settings, chdb_client)
    assert drain(sink, settings, [topic]) == (0, [])
    t = datetime(2026, 10, 12, 10, 11, 12, 345000)
    common = ("cloud-standard", "api_calls", {"region": "eu-west-1"}, "gw-1", 3)
    landed = chdb_client.query(
        "SELECT tenant, event_id, customer, subject, meter, time, period, quantity, amount, cumulative, currency, "
        f"plan, line, dimensions, source, src_partition, src_offset FROM {db}.rated_usage FINAL ORDER BY event_id"
    ).result_rows
    assert landed == [
        ("cloudco", "x1", "org-7", "user-3", "api_calls", t, "2026-10", Decimal("12.5"), Decimal("1.25"),
         Decimal("100"), "USD", *common, 1),
        ("cloudco", "x2", "org-7", "user-3", "api_calls", t, "2026-10", Decimal("0"), Decimal("0"),
         Decimal("100"), "USD", *common, 2),
        ("cloudco", "x3", "org-7", "user-3", "api_calls", t, "2026-10", Decimal("12.5"), Decimal("-0.5"),
         Decimal("100"), "USD", *common, 3),
    ]  # fmt: skip
    assert chdb_client.command(f"SELECT count() FROM {db}.dead_letters") == 0
