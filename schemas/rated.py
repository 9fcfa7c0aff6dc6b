"""Contracts between the stream processor, the ClickHouse sink and period close."""

from __future__ import annotations

from typing import Any, TypedDict

import orjson

# A `rated-usage` message carries one or more RatedUsage records as JSON Lines (objects separated by
# "\n"), all from the same input partition. Packing a processor batch's records into few messages cuts
# the per-message cost of producing, storing and consuming them (see README, Performance); a message of
# one record is valid too (the faust engine sends those). Read with `unpack`, write with `pack`.
RATED_MESSAGE_MAX_BYTES = 256 * 1024  # well under Kafka's default 1 MB message limit


class RatedUsage(TypedDict):
    """One deduplicated, rated event on the `rated-usage` topic (all money and quantities as strings).

    Deterministic: the same input event and state give byte-identical output, so a replay is harmless.
    """

    tenant: str
    id: str
    customer: str
    subject: str
    meter: str
    time: str  # RFC 3339, milliseconds, UTC
    period: str  # YYYY-MM, the UTC calendar month of `time`
    quantity: str
    amount: str  # unrounded streaming amount: delta of the period total this event caused
    cumulative: str  # the customer's period quantity for this meter after this event
    currency: str
    plan: str
    line: str  # invoice line grouping key (the meter, or a finer telecom key)
    dimensions: dict[str, str]
    source: str
    src_partition: int
    src_offset: int


class DeadLetter(TypedDict):
    """An input that could not be accepted or rated: kept with the reason, never dropped."""

    stage: str  # "parse" | "rate"
    field: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None
    raw: str  # the original bytes, as text (invalid UTF-8 replaced)
    event_id: str | None
    tenant: str | None


def dumps(record: RatedUsage | DeadLetter | dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def pack(lines: list[bytes], max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> list[bytes]:
    """Encoded records (one JSON object each, no newline inside) into message values of at most
    `max_bytes` (a record larger than that gets a message of its own), order kept."""
    out: list[bytes] = []
    start = size = 0
    for i, line in enumerate(lines):
        if size and size + len(line) + 1 > max_bytes:
            out.append(b"\n".join(lines[start:i]))
            start, size = i, 0
        size += len(line) + 1
    if start < len(lines):
        out.append(b"\n".join(lines[start:]))
    return out


def record_lines(value: bytes) -> list[bytes]:
    """The encoded records of one `rated-usage` message (blank lines skipped)."""
    return [line for line in value.split(b"\n") if line.strip()]


def unpack(value: bytes) -> list[RatedUsage]:
    """The records of one `rated-usage` message."""
    return [orjson.loads(line) for line in record_lines(value)]


def record_count(value: bytes) -> int:
    """How many records a `rated-usage` message holds, without decoding it."""
    return value.count(b"\n") + 1
