"""Contracts between the stream processor, the ClickHouse sink and period close."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

if TYPE_CHECKING:  # pyarrow is imported on first use: the API and most CLI commands never need it
    import pyarrow as pa

log = logging.getLogger("meterstream.rated")

# A `rated-usage` message carries one or more RatedUsage records, all from the same input partition,
# in one of two forms, told apart by the first bytes (`is_arrow`):
# - JSON Lines (objects separated by "\n"; `pack`): the legacy and faust engines write these, and
#   older topics hold them; a message of one record is valid too (the faust engine sends those);
# - an Arrow IPC stream (`pack_rows`): the columnar processor's form, one record batch per message,
#   columns as `arrow_schema()` defines them; the sink inserts these as Arrow, without parsing text.
# Packing a batch's records into few messages cuts the per-message cost of producing, storing and
# consuming them (see README, Performance). Read either form with `unpack`.
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
    """The encoded records of one JSON Lines `rated-usage` message (blank lines skipped)."""
    return [line for line in value.split(b"\n") if line.strip()]


def unpack(value: bytes) -> list[RatedUsage]:
    """The records of one `rated-usage` message, JSON Lines or Arrow."""
    if is_arrow(value):
        return arrow_records(read_arrow(value))
    return [orjson.loads(line) for line in record_lines(value)]


def record_count(value: bytes) -> int:
    """How many records a `rated-usage` message holds, without decoding its values."""
    if is_arrow(value):
        return read_arrow(value).num_rows
    return value.count(b"\n") + 1


# ---- the Arrow form --------------------------------------------------------------------------------
#
# One column per RatedUsage field, in the same order and under the same names, typed so that every
# value lands in ClickHouse's `rated_usage` column exactly as its JSON text would (aggregation/schema.sql):
# - text fields are strings, including the decimals (quantity, amount, cumulative): ClickHouse reads a
#   string into Decimal(38, s) with the same decimal parser as a JSON string (tests/aggregation), and
#   the text is the record's own, so decoding gives it back byte for byte;
# - `time` is timestamp[ms, UTC] (a string with `Z` is not read into DateTime64 from Arrow); only the
#   canonical text form `YYYY-MM-DDTHH:MM:SS.mmmZ` (schemas.event.format_time) is encoded, so the
#   decoded text is the original;
# - `dimensions` is map<string, string>, in the record's key order;
# - src_partition / src_offset are uint16 / uint64, the columns' own types (a value that does not fit
#   is not wrapped around: the batch is sent as JSON Lines instead, where ClickHouse judges it).
# Nulls stay nulls (ClickHouse refuses them, as it refuses a JSON null).
ARROW_MAGIC = b"\xff\xff\xff\xff"  # an IPC stream's first message starts with the continuation marker
_CANONICAL_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d\dZ$"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # %S of a millisecond timestamp prints "SS.mmm"
RATED_FIELDS: tuple[str, ...] = tuple(RatedUsage.__annotations__)
_TIME, _DIMENSIONS = RATED_FIELDS.index("time"), RATED_FIELDS.index("dimensions")

# A rated record as the columnar processor emits it: its values in RATED_FIELDS order.
RatedRow = tuple


@functools.cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of a rated record (see above); the one definition."""
    import pyarrow as pa

    types = {
        "time": pa.timestamp("ms", "UTC"),
        "dimensions": pa.map_(pa.string(), pa.string()),
        "src_partition": pa.uint16(),
        "src_offset": pa.uint64(),
    }
    return pa.schema([pa.field(name, types.get(name, pa.string())) for name in RATED_FIELDS])


def is_arrow(value: bytes) -> bool:
    """True for an Arrow IPC stream (JSON Lines start with `{`, never with 0xFF)."""
    return value[:4] == ARROW_MAGIC


def row_of(record: RatedUsage | dict[str, Any]) -> RatedRow:
    """A record as a row (values in RATED_FIELDS order)."""
    return tuple(record[name] for name in RATED_FIELDS)  # type: ignore[literal-required]


