"""A tombstone (a message with a null value) on `rated-usage` or `dead-letters` never stalls the sink.

Before: `RecordBatch.add(None)` raised TypeError in the sink's loop (`None[:4]`), the process died, and
its restart met the same message. Now it is dead-lettered in the `dead_letters` table (stage `sink`, empty
raw, the reason says it is a tombstone), the records around it land, and the offsets move past it — also
when the tombstone is the last message of its partition (nothing else would carry its offset).
Real Kafka broker (session fixture) and embedded ClickHouse.
"""

from __future__ import annotations

import orjson
import pytest
from sink_helpers import RECORD, drain, new_database

from meterstream.aggregation.sink import ClickHouseSink
from meterstream.schemas.settings import Settings


@pytest.mark.kafka
def test_tombstones_are_dead_lettered_and_the_sink_drains(chdb_client, kafka_settings) -> None:
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics

    db = new_database(chdb_client, "t")
    settings = Settings(
        **{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}.", "partitions": 1}
    )
    ensure_topics(settings)
    rated, dead = settings.topic("rated-usage"), settings.topic("dead-letters")
    producer = make_producer(settings)
    producer.produce(rated, orjson.dumps({**RECORD, "id": "before"}), partition=0)  # offset 0
    producer.produce(rated, None, b"some-key", partition=0)  # offset 1: a tombstone between records
    producer.produce(rated, orjson.dumps({**RECORD, "id": "after"}), partition=0)  # offset 2
    producer.produce(rated, None, partition=0)  # offset 3: a tombstone as the partition's last message
    producer.produce(dead, None, b"t/c", partition=0)  # offset 0 of dead-letters: alone in its partition
    assert producer.flush(30) == 0

    sink = ClickHouseSink(settings, chdb_client)
    lag, errors = drain(sink, settings, [rated, dead])
    assert errors == []  # the old sink died here with TypeError
    assert lag == 0, "the group's offsets did not move past the tombstones"
    ids = chdb_client.query(f"SELECT event_id FROM {db}.rated_usage FINAL ORDER BY event_id").result_rows
    assert ids == [("after",), ("before",)]
    rows = chdb_client.query(
        f"SELECT stage, topic, partition, offset, kafka_key, raw, reason FROM {db}.dead_letters FINAL "
        "ORDER BY topic, offset"
    ).result_rows
    assert [r[:6] for r in rows] == [
        ("sink", dead, 0, 0, "t/c", ""),
        ("sink", rated, 0, 1, "some-key", ""),
        ("sink", rated, 0, 3, "", ""),
    ]
    assert all("tombstone" in r[6] and "null value" in r[6] for r in rows)
    assert sink.state.refused == 3
