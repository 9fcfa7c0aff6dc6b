"""Records ClickHouse refuses become dead letters; the rest of the block lands; nothing stalls (issue #12).

Real embedded ClickHouse (chdb) and, where the sink loop runs, a real Kafka broker. The limits come from
the table definitions, not from the code: Decimal(38, 12) holds 38 - 12 = 26 integer digits,
Decimal(38, 18) 20; src_offset is UInt64; quantities are never negative (CHECK constraints).
"""

from __future__ import annotations

import orjson
import pytest
from sink_helpers import RECORD, CountingConsumer, drain, flush_within, new_database

from meterstream.aggregation.refusals import NullProbe, is_data_error, refused_lines
from meterstream.aggregation.rows import INSERT_SETTINGS, RATED_FIELDS, Position, store_field, store_reason
from meterstream.aggregation.sink import ClickHouseSink
from meterstream.schemas.settings import Settings


def rec(**changes: object) -> bytes:
    return orjson.dumps({**RECORD, **changes})


def without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in RECORD.items() if k != name})


@pytest.fixture
def db(chdb_client) -> str:
    return new_database(chdb_client, "r")


# (case, record, the field the dead letter names, words of ClickHouse's message)
REFUSED = [
    ("31-digit quantity", rec(quantity="1" * 31), "quantity", "Decimal value is too big"),
    ("27 integer digits: one over Decimal(38,12)", rec(quantity="9" * 27), "quantity", "Decimal value is too big"),
    ("21 integer digits: one over Decimal(38,18)", rec(amount="1" * 21), "amount", "Decimal value is too big"),
    ("bad JSON", b'{"tenant": "cloudco", "id": "broken"', "", "Unexpected end of stream"),
    ("not an object", b"[1, 2]", "", "Cannot parse input"),
    ("number for a string", rec(tenant=5), "tenant", "Cannot parse JSON string"),
    ("object for a string", rec(customer={"a": 1}), "customer", "Cannot parse JSON string"),
    ("text for a decimal", rec(quantity="1,5"), "quantity", "Cannot parse input"),
    ("text for an integer", rec(src_offset="x"), "src_offset", "Cannot parse input"),
    ("negative unsigned", rec(src_offset=-1), "src_offset", "Unsigned type must not contain '-'"),
    ("bad timestamp", rec(time="yesterday"), "time", "Cannot read DateTime"),
    ("list for a map", rec(dimensions=["a"]), "dimensions", "Cannot parse input"),
    ("number in a map of strings", rec(dimensions={"a": 1}), "dimensions", "Cannot parse JSON string"),
    ("missing field", without("amount"), "amount", "Cannot insert NULL value into a column `amount`"),
    ("null field", rec(quantity=None), "", "Cannot parse input"),
    ("negative quantity", rec(quantity="-1"), "quantity", "quantity_not_negative"),
    ("negative cumulative", rec(cumulative="-0.5"), "cumulative", "cumulative_not_negative"),
]
ACCEPTED = [
    rec(id="max-quantity", quantity="9" * 26 + "." + "9" * 12),  # exactly Decimal(38, 12)'s range
    rec(id="max-amount", amount="9" * 20),
    rec(id="negative-amount", amount="-3.75"),  # a volume tier change can lower the period's charge
    rec(id="zero", quantity="0", cumulative="0"),
]


@pytest.mark.parametrize(("case", "line", "field", "words"), REFUSED, ids=[c[0] for c in REFUSED])
def test_each_refusal_class_is_found_with_the_stores_reason(chdb_client, db, case, line, field, words) -> None:
    lines = [ACCEPTED[0], line, ACCEPTED[1]]
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, INSERT_SETTINGS["rated_usage"]) as probe:
        bad = refused_lines(probe, lines)
    assert list(bad) == [1], case
    assert words in bad[1]
    assert store_field(bad[1], RATED_FIELDS) == field
    reason = store_reason(bad[1])
    assert reason.startswith("ClickHouse code ") and words in reason and "/tmp/" not in reason
    # the probe table is gone: nothing but the schema's tables is left
    tables = chdb_client.query(f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE '%probe%'")
    assert tables.result_rows == []


def test_the_boundaries_of_the_columns_are_accepted(chdb_client, db) -> None:
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, INSERT_SETTINGS["rated_usage"]) as probe:
        assert probe(ACCEPTED) is None
        assert refused_lines(probe, ACCEPTED) == {}


def test_several_refused_records_in_one_block_are_all_found(chdb_client, db) -> None:
    goods = [rec(id=f"g{i}") for i in range(40)]
    lines = list(goods)
    bad_at = {3: REFUSED[0][1], 17: REFUSED[13][1], 18: REFUSED[15][1], 39: REFUSED[3][1]}
    for i, line in sorted(bad_at.items()):
        lines.insert(i, line)
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, INSERT_SETTINGS["rated_usage"]) as probe:
        bad = refused_lines(probe, lines)
        assert probe.inserts < len(lines) // 2  # a few probes per refused record, not one per record (19 here)
    assert sorted(bad) == sorted(bad_at)


def test_a_string_over_the_stores_size_limit_is_refused_too(chdb_client, db) -> None:
    """ClickHouse's String has no length limit; its one size limit on JSON input is the object size
    (input_format_json_max_object_size, 512 MiB by default: far above Kafka's message size). Lowered
    here to show that class takes the same path."""
    settings = {**INSERT_SETTINGS["rated_usage"], "input_format_json_max_object_size": 4096}
    lines = [ACCEPTED[0], rec(subject="x" * 10_000), ACCEPTED[1]]
    with NullProbe(chdb_client, db, "rated_usage", RATED_FIELDS, settings) as probe:
        bad = refused_lines(probe, lines)
    assert list(bad) == [1]