def _record_batch(rows: list[RatedRow]) -> pa.RecordBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = arrow_schema()
    columns = list(zip(*rows, strict=True))
    arrays = []
    for i, (field, values) in enumerate(zip(schema, columns, strict=True)):
        if i == _TIME:
            text = pa.array(values, pa.string())
            if not pc.all(pc.match_substring_regex(text, _CANONICAL_TIME)).as_py():
                raise ValueError("time: not in the canonical form YYYY-MM-DDTHH:MM:SS.mmmZ")
            arrays.append(text.cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _stream(batch: pa.RecordBatch) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


@functools.cache
def _stream_overhead() -> int:
    """The bytes of an IPC stream of `arrow_schema()` around its record batch: the schema message and the
    end-of-stream marker (the length of a stream with no batch)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, arrow_schema()).close()
    return len(sink.getvalue())


def stream_size(batch: pa.RecordBatch) -> int:
    """`len(_stream(batch))`, computed without writing the stream (the batch message's size, measured by
    Arrow, plus the schema message and end marker)."""
    import pyarrow as pa

    return _stream_overhead() + pa.ipc.get_record_batch_size(batch)


def _split(batch: pa.RecordBatch, max_bytes: int) -> list[bytes]:
    # the stream's size decides where to cut, as if it were written; only the parts that are sent are written
    size = stream_size(batch)
    n = batch.num_rows
    if size <= max_bytes or n == 1:
        return [_stream(batch)]
    step = -(-n // max(2, -(-size // max_bytes)))  # ceil(n / ceil(size / max_bytes)), at least 2 parts
    return [v for start in range(0, n, step) for v in _split(batch.slice(start, step), max_bytes)]


def pack_rows(rows: list[RatedRow], max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> list[bytes]:
    """Rows into `rated-usage` message values: Arrow IPC streams of one record batch each, at most
    `max_bytes` (a row larger than that gets a message of its own), order kept. Rows that do not fit
    the Arrow schema (a value of another type, a time not in canonical form, an offset out of range)
    are sent as JSON Lines (`pack`) instead, so that the sink and ClickHouse judge them as before."""
    if not rows:
        return []
    import pyarrow as pa

    try:
        batch = _record_batch(rows)
    except (pa.ArrowException, ArithmeticError, TypeError, ValueError) as exc:  # e.g. OverflowError, ArrowInvalid
        log.warning("%d rated records do not fit the Arrow schema (%s): sent as JSON Lines", len(rows), exc)
        return pack([orjson.dumps(dict(zip(RATED_FIELDS, row, strict=True))) for row in rows], max_bytes)
    return _split(batch, max_bytes)


def read_arrow(value: bytes) -> pa.Table:
    """The records of an Arrow `rated-usage` message as a table; ValueError (naming what is wrong) when
    the value is not an Arrow IPC stream of `arrow_schema()`."""
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(value)
        if not reader.schema.equals(arrow_schema()):
            raise ValueError(f"not the rated-usage Arrow schema: {reader.schema.to_string(show_schema_metadata=False)}")
        return reader.read_all()
    except (pa.ArrowException, OSError) as exc:  # a broken stream raises OSError ("Invalid flatbuffers message")
        raise ValueError(f"unreadable Arrow IPC stream: {exc}") from exc


def arrow_records(table: pa.Table | pa.RecordBatch) -> list[RatedUsage]:
    """Rated records (dicts, field order and values as in the JSON form) from a table of `arrow_schema()`."""
    import pyarrow.compute as pc

    columns = []
    for i, name in enumerate(RATED_FIELDS):
        column = table.column(name)
        if i == _TIME:
            columns.append(pc.strftime(column, _TIME_FORMAT).to_pylist())
        elif i == _DIMENSIONS:
            columns.append([None if m is None else dict(m) for m in column.to_pylist()])
        else:
            columns.append(column.to_pylist())
    return [dict(zip(RATED_FIELDS, row, strict=True)) for row in zip(*columns, strict=True)]  # type: ignore[misc]
