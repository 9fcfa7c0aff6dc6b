"""A dead letter read back from the topic: the fields are `schemas.rated.DeadLetter`'s, defined once."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from typing import TypedDict

import orjson
import pytest

from meterstream.ingest.dlq import DeadLetterRecord, parse_record, record_type
from meterstream.schemas.rated import DeadLetter

# A dead letter as the processor writes it on the topic (hand-written, every field).
ON_TOPIC = (
    b'{"stage":"rate","field":"customer","reason":"no plan for customer nobody/c1","topic":"usage-events",'
    b'"partition":2,"offset":17,"key":"nobody/c1","raw":"{\\"id\\":\\"e1\\"}","event_id":"e1","tenant":"nobody"}'
)


def test_record_fields_are_the_dead_letter_s_plus_its_topic_position() -> None:
    assert [f.name for f in fields(DeadLetterRecord)] == [
        "stage", "field", "reason", "topic", "partition", "offset", "key", "raw", "event_id", "tenant",
        "dlq_partition", "dlq_offset",
    ]  # fmt: skip


def test_record_follows_the_letter_it_is_derived_from() -> None:
    """A field added to the letter appears in the record: no second list to keep in step."""

    class Letter(TypedDict):
        stage: str
        topic: str
        partition: int
        offset: int
        amount_hint: str | None

    cls = record_type(Letter)
    assert [f.name for f in fields(cls)] == ["stage", "topic", "partition", "offset", "amount_hint", "dlq_partition",
                                             "dlq_offset"]  # fmt: skip
    r = cls(stage="parse", topic="u", partition=1, offset=9, amount_hint=None, dlq_partition=0, dlq_offset=3)
    assert (r.source, r.position) == (("u", 1, 9), "1:9")


def test_on_topic_json_reads_back_unchanged() -> None:
    r = parse_record(ON_TOPIC, 2, 40)
    assert r is not None
    assert (r.stage, r.field, r.tenant, r.event_id, r.key, r.raw) == (
        "rate", "customer", "nobody", "e1", "nobody/c1", '{"id":"e1"}'
    )  # fmt: skip
    assert (r.source, r.position, r.dlq_partition, r.dlq_offset) == (("usage-events", 2, 17), "2:17", 2, 40)
    d = r.to_dict()
    assert orjson.dumps({k: d[k] for k in DeadLetter.__annotations__}) == ON_TOPIC  # same JSON, same key order
    assert list(d)[-2:] == ["dlq_partition", "dlq_offset"]
    with pytest.raises(FrozenInstanceError):
        r.stage = "parse"  # type: ignore[misc]


def test_not_a_dead_letter_is_ignored() -> None:
    assert parse_record(b'{"stage": "rate"}', 0, 1) is None  # fields missing
    assert parse_record(b"not json", 0, 2) is None
