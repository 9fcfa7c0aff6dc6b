"""Schema creation and upgrade on embedded ClickHouse: a store made by an older version takes today's inserts."""

from __future__ import annotations

import uuid

import orjson

from meterstream.aggregation.ddl import create_schema, statements
from meterstream.aggregation.rows import DEAD_LETTER_FIELDS, RATED_FIELDS, RecordBatch
from meterstream.aggregation.sink import insert_records

# The two tables as versions before 2026-11-21 created them (no EPHEMERAL input columns).
OLD_RATED = """CREATE TABLE {db}.rated_usage
(
    tenant LowCardinality(String), event_id String, customer String, subject String,
    meter LowCardinality(String), time DateTime64(3, 'UTC'), period LowCardinality(String),
    quantity Decimal(38, 12), amount Decimal(38, 18), cumulative Decimal(38, 12),
    currency LowCardinality(String), plan LowCardinality(String), line LowCardinality(String),
    dimensions Map(LowCardinality(String), String), source LowCardinality(String),
    src_partition UInt16, src_offset UInt64
)
ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(time) ORDER BY (tenant, event_id)"""
OLD_DEAD = """CREATE TABLE {db}.dead_letters
(
    topic LowCardinality(String), partition UInt16, offset UInt64, stage LowCardinality(String),
    field String, reason String, tenant String, event_id String, kafka_key String, raw String
)
ENGINE = ReplacingMergeTree ORDER BY (topic, partition, offset)"""

RECORD = {
    "tenant": "cloudco", "id": "evt-new", "customer": "org-7", "subject": "", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "quantity": "3", "amount": "0.3",
    "cumulative": "3", "currency": "USD", "plan": "p", "line": "api_calls", "dimensions": {},
    "source": "", "src_partition": 0, "src_offset": 7,
}  # fmt: skip
DEAD = {
    "stage": "parse", "field": "quantity", "reason": "must be >= 0", "topic": "usage-events",
    "partition": 0, "offset": 9, "key": "cloudco/org-7", "raw": "{}", "event_id": None, "tenant": None,
}  # fmt: skip


def test_an_older_store_is_upgraded_in_place_and_keeps_its_rows(chdb_client) -> None:
    db = f"old_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {db}")
    chdb_client.command(OLD_RATED.replace("{db}", db))
    chdb_client.command(OLD_DEAD.replace("{db}", db))
    chdb_client.command(
        f"INSERT INTO {db}.rated_usage (tenant, event_id, customer, time, period, quantity, amount, cumulative) "
        "VALUES ('cloudco', 'evt-old', 'org-7', '2026-10-01 00:00:00', '2026-10', 1, 0.1, 1)"
    )

    assert create_schema(chdb_client, db) == len(statements(db)) + 4  # every upgrade applied (3 columns, 1 setting)
    assert create_schema(chdb_client, db) == len(statements(db))  # and only once

    rated = RecordBatch("rated_usage", RATED_FIELDS)
    rated.add(orjson.dumps(RECORD))
    insert_records(chdb_client, db, rated, "tok-r")
    dead = RecordBatch("dead_letters", DEAD_LETTER_FIELDS)
    dead.add(orjson.dumps(DEAD))
    insert_records(chdb_client, db, dead, "tok-d")

    rows = chdb_client.query(f"SELECT event_id, quantity FROM {db}.rated_usage FINAL ORDER BY event_id").result_rows
    assert [(e, str(q)) for e, q in rows] == [("evt-new", "3.000000000000"), ("evt-old", "1.000000000000")]
    assert chdb_client.query(f"SELECT kafka_key, offset FROM {db}.dead_letters").result_rows == [("cloudco/org-7", 9)]
    # the upgraded dead_letters keys by record too: two refused records of one packed message stay two rows
    for record in (1, 2):
        chdb_client.command(
            f"INSERT INTO {db}.dead_letters (topic, partition, offset, record, stage, raw) "
            f"VALUES ('rated-usage', 0, 5, {record}, 'sink', 'x')"
        )
    assert chdb_client.command(f"SELECT count() FROM {db}.dead_letters FINAL WHERE stage = 'sink'") == 2


def test_a_fresh_store_needs_no_upgrade(chdb_client) -> None:
    db = f"new_{uuid.uuid4().hex[:10]}"
    assert create_schema(chdb_client, db) == len(statements(db))
