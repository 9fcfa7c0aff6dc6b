"""The sink with JSON rows `rated-usage` messages (the columnar processor's form, schemas.rated.pack_rows), alone
and next to JSON Lines and Arrow messages: every value lands exactly (expected values written by hand); a repeated
batch with its token adds nothing; refused rows of a JSON rows message are dead letters with ClickHouse's reason
and their record number while the rest lands; offsets commit once. Real embedded ClickHouse (chdb) and, where the
sink's consumer commits or runs, a real Kafka broker."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import orjson
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

from meterstream.aggregation.rows import RATED_FIELDS, Position, RecordBatch
from meterstream.aggregation.sink import ClickHouseSink, insert_records
from meterstream.schemas.rated import is_rows, pack_rows, row_of
from meterstream.schemas.rated_arrow import pack_arrow
from meterstream.schemas.settings import Settings

SELECT = (
    "SELECT tenant, event_id, customer, subject, meter, time, period, quantity, amount, cumulative, currency, "
    "plan, line, dimensions, source, src_partition, src_offset FROM {db}.rated_usage FINAL ORDER BY event_id"
)


def r(**changes: object) -> dict:
    return {**RECORD, **changes}


def rows(*records: dict) -> bytes:
    (value,) = pack_rows([row_of(x) for x in records])
    assert is_rows(value) and value.startswith(b"%d\n[" % len(records))
    return value


@pytest.fixture
def db(chdb_client) -> str:
    return new_database(chdb_client, "j")


def test_json_rows_land_with_every_value_exact(chdb_client, db: str) -> None:
    batch = RecordBatch("rated_usage", RATED_FIELDS)
    batch.add(
        rows(
            r(),
            r(id="evt-2", subject="", time="2026-10-31T23:59:59.999Z",
              quantity="99999999999999999999999999.999999999999", amount="-0.000000000000000001", cumulative="0",
              dimensions={}, src_partition=65535, src_offset=18446744073709551615),
            r(id="evt-3", customer="cust-\u00e9", meter="voice_seconds", line="voice_seconds|+49|peak", currency="EUR",
              dimensions={"destination": "+4930", "a\tb": "\u00e9" * 3, 'q"],[': "\n"}),
        )
    )  # fmt: skip
    assert len(batch) == 3 and not batch.values and not batch.arrow
    insert_records(chdb_client, db, batch, "tok-rows")
    assert chdb_client.query(SELECT.format(db=db)).result_rows == [
        ("cloudco", "evt-1", "org-7", "user-3", "api_calls", datetime(2026, 10, 12, 10, 11, 12, 345000), "2026-10",
         Decimal("12.5"), Decimal("1.25"), Decimal("100"), "USD", "cloud-standard", "api_calls",
         {"region": "eu-west-1"}, "gw-1", 3, 77),
        ("cloudco", "evt-2", "org-7", "", "api_calls", datetime(2026, 10, 31, 23, 59, 59, 999000), "2026-10",
         Decimal("99999999999999999999999999.999999999999"), Decimal("-0.000000000000000001"), Decimal("0"), "USD",
         "cloud-standard", "api_calls", {}, "gw-1", 65535, 18446744073709551615),
        ("cloudco", "evt-3", "cust-\u00e9", "user-3", "voice_seconds", datetime(2026, 10, 12, 10, 11, 12, 345000),
         "2026-10", Decimal("12.5"), Decimal("1.25"), Decimal("100"), "EUR", "cloud-standard",
         "voice_seconds|+49|peak", {"destination": "+4930", "a\tb": "\u00e9\u00e9\u00e9", 'q"],[': "\n"}, "gw-1", 3,
         77),
    ]  # fmt: skip


def test_a_batch_of_all_three_forms_lands_whole_once_and_again_with_its_token_adds_nothing(chdb_client, db) -> None:
    """JSON Lines, JSON rows and Arrow are three inserts, each with its own token derived from the batch's."""
    for _ in range(3):
        batch = RecordBatch("rated_usage", RATED_FIELDS)
        batch.add(b"\n".join(orjson.dumps(x) for x in (r(id="j1"), r(id="j2"))))
        batch.add(rows(r(id="r1"), r(id="r2")))
        batch.add(b"0\n")  # a message of no rows (the processor sends none) adds nothing
        batch.add(rows(r(id="r3")))
        (arrow,) = pack_arrow([row_of(r(id="a1"))])
        batch.add(arrow)
        assert len(batch) == 6
        insert_records(chdb_client, db, batch, "same-token")
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage") == 6  # raw rows, not FINAL


