"""Contracts between the stream processor, the ClickHouse sink and period close."""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import orjson

log = logging.getLogger("meterstream.rated")

# A `rated-usage` message carries one or more RatedUsage records, all from the same input partition,
# in one of three forms, told apart by the first byte (`is_rows`, `is_arrow`):
# - JSON rows (`pack_rows`, the columnar processor's form): the number of records in ASCII digits and a
#   newline, then each record as a JSON array of its values in RATED_FIELDS order, the arrays separated by
#   commas: `2\n["acme","e-1",...,0,7],["acme","e-2",...,0,8]`. The sink joins the messages' rows with commas
#   into one `JSONCompactEachRow` block that ClickHouse parses; producing them is one `orjson.dumps` per
#   chunk of rows (~0.15 µs per row here, against ~1.4 for the Arrow form: bench/sink_format.py);
# - JSON Lines (objects separated by "\n"; `pack`): the legacy and faust engines write these, and
#   older topics hold them; a message of one record is valid too (the faust engine sends those);
# - an Arrow IPC stream (schemas/rated_arrow.py): what the columnar processor sent before the JSON rows
#   form; older topics hold it, and the sink still reads and inserts it.
# Packing a batch's records into few messages cuts the per-message cost of producing, storing and
# consuming them (see README, Performance). Read any form with `unpack`.
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
    """The encoded records of one JSON Lines or JSON rows `rated-usage` message, each as a JSON object (blank
    lines skipped; the rows of a JSON rows message become objects; one that cannot be read is one line, as is)."""
    if is_rows(value):
        try:
            rows = orjson.loads(b"[" + rows_body(value) + b"]")
            return [orjson.dumps(dict(zip(RATED_FIELDS, row, strict=True))) for row in rows]
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return [value]
    return [line for line in value.split(b"\n") if line.strip()]


def unpack(value: bytes) -> list[RatedUsage]:
    """The records of one `rated-usage` message, in any of its forms."""
    from meterstream.schemas.rated_arrow import arrow_records, is_arrow, read_arrow

    if is_arrow(value):
        return arrow_records(read_arrow(value))
    return [orjson.loads(line) for line in record_lines(value)]


def record_count(value: bytes) -> int:
    """How many records a `rated-usage` message holds, without decoding its values."""
    from meterstream.schemas.rated_arrow import is_arrow, read_arrow

    if is_rows(value):
        return rows_count(value)
    if is_arrow(value):
        return read_arrow(value).num_rows
    return value.count(b"\n") + 1


# ---- the JSON rows form --------------------------------------------------------------------------------

_ROWS_HEAD_MAX = 10  # the count's digits and its newline


def is_rows(value: bytes) -> bool:
    """True for a JSON rows message (it starts with its record count; JSON Lines start with `{`, Arrow with 0xFF)."""
    return value[:1].isdigit()


def rows_count(value: bytes) -> int:
    """The record count a JSON rows message states; ValueError when it states none."""
    end = value.find(b"\n", 0, _ROWS_HEAD_MAX + 1)
    if end < 1 or not value[:end].isdigit():
        raise ValueError("not a JSON rows message: no record count and newline at its start")
    return int(value[:end])


def rows_body(value: bytes) -> bytes:
    """A JSON rows message's records, the JSON arrays separated by commas (what `JSONCompactEachRow` reads)."""
    return value[value.index(b"\n") + 1 :]


def pack_rows(rows: list[RatedRow], max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> list[bytes]:
    """Rows (values in RATED_FIELDS order) into JSON rows message values of at most `max_bytes` each (a row
    larger than that gets a message of its own), order kept."""
    packer = RowPacker(max_bytes)
    packer.add(rows)
    return packer.values()


class RowPacker:
    """`pack_rows` over rows given in parts (the processor adds each chunk's rows right after rating them):
    each part is encoded when it is added, with one `orjson.dumps` of the part's list of rows (the JSON array
    of arrays, its brackets left out), and joined to the message being built if it fits there, else it starts
    the next message: a message holds whole parts, never splitting one that fits a message of its own. A part
    larger than a message may be is cut into pieces of as many rows as fit a message on average (each encoded
    again; a piece still too large is cut again, down to single rows)."""

    __slots__ = ("count", "max_bytes", "out", "parts", "size")

    def __init__(self, max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes - _ROWS_HEAD_MAX  # room for the count
        self.parts: list[memoryview] = []  # encoded rows of the message being built
        self.size = 0  # its bytes, separators included
        self.count = 0  # its rows
        self.out: list[bytes] = []

    def add(self, rows: list[RatedRow]) -> None:
        while rows:
            encoded = _dumps(rows)
            size = len(encoded) - 2
            if size <= self.max_bytes or len(rows) == 1:
                if self.parts and self.size + 1 + size > self.max_bytes:
                    self._cut()
                self.parts.append(memoryview(encoded)[1:-1])
                self.size += size + (1 if self.size else 0)
                self.count += len(rows)
                return
            fit = max(1, len(rows) * self.max_bytes // size)  # rows of a message, on average: fewer than len(rows)
            self.add(rows[:fit])
            rows = rows[fit:]

    def values(self) -> list[bytes]:
        """The message values of every part added, in order (the packer is then empty)."""
        self._cut()
        out, self.out = self.out, []
        return out

    def _cut(self) -> None:
        if self.parts:
            self.out.append(b"%d\n" % self.count + b",".join(self.parts))
            self.parts, self.size, self.count = [], 0, 0


_dumps = orjson.dumps


RATED_FIELDS: tuple[str, ...] = tuple(RatedUsage.__annotations__)
_TIME, _DIMENSIONS = RATED_FIELDS.index("time"), RATED_FIELDS.index("dimensions")

# A rated record as the columnar processor emits it: its values in RATED_FIELDS order.
RatedRow = tuple


def row_of(record: RatedUsage | dict[str, Any]) -> RatedRow:
    """A record as a row (values in RATED_FIELDS order)."""
    return tuple(record[name] for name in RATED_FIELDS)  # type: ignore[literal-required]
