"""The runner's reading of confluent-kafka's messages into the columnar path's columns per partition
(processor/runner.py `kafka_columns`), on real `confluent_kafka.Message` objects."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Message as KafkaMessage

from meterstream.processor.columnar import Message, columns_of
from meterstream.processor.runner import kafka_columns

CREATE_TIME, NOT_AVAILABLE = 1, 0


def kafka(p: int, offset: int, value: bytes | None = b"{}", key: bytes | None = b"t/c", ts=(CREATE_TIME, 1_000), **kw):
    return KafkaMessage(topic="usage", partition=p, offset=offset, key=key, value=value, timestamp=ts, **kw)


def table(columns) -> dict:
    return {p: (c.offsets, c.values, c.timestamps) for p, c in columns.items()}


def test_fields_and_order_are_kept_per_partition() -> None:
    msgs = [kafka(2, 7, b'{"a":1}', b"k1", (CREATE_TIME, 5)), kafka(0, 3, None, None, (2, 6)), kafka(2, 8)]
    columns = kafka_columns(msgs, {0, 2})
    assert table(columns) == {2: ([7, 8], [b'{"a":1}', b"{}"], [5, 1_000]), 0: ([3], [None], [6])}
    assert columns[2].sources == [msgs[0], msgs[2]]  # the consumer's own messages, not copies
    # a source made whole, for the per-message specification: every field, the key too
    assert columns[2].message(columns[2].sources[0]) == Message(2, 7, b"k1", b'{"a":1}', 5)
    assert type(columns[0].message(columns[0].sources[0])) is Message
    assert columns[0].message(columns[0].sources[0]) == Message(0, 3, None, None, 6)


def test_runs_of_partitions_interleaved_are_gathered_in_order() -> None:
    msgs = [kafka(1, 0), kafka(1, 1), kafka(0, 5), kafka(1, 2), kafka(0, 6), kafka(0, 7), kafka(1, 3)]
    assert {p: c.offsets for p, c in kafka_columns(msgs, {0, 1}).items()} == {1: [0, 1, 2, 3], 0: [5, 6, 7]}


def test_a_message_without_a_timestamp_gets_none_beside_ones_with() -> None:
    msgs = [kafka(0, 0, ts=(NOT_AVAILABLE, 0)), kafka(0, 1, ts=(CREATE_TIME, 42))]
    assert kafka_columns(msgs, {0})[0].timestamps == [None, 42]
    assert kafka_columns(msgs, {0})[0].message(msgs[0]).timestamp_ms is None


def test_messages_of_partitions_not_held_are_left_out() -> None:
    msgs = [kafka(0, 0), kafka(1, 0), kafka(0, 1), kafka(3, 9)]
    assert {p: c.offsets for p, c in kafka_columns(msgs, {0}).items()} == {0: [0, 1]}
    assert kafka_columns(msgs, set()) == {}


def test_a_message_with_an_error_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    error = KafkaError(KafkaError._PARTITION_EOF)
    msgs = [kafka(0, 0), kafka(0, 1, error=error), kafka(0, 2)]
    with caplog.at_level(logging.WARNING, logger="meterstream.processor"):
        out = kafka_columns(msgs, {0})
    assert out[0].offsets == [0, 2]
    assert "consumer error" in caplog.text


def test_message_tuples_give_the_same_columns() -> None:
    """`columns_of` (ColumnarStep.run's input, `Message` tuples) reads what `kafka_columns` reads."""
    msgs = [kafka(2, 7, b'{"a":1}', b"k1", (CREATE_TIME, 5)), kafka(0, 3, None, None, (NOT_AVAILABLE, 0)), kafka(2, 8)]
    tuples = [Message(2, 7, b"k1", b'{"a":1}', 5), Message(0, 3, None, None, None), Message(2, 8, b"t/c", b"{}", 1_000)]
    assert table(columns_of(tuples)) == table(kafka_columns(msgs, {0, 2}))
    assert columns_of(tuples)[0].message(tuples[1]) is tuples[1]