@pytest.mark.kafka
def test_one_flush_dead_letters_refused_json_rows_and_commits_once(chdb_client, db, kafka_settings) -> None:
    settings = Settings(**{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}."})
    sink = ClickHouseSink(settings, chdb_client)
    counting = CountingConsumer(sink.consumer)
    sink.consumer = counting  # type: ignore[assignment]
    topic = sink.topics.rated
    messages = [
        (20, rows(r(id="a"), r(id="b", quantity="9" * 27), r(id="c"))),  # its record 1 too big for Decimal(38, 12)
        (21, rows(r(id="d", quantity="-2"), r(id="e"))),  # its record 0 negative
        (22, b"2\n" + rows(r(id="f"), r(id="g")).split(b"\n", 1)[1][:-9]),  # cut short: not JSON
        (23, b"x7"),  # not a rated-usage form at all: ClickHouse refuses it as JSON
        (24, b"123456789012\n[]"),  # starts like JSON rows, without a record count and newline
        (25, rows(r(id="h"))),
    ]
    for offset, value in messages:
        sink.rated.add(value, Position(topic, 1, offset))
    sink.ranges[(topic, 1)] = [20, 25]
    assert len(sink.rated) == 3 + 2 + 2 + 1 + 1 + 1
    assert flush_within(sink) == [True]
    assert [[(tp.topic, tp.partition, tp.offset) for tp in c] for c in counting.commits] == [[(topic, 1, 26)]]
    ids = landed_ids(chdb_client, db)
    assert ids == [("a",), ("c",), ("e",), ("h",)]
    letters = sink_dead_letters(chdb_client, db)
    assert [row[:6] for row in letters] == [
        (20, 1, "sink", "quantity", "cloudco", "b"),
        (21, 0, "sink", "quantity", "cloudco", "d"),
        (22, 0, "sink", "", "", ""),
        (23, 0, "sink", "", "", ""),
        (24, 0, "sink", "", "", ""),
    ]
    reasons = {row[0]: row[6] for row in letters}
    assert "Decimal value is too big" in reasons[20] and "quantity_not_negative" in reasons[21]
    assert "no record count" in reasons[24]
    # a refused row's dead letter shows the record as its JSON object
    assert orjson.loads(letters[0][7]) == r(id="b", quantity="9" * 27)
    assert letters[2][7].startswith("2\n") and letters[4][7] == "123456789012\n[]"  # whole messages, as they came
    assert sink.state.refused == 5 and sink.state.rows == 4


@pytest.mark.kafka
def test_the_running_sink_lands_json_rows_as_written(chdb_client, db, kafka_settings) -> None:
    land_replayed_records(chdb_client, db, kafka_settings, rows)


@pytest.mark.kafka
def test_a_refused_json_row_next_to_json_lines_loses_none_of_the_good_ones(chdb_client, db, kafka_settings) -> None:
    """One flush of a JSON Lines message and a JSON rows message whose record 1 ClickHouse refuses: the refused
    record is found among the rows turned into lines, and every good record lands, those of the JSON rows message
    too (they must not be re-inserted under a token an earlier insert of the same flush already used)."""
    settings = Settings(**{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}."})
    sink = ClickHouseSink(settings, chdb_client)
    topic = sink.topics.rated
    sink.rated.add(orjson.dumps(r(id="l1")), Position(topic, 0, 5))
    sink.rated.add(rows(r(id="k1"), r(id="k2", quantity="-1"), r(id="k3")), Position(topic, 0, 6))
    sink.ranges[(topic, 0)] = [5, 6]
    assert flush_within(sink) == [True]
    ids = landed_ids(chdb_client, db)
    assert ids == [("k1",), ("k3",), ("l1",)]
    letters = chdb_client.query(f"SELECT offset, record, event_id FROM {db}.dead_letters FINAL").result_rows
    assert letters == [(6, 1, "k2")]
