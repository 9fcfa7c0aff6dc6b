"""The rated_usage table's merge setting (schema.sql: merge_selector_base = 10, fewer rewrites of the sink's
small parts) on fresh and older stores, and what it must not change: the sink's insert deduplication and
FINAL reads (the views, the billing reads) over many unmerged parts. Real embedded ClickHouse (chdb)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson

from meterstream.aggregation.ddl import SETTINGS_UPGRADES, create_schema, statements
from meterstream.aggregation.rows import RATED_FIELDS, RecordBatch
from meterstream.aggregation.sink import insert_records

OLD_RATED = """CREATE TABLE {db}.rated_usage
(
    tenant LowCardinality(String), id String EPHEMERAL, event_id String DEFAULT id, customer String,
    subject String, meter LowCardinality(String), time DateTime64(3, 'UTC'), period LowCardinality(String),
    quantity Decimal(38, 12), amount Decimal(38, 18), cumulative Decimal(38, 12),
    currency LowCardinality(String), plan LowCardinality(String), line LowCardinality(String),
    dimensions Map(LowCardinality(String), String), source LowCardinality(String),
    src_partition UInt16, src_offset UInt64
)
ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(time) ORDER BY (tenant, event_id)
SETTINGS non_replicated_deduplication_window = 1000"""


RECORD = {
    "tenant": "cloudco", "customer": "org-7", "subject": "", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "currency": "USD", "plan": "p", "line": "api_calls",
    "dimensions": {}, "source": "", "src_partition": 0,
}  # fmt: skip


def record(i: int, quantity: str, amount: str) -> bytes:
    return orjson.dumps(
        {**RECORD, "id": f"evt-{i}", "quantity": quantity, "amount": amount, "cumulative": quantity, "src_offset": i}
    )


def merge_setting(client, db: str) -> str:
    definition = client.command(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = 'rated_usage'",
        parameters={"db": db},
    )
    return next(part for part in str(definition).split(", ") if part.startswith("merge_selector_base"))


def test_a_fresh_store_has_the_merge_setting_and_needs_no_upgrade(chdb_client) -> None:
    db = f"set_{uuid.uuid4().hex[:10]}"
    assert create_schema(chdb_client, db) == len(statements(db))  # nothing to upgrade: the CREATE has it
    assert merge_setting(chdb_client, db) == "merge_selector_base = 10"
    assert SETTINGS_UPGRADES == (("rated_usage", "merge_selector_base", "10"),)


def test_an_older_store_gets_the_merge_setting_once(chdb_client) -> None:
    db = f"oldset_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {db}")
    chdb_client.command(OLD_RATED.replace("{db}", db))
    assert "merge_selector_base" not in chdb_client.command(f"SHOW CREATE TABLE {db}.rated_usage")

    assert create_schema(chdb_client, db) == len(statements(db)) + 1  # the setting (its columns are current)
    assert merge_setting(chdb_client, db) == "merge_selector_base = 10"
    assert create_schema(chdb_client, db) == len(statements(db))  # and only once


def test_replays_collapse_and_views_add_up_over_many_unmerged_parts(chdb_client) -> None:
    """Twelve small inserts (twelve parts, merges stopped, as many as the sink leaves between merges now):
    a repeated insert (same token) is dropped, a replay of the same records (a new token, e.g. a processor
    that repeated its output) is collapsed by FINAL, so the views count each event once."""
    db = f"parts_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    chdb_client.command(f"SYSTEM STOP MERGES {db}.rated_usage")

    def insert(ids: range, token: str) -> None:
        batch = RecordBatch("rated_usage", RATED_FIELDS)
        for i in ids:
            batch.add(record(i, "2", "0.25"))
        insert_records(chdb_client, db, batch, token)

    for n in range(10):  # events 0..29, three per insert
        insert(range(3 * n, 3 * n + 3), f"tok-{n}")
    insert(range(0, 3), "tok-0")  # the same batch again (a sink restarted before its commit): dropped
    insert(range(3, 9), "tok-replay")  # events 3..8 once more under another token: a part of its own
    parts = chdb_client.command(f"SELECT count() FROM system.parts WHERE database = '{db}' AND active")
    assert int(parts) == 11  # ten inserts and the replay; the repeated token wrote nothing

    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage") == 30 + 6  # without FINAL: the replay
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage FINAL") == 30
    rows = chdb_client.query(
        f"SELECT events, quantity, streamed_amount FROM {db}.usage_by_period WHERE tenant = 'cloudco'"
    ).result_rows
    # 30 events of 2 units and 0.25 USD each: 60 units, 7.50 USD
    assert [(e, Decimal(q), Decimal(a)) for e, q, a in rows] == [(30, Decimal("60"), Decimal("7.5"))]
    daily = chdb_client.query(f"SELECT sum(events), sum(quantity) FROM {db}.usage_daily").result_rows
    assert [(e, Decimal(q)) for e, q in daily] == [(30, Decimal("60"))]
