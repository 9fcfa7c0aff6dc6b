"""The sink with Arrow `rated-usage` messages (older topics: schemas.rated_arrow.pack_arrow) and
with JSON Lines messages next to them: both land, exactly; refused rows of an Arrow block are dead letters
with ClickHouse's reason while the rest lands; offsets commit once. Real embedded ClickHouse (chdb) and,
where the sink's consumer commits or runs, a real Kafka broker."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import orjson
import pyarrow as pa
import pytest
from sink_helpers import (
    RECORD,
    CountingConsumer,
    flush_within,
    land_replayed_records,
    landed_ids,
    new_database,
    sink_dead_letters,
)

from meterstream.aggregation.refusals import NullProbe, refused_lines
from meterstream.aggregation.rows import INSERT_SETTINGS, RATED_FIELDS, Position, RecordBatch, store_field
from meterstream.aggregation.sink import ClickHouseSink, insert_records
from meterstream.schemas.rated import row_of
from meterstream.schemas.rated_arrow import pack_arrow, read_arrow
from meterstream.schemas.settings import Settings

SELECT = (
    "SELECT tenant, event_id, customer, subject, meter, time, period, quantity, amount, cumulative, currency, "
    "plan, line, dimensions, source, src_partition, src_offset FROM {db}.rated_usage FINAL ORDER BY event_id"
)


def r(**changes: object) -> dict:
    return {**RECORD, **changes}


def arrow(*records: dict) -> bytes:
    (value,) = pack_arrow([row_of(x) for x in records])
    assert value[:4] == b"\xff\xff\xff\xff"
    return value


def json_lines(*records: dict) -> bytes:
    return b"\n".join(orjson.dumps(x) for x in records)


@pytest.fixture
def db(chdb_client) -> str:
    return new_database(chdb_client, "a")


def test_arrow_records_land_with_every_value_exact(chdb_client, db: str) -> None:
    batch = RecordBatch("rated_usage", RATED_FIELDS)
    batch.add(
        arrow(
            r(),
            r(id="evt-2", subject="", time="2026-10-31T23:59:59.999Z",
              quantity="99999999999999999999999999.999999999999", amount="-0.000000000000000001", cumulative="0",
              dimensions={}, src_partition=65535, src_offset=18446744073709551615),
            r(id="evt-3", customer="cust-\u00e9", meter="voice_seconds", line="voice_seconds|+49|peak", currency="EUR",
              dimensions={"destination": "+4930", "a\tb": "\u00e9" * 3}),
        )
    )  # fmt: skip
    assert len(batch) == 3 and not batch.values
    insert_records(chdb_client, db, batch, "tok-arrow")
    rows = chdb_client.query(SELECT.format(db=db)).result_rows
    assert rows == [
        ("cloudco", "evt-1", "org-7", "user-3", "api_calls", datetime(2026, 10, 12, 10, 11, 12, 345000), "2026-10",
         Decimal("12.5"), Decimal("1.25"), Decimal("100"), "USD", "cloud-standard", "api_calls",
         {"region": "eu-west-1"}, "gw-1", 3, 77),
        ("cloudco", "evt-2", "org-7", "", "api_calls", datetime(2026, 10, 31, 23, 59, 59, 999000), "2026-10",
         Decimal("99999999999999999999999999.999999999999"), Decimal("-0.000000000000000001"), Decimal("0"), "USD",
         "cloud-standard", "api_calls", {}, "gw-1", 65535, 18446744073709551615),
        ("cloudco", "evt-3", "cust-\u00e9", "user-3", "voice_seconds", datetime(2026, 10, 12, 10, 11, 12, 345000),
         "2026-10", Decimal("12.5"), Decimal("1.25"), Decimal("100"), "EUR", "cloud-standard",
         "voice_seconds|+49|peak", {"destination": "+4930", "a\tb": "\u00e9\u00e9\u00e9"}, "gw-1", 3, 77),
    ]  # fmt: skip


def test_a_mixed_batch_lands_whole_once_and_again_with_its_token_adds_nothing(chdb_client, db: str) -> None:
    """JSON and Arrow parts are two inserts: each needs its own token (ClickHouse drops a second insert
    with the same token as a repeat), and repeating the batch with its token repeats neither."""
    for _ in range(3):
        batch = RecordBatch("rated_usage", RATED_FIELDS)
        batch.add(json_lines(r(id="j1"), r(id="j2")))
        batch.add(arrow(r(id="a1"), r(id="a2"), r(id="a3")))
        assert len(batch) == 5
        insert_records(chdb_client, db, batch, "same-token")
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage") == 5  # raw rows, not FINAL


def test_refused_rows_of_an_arrow_table_are_found_by_slicing(chdb_client, db: str) -> None:
    goods = [r(id=f"g{i}") for i in range(40)]
    bad_at = {
        3: (r(id="big", quantity="9" * 27), "quantity", "Decimal value is too big"),  # one over Decimal(38, 12)
        17: (r(id="neg", quantity="-2"), "quantity", "quantity_not_negative"),
        18: (r(id="amt", amount="1" * 21), "amount", "Decimal value is too big"),  # one over Decimal(38, 18)
        39: (r(id="txt", cumulative="1,5"), "cumulative", "Cannot parse string"),
    }
    records = list(goods)
    for i, (record, _field, _words) in sorted(bad_at.items()):
        records.insert(i, record)
    table = read_arrow(arrow(*records))
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, INSERT_SETTINGS["rated_usage"]) as probe:
        assert probe(table[:3]) is None
        bad = refused_lines(probe, table)
        assert probe.inserts < len(records)  # a few probes per refused row, not one per row
    assert sorted(bad) == sorted(bad_at)
    for i, (_record, field, words) in bad_at.items():
        assert words in bad[i] and store_field(bad[i], RATED_FIELDS) == field, bad[i]


def test_a_null_in_an_arrow_column_is_refused_not_stored_as_empty(chdb_client, db: str) -> None:
    table = pa.Table.from_batches([read_arrow(arrow(r())).to_batches()[0]]).set_column(
        0, "tenant", pa.array([None], pa.string())
    )
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, INSERT_SETTINGS["rated_usage"]) as probe:
        error = probe(table)
    assert error is not None and "NULL" in error and store_field(error, RATED_FIELDS) == "tenant"


@pytest.mark.kafka
def test_one_flush_of_mixed_messages_dead_letters_refused_rows_and_commits_once(chdb_client, db, kafka_settings):
    settings = Settings(**{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}."})
    sink = ClickHouseSink(settings, chdb_client)
    counting = CountingConsumer(sink.consumer)
    sink.consumer = counting  # type: ignore[assignment]
    topic = sink.topics.rated
    missing_amount = orjson.dumps({k: v for k, v in r(id="h").items() if k != "amount"})
    messages = [
        (10, arrow(r(id="a"), r(id="b", quantity="9" * 27), r(id="c"))),  # Arrow, its record 1 too big
        (11, json_lines(r(id="d"))),  # JSON Lines (an older processor, the legacy engine, faust)
        (12, arrow(r(id="e", quantity="-2"), r(id="f"))),  # Arrow, its record 0 negative
        (13, b"\xff\xff\xff\xff\x08\x00\x00\x00garbage!"),  # claims to be Arrow, is not
        (14, b"\n".join([orjson.dumps(r(id="g")), missing_amount])),  # JSON, its record 1 incomplete
    ]
    for offset, value in messages:
        sink.rated.add(value, Position(topic, 2, offset))
    sink.ranges[(topic, 2)] = [10, 14]
    assert len(sink.rated) == 9
    assert flush_within(sink) == [True]
    assert [[(tp.topic, tp.partition, tp.offset) for tp in c] for c in counting.commits] == [[(topic, 2, 15)]]
    ids = landed_ids(chdb_client, db)
    assert ids == [("a",), ("c",), ("d",), ("f",), ("g",)]
    rows = sink_dead_letters(chdb_client, db)
    assert [row[:6] for row in rows] == [
        (10, 1, "sink", "quantity", "cloudco", "b"),
        (12, 0, "sink", "quantity", "cloudco", "e"),
        (13, 0, "sink", "", "", ""),
        (14, 1, "sink", "amount", "cloudco", "h"),
    ]
    reasons = {row[0]: row[6] for row in rows}
    assert "Decimal value is too big" in reasons[10] and "quantity_not_negative" in reasons[12]
    assert "unreadable Arrow IPC stream" in reasons[13]
    # an Arrow row's dead letter shows the record as its JSON text
    assert orjson.loads(rows[0][7]) == r(id="b", quantity="9" * 27)
    assert sink.state.refused == 4 and sink.state.rows == 5
    assert sink.state.health()[0] is True


@pytest.mark.kafka
def test_the_running_sink_lands_arrow_and_json_messages_as_written(chdb_client, db, kafka_settings) -> None:
    land_replayed_records(chdb_client, db, kafka_settings, arrow, json_lines)
