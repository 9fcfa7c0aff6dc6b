"""The sink on embedded ClickHouse: JSONEachRow inserts land records as the topic carries them; batching."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from sink_helpers import new_database

from meterstream.aggregation.rows import DEAD_LETTER_FIELDS, RATED_FIELDS, Position, RecordBatch
from meterstream.aggregation.sink import ClickHouseSink, insert_records
from meterstream.schemas.settings import Settings

RECORD = {
    "tenant": "cloudco",
    "id": "evt-1",
    "customer": "org-7",
    "subject": "user-3",
    "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z",
    "period": "2026-10",
    "quantity": "1234.000000000001",
    "amount": "0.024680000000000020",
    "cumulative": "99999999999999.5",
    "currency": "USD",
    "plan": "cloud-standard",
    "line": "api_calls",
    "dimensions": {"region": "eu-west-1"},
    "source": "gw-1",
    "src_partition": 3,
    "src_offset": 123456789,
}
DEAD = {
    "stage": "parse",
    "field": "quantity",
    "reason": "must be >= 0",
    "topic": "usage-events",
    "partition": 1,
    "offset": 42,
    "key": None,
    "raw": '{"quantity": "-1"}',
    "event_id": None,
    "tenant": None,
}


@pytest.fixture
def db(chdb_client) -> str:
    return new_database(chdb_client, "t")


def batch(table: str, *records: dict) -> RecordBatch:
    b = RecordBatch(table, RATED_FIELDS if table == "rated_usage" else DEAD_LETTER_FIELDS)
    b.values = [orjson.dumps(r) for r in records]
    return b


def test_a_rated_record_lands_with_every_value_exact(chdb_client, db: str) -> None:
    insert_records(chdb_client, db, batch("rated_usage", RECORD), "tok-1")
    row = chdb_client.query(
        f"SELECT tenant, event_id, customer, subject, time, quantity, amount, cumulative, dimensions, src_offset "
        f"FROM {db}.rated_usage FINAL"
    ).result_rows
    assert row == [
        (
            "cloudco",
            "evt-1",
            "org-7",
            "user-3",
            datetime(2026, 10, 12, 10, 11, 12, 345000, tzinfo=UTC).replace(tzinfo=None),
            Decimal("1234.000000000001"),
            Decimal("0.02468000000000002"),
            Decimal("99999999999999.5"),
            {"region": "eu-west-1"},
            123456789,
        )
    ]


def test_the_same_block_with_the_same_token_is_inserted_once(chdb_client, db: str) -> None:
    second = dict(RECORD, id="evt-2")
    for _ in range(3):
        insert_records(chdb_client, db, batch("rated_usage", RECORD, second), "same-token")
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage") == 2  # raw rows, not FINAL


def test_a_dead_letter_with_nulls_lands_with_empty_strings(chdb_client, db: str) -> None:
    keyed = dict(DEAD, offset=43, key="cloudco/org-7", event_id="e9", tenant="cloudco")
    insert_records(chdb_client, db, batch("dead_letters", DEAD, keyed), "tok-dl")
    rows = chdb_client.query(f"SELECT offset, kafka_key, event_id, tenant, raw FROM {db}.dead_letters ORDER BY offset")
    assert rows.result_rows == [
        (42, "", "", "", '{"quantity": "-1"}'),
        (43, "cloudco/org-7", "e9", "cloudco", '{"quantity": "-1"}'),
    ]


def test_the_sink_dead_letters_a_refused_record_and_inserts_the_rest(chdb_client, db: str, kafka_settings) -> None:
    settings = Settings(**{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}."})
    sink = ClickHouseSink(settings, chdb_client)
    topic = sink.topics.rated
    try:
        good = [orjson.dumps(dict(RECORD, id=f"e{i}", src_offset=i)) for i in range(5)]
        broken = b'{"tenant": "cloudco", "id": "broken"'
        # four messages, the third packing three records of which the middle one is cut off
        for offset, value in enumerate((good[0], broken, b"\n".join([good[1], broken, good[2]]), b"\n".join(good[3:]))):
            sink.rated.add(value, Position(topic, 0, offset))
        assert len(sink.rated) == 7
        sink.ranges[(topic, 0)] = [0, 3]
        assert sink.flush() is True
    finally:
        sink.consumer.close()
    ids = chdb_client.query(f"SELECT event_id FROM {db}.rated_usage FINAL ORDER BY event_id").result_rows
    assert ids == [("e0",), ("e1",), ("e2",), ("e3",), ("e4",)]
    assert not sink.state.degraded and sink.state.rows == 5 and sink.state.refused == 2
    # the two cut-off records are dead letters (stage sink) at their place: message 1, and record 1 of message 2
    dead = chdb_client.query(
        f"SELECT stage, topic, partition, offset, record, field, tenant, event_id, raw, reason "
        f"FROM {db}.dead_letters FINAL ORDER BY offset"
    ).result_rows
    assert [row[:9] for row in dead] == [
        ("sink", topic, 0, 1, 0, "", "", "", broken.decode()),
        ("sink", topic, 0, 2, 1, "", "", "", broken.decode()),
    ]
    assert all("Unexpected end of stream while parsing JSONEachRow" in row[9] for row in dead)


def test_dead_letters_wait_for_their_own_clock_while_usage_flows_and_go_in_when_it_pauses(
    chdb_client, db: str, kafka_settings
) -> None:
    """Rated records go in after `sink_batch_seconds`; dead letters (rare, each insert has a fixed cost) wait for
    `sink_dead_letter_seconds` while rated usage keeps coming, and go in as soon as the stream pauses (nothing
    for `sink_batch_seconds`), with their own offsets committed then; stopping inserts what is left."""
    import threading
    import time

    from confluent_kafka import Consumer, TopicPartition

    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics

    settings = Settings(
        **{
            **kafka_settings.model_dump(),
            "clickhouse_database": db,
            "topic_prefix": f"{db}.",
            "sink_batch_seconds": 0.5,
            "sink_dead_letter_seconds": 60.0,  # far longer than the test: only a pause (or a stop) lets them in
        }
    )
    ensure_topics(settings)
    producer = make_producer(settings)
    feeding = threading.Event()
    fed = [0]

    def feed() -> None:  # a rated message every 20 ms while `feeding` is set: the stream never pauses
        while feeding.is_set():
            i = fed[0]
            producer.produce(
                settings.topic("rated-usage"), orjson.dumps(dict(RECORD, id=f"e{i}", src_offset=i)), partition=0
            )
            producer.flush(5)
            fed[0] = i + 1
            time.sleep(0.02)

    def count(table: str) -> int:
        return chdb_client.command(f"SELECT count() FROM {db}.{table}")

    def committed_dead_letters() -> int:
        reader = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": sink.group})  # no subscribe
        committed = reader.committed([TopicPartition(settings.topic("dead-letters"), 0)], timeout=10)
        reader.close()
        return committed[0].offset

    producer.produce(settings.topic("dead-letters"), orjson.dumps(DEAD), partition=0)
    assert producer.flush(30) == 0
    feeding.set()
    feeder = threading.Thread(target=feed)
    feeder.start()
    sink = ClickHouseSink(settings, chdb_client)
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len(sink.dead) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sink.dead) == 1  # consumed
        flowing_until = time.monotonic() + 3.0
        while time.monotonic() < flowing_until:  # usage flows: rated rows go in, the dead letter waits
            assert count("dead_letters") == 0
            time.sleep(0.1)
        assert count("rated_usage") > 0

        # the same while a second dead letter comes, then a stop while usage still flows inserts both
        producer.produce(settings.topic("dead-letters"), orjson.dumps(dict(DEAD, offset=43)), partition=0)
        while len(sink.dead) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sink.dead) == 2 and count("dead_letters") == 0
    finally:
        stop.set()
        runner.join(30)
        feeding.clear()
        feeder.join(30)
    assert not runner.is_alive()
    assert count("dead_letters") == 2
    assert committed_dead_letters() == 2

    # a new sink (same group), a dead letter and no usage: it goes in once the stream is quiet, not after 60 s
    producer.produce(settings.topic("dead-letters"), orjson.dumps(dict(DEAD, offset=44)), partition=0)
    assert producer.flush(30) == 0
    sink = ClickHouseSink(settings, chdb_client)
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,))
    started = time.monotonic()
    runner.start()
    try:
        while count("dead_letters") < 3 and time.monotonic() - started < 30:
            time.sleep(0.05)
        assert count("dead_letters") == 3
        assert time.monotonic() - started < 20  # well before its 60 s clock
        assert committed_dead_letters() == 3
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert count("rated_usage") == len({f"e{i}" for i in range(fed[0])})
