"""The runner's conversion of confluent-kafka's messages into the columnar path's `Message` tuples
(processor/runner.py `to_messages`), on real `confluent_kafka.Message` objects."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Message as KafkaMessage

from meterstream.processor.columnar import Message
from meterstream.processor.runner import to_messages

CREATE_TIME, NOT_AVAILABLE = 1, 0


def kafka(p: int, offset: int, value: bytes | None = b"{}", key: bytes | None = b"t/c", ts=(CREATE_TIME, 1_000), **kw):
    return KafkaMessage(topic="usage", partition=p, offset=offset, key=key, value=value, timestamp=ts, **kw)


def test_fields_and_order_are_kept() -> None:
    msgs = [kafka(2, 7, b'{"a":1}', b"k1", (CREATE_TIME, 5)), kafka(0, 3, None, None, (2, 6)), kafka(2, 8)]
    assert to_messages(msgs, {0, 2}) == [
        Message(2, 7, b"k1", b'{"a":1}', 5),
        Message(0, 3, None, None, 6),
        Message(2, 8, b"t/c", b"{}", 1_000),
    ]
    assert all(type(m) is Message for m in to_messages(msgs, {0, 2}))
    assert to_messages(msgs, {0, 2})[0].timestamp_ms == 5  # read by name, as the columnar path reads it


def test_a_message_without_a_timestamp_gets_none_beside_ones_with() -> None:
    msgs = [kafka(0, 0, ts=(NOT_AVAILABLE, 0)), kafka(0, 1, ts=(CREATE_TIME, 42))]
    assert [m.timestamp_ms for m in to_messages(msgs, {0})] == [None, 42]


def test_messages_of_partitions_not_held_are_left_out() -> None:
    msgs = [kafka(0, 0), kafka(1, 0), kafka(0, 1), kafka(3, 9)]
    assert [(m.partition, m.offset) for m in to_messages(msgs, {0})] == [(0, 0), (0, 1)]
    assert to_messages(msgs, set()) == []


def test_a_message_with_an_error_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    error = KafkaError(KafkaError._PARTITION_EOF)
    msgs = [kafka(0, 0), kafka(0, 1, error=error), kafka(0, 2)]
    with caplog.at_level(logging.WARNING, logger="meterstream.processor"):
        out = to_messages(msgs, {0})
    assert [m.offset for m in out] == [0, 2]
    assert "consumer error" in caplog.text