def test_only_data_errors_count_as_refusals() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    assert is_data_error(DatabaseError("Code: 69. DB::Exception: Decimal value is too big", code=69))
    assert is_data_error(DatabaseError("Code: 27. DB::Exception: Cannot parse input"))  # code in the text only
    assert not is_data_error(DatabaseError("Code: 241. Memory limit exceeded", code=241))
    assert not is_data_error(DatabaseError("Code: 115. Unknown setting", code=115))  # the query, not the rows
    assert not is_data_error(OperationalError("connection refused"))
    assert not is_data_error(ConnectionError("ClickHouse unavailable (injected)"))


@pytest.mark.kafka
def test_one_flush_inserts_the_rest_dead_letters_the_refused_and_commits_once(chdb_client, db, kafka_settings) -> None:
    settings = Settings(**{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}."})
    sink = ClickHouseSink(settings, chdb_client)
    counting = CountingConsumer(sink.consumer)
    sink.consumer = counting  # type: ignore[assignment]
    rated, dead = sink.topics.rated, sink.topics.dead_letters
    # rated-usage partition 2: message 10 packs [ok, 31 digits, ok], message 11 a negative quantity,
    # message 12 packs [ok, missing amount]; dead-letters partition 1: offset 5 is junk, 6 a valid one
    messages = [
        (Position(rated, 2, 10), b"\n".join([rec(id="a"), rec(id="b", quantity="1" * 31), rec(id="c")])),
        (Position(rated, 2, 11), rec(id="d", quantity="-2")),
        (Position(rated, 2, 12), b"\n".join([rec(id="e"), orjson.dumps({**RECORD, "id": "f", "amount": None})])),
        (Position(dead, 1, 5, b"t/c"), b"not a dead letter"),
        (
            Position(dead, 1, 6, b"t/c"),
            orjson.dumps(
                {"stage": "rate", "field": "meter", "reason": "no price", "topic": "usage-events", "partition": 1,
                 "offset": 9, "key": "t/c", "raw": "{}", "event_id": "x9", "tenant": "t"}
            ),
        ),
    ]  # fmt: skip
    for pos, value in messages:
        (sink.rated if pos.topic == rated else sink.dead).add(value, pos)
        span = sink.ranges.setdefault((pos.topic, pos.partition), [pos.offset, pos.offset])
        span[1] = pos.offset
    assert flush_within(sink) == [True]
    assert len(counting.commits) == 1
    assert sorted((tp.topic, tp.partition, tp.offset) for tp in counting.commits[0]) == sorted(
        [(rated, 2, 13), (dead, 1, 7)]
    )
    ids = chdb_client.query(f"SELECT event_id FROM {db}.rated_usage FINAL ORDER BY event_id").result_rows
    assert ids == [("a",), ("c",), ("e",)]
    rows = chdb_client.query(
        f"SELECT stage, topic, partition, offset, record, field, tenant, event_id, kafka_key, reason "
        f"FROM {db}.dead_letters FINAL ORDER BY topic, partition, offset, record"
    ).result_rows
    by_place = {(r[1], r[2], r[3], r[4]): r for r in rows}
    assert set(by_place) == {
        (rated, 2, 10, 1), (rated, 2, 11, 0), (rated, 2, 12, 1), (dead, 1, 5, 0), ("usage-events", 1, 9, 0)
    }  # fmt: skip
    assert by_place[(rated, 2, 10, 1)][:9] == ("sink", rated, 2, 10, 1, "quantity", "cloudco", "b", "")
    assert "Decimal value is too big" in by_place[(rated, 2, 10, 1)][9]
    assert by_place[(rated, 2, 11, 0)][5:8] == ("quantity", "cloudco", "d")
    assert "quantity_not_negative" in by_place[(rated, 2, 11, 0)][9]
    assert by_place[(rated, 2, 12, 1)][7] == "f"
    assert by_place[(dead, 1, 5, 0)][:9] == ("sink", dead, 1, 5, 0, "", "", "", "t/c")
    assert by_place[("usage-events", 1, 9, 0)][:9] == ("rate", "usage-events", 1, 9, 0, "meter", "t", "x9", "t/c")
    assert sink.state.refused == 4 and sink.state.rows == 4  # 3 rated + the processor's dead letter
    assert sink.state.health()[0] is True


@pytest.mark.kafka
def test_the_running_sink_lands_everything_after_a_refused_record(chdb_client, db, kafka_settings) -> None:
    """The reported bug: one 31-digit quantity made the sink retry its block forever, so nothing after it
    landed and the group's offsets never moved. Now the next messages land and the lag drains to 0."""
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics

    settings = Settings(
        **{**kafka_settings.model_dump(), "clickhouse_database": db, "topic_prefix": f"{db}.", "partitions": 1}
    )
    ensure_topics(settings)
    producer = make_producer(settings)
    topic = settings.topic("rated-usage")
    producer.produce(topic, b"\n".join([rec(id="a"), rec(id="big", quantity="1" * 31)]), partition=0)
    for i in range(5):
        producer.produce(topic, rec(id=f"after-{i}"), partition=0)
    assert producer.flush(30) == 0

    sink = ClickHouseSink(settings, chdb_client)
    assert drain(sink, settings, [topic, settings.topic("dead-letters")]) == (0, [])
    count = chdb_client.command(f"SELECT count() FROM {db}.rated_usage FINAL")
    assert count == 6  # a + after-0..4
    dl = chdb_client.query(f"SELECT event_id, field, offset, record FROM {db}.dead_letters FINAL").result_rows
    assert dl == [("big", "quantity", 0, 1)]
