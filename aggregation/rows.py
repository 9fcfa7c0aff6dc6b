"""Kafka records as ClickHouse rows: the JSON fields the sink inserts, and the check that finds a bad record.

The sink does not decode records in Python: it joins the message values into one JSONEachRow block and
ClickHouse parses it (a C++ parser, ~4x less CPU than building Decimal columns in Python). The tables
take the records' field names as they are (`rated_usage.id` and `dead_letters.key` are EPHEMERAL input
columns feeding `event_id` and `kafka_key`), so the topic contracts in `schemas.rated` stay the ones
consumers see. `problem()` is only called when ClickHouse refuses a block, to find and set aside the
record(s) it cannot parse.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from meterstream.schemas.rated import DeadLetter, RatedUsage, record_count

RATED_FIELDS: tuple[str, ...] = tuple(RatedUsage.__annotations__)
DEAD_LETTER_FIELDS: tuple[str, ...] = tuple(DeadLetter.__annotations__)

# Stored columns of rated_usage, in table order (for direct column inserts: tests, benchmarks).
RATED_COLUMNS = (
    "tenant",
    "event_id",
    "customer",
    "subject",
    "meter",
    "time",
    "period",
    "quantity",
    "amount",
    "cumulative",
    "currency",
    "plan",
    "line",
    "dimensions",
    "source",
    "src_partition",
    "src_offset",
)

_DECIMALS = ("quantity", "amount", "cumulative")
_INTS = {"rated_usage": ("src_partition", "src_offset"), "dead_letters": ("partition", "offset")}
_NULLABLE = {"key", "event_id", "tenant"}


class RecordBatch:
    """Message values for one table, in arrival order, inserted as one JSONEachRow block."""

    def __init__(self, table: str, fields: tuple[str, ...]) -> None:
        self.table = table
        self.fields = fields
        self.packed = table == "rated_usage"  # a rated-usage message may pack several records, one per line
        self.values: list[bytes] = []
        self.rows = 0

    def add(self, value: bytes) -> None:
        self.values.append(value)
        self.rows += record_count(value) if self.packed else 1

    def __len__(self) -> int:
        """Records held (not messages)."""
        return self.rows

    def block(self) -> bytes:
        return b"\n".join(self.values)

    def clear(self) -> None:
        self.values = []
        self.rows = 0


def problem(batch: RecordBatch, value: bytes) -> str | None:
    """Why ClickHouse would refuse this record (None: it looks insertable)."""
    try:
        record: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict):
        return "not a JSON object"
    for name in batch.fields:
        v = record.get(name)
        if v is None and name not in _NULLABLE:
            return f"{name}: required"
    for name in _INTS.get(batch.table, ()):
        if type(record[name]) is not int or record[name] < 0:
            return f"{name}: must be a non-negative integer"
    if batch.table == "rated_usage":
        for name in _DECIMALS:
            try:
                Decimal(record[name])
            except (InvalidOperation, TypeError, ValueError):
                return f"{name}: not a decimal"
        try:
            datetime.fromisoformat(record["time"])
        except (TypeError, ValueError):
            return "time: not an ISO 8601 timestamp"
        if not isinstance(record["dimensions"], dict):
            return "dimensions: not an object"
    return None
