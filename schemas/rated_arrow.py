"""The Arrow IPC form of `rated-usage` messages: what the columnar processor sent before the JSON rows form
(schemas/rated.py), kept so that the sink and the tools read topics written by earlier versions (`read_arrow`,
inserted as Arrow by the sink) and so that tests and benchmarks can write such messages (`pack_arrow`).

"""

from __future__ import annotations

import array
import functools
import logging
from typing import TYPE_CHECKING

import orjson

from meterstream.schemas.rated import (
    _DIMENSIONS,
    _TIME,
    RATED_FIELDS,
    RATED_MESSAGE_MAX_BYTES,
    RatedRow,
    RatedUsage,
    pack,
)

if TYPE_CHECKING:  # pyarrow is imported on first use
    import pyarrow as pa

log = logging.getLogger("meterstream.rated")

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


@functools.cache
def _row_type() -> pa.StructType:
    """The struct of one row as `_record_batch` converts it: the schema's fields, `time` as its text."""
    import pyarrow as pa

    return pa.struct([pa.field(f.name, pa.string()) if i == _TIME else f for i, f in enumerate(arrow_schema())])


# The canonical time's bytes with every digit read as "0" (bytes.translate with _ZEROED_DIGITS).
_TIME_SHAPE = b"0000-00-00T00:00:00.000Z"
_ZEROED_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_TIME_ROWS_MAX = 65_536  # batches are at most a few thousand rows; larger ones are checked by the expression


@functools.cache
def _time_offsets() -> bytes:
    """The offsets buffer (int32, native byte order, as Arrow's) of 24-byte strings: 0, 24, 48, ..."""
    return array.array("i", range(0, 24 * (_TIME_ROWS_MAX + 1), 24)).tobytes()


def _all_canonical_times(text: pa.StringArray) -> bool:
    """True when every value of `text` is a time in the canonical form (what `_CANONICAL_TIME` matches), read
    from the array's buffers: no nulls, every value 24 bytes long (the offsets are 0, 24, 48, ...), and those
    bytes are ASCII digits where the form has digits and its own characters elsewhere. False says only that
    this test did not prove it (a null, a slice, another length or byte: the regular expression decides)."""
    n = len(text)
    if text.null_count or text.offset or n > _TIME_ROWS_MAX:
        return False
    _, offsets, data = text.buffers()
    if not _time_offsets().startswith(memoryview(offsets)[: 4 * (n + 1)]):
        return False
    return memoryview(data)[: 24 * n].tobytes().translate(_ZEROED_DIGITS) == _TIME_SHAPE * n


def _time_column(text: pa.StringArray) -> pa.Array:
    import pyarrow.compute as pc

    if not _all_canonical_times(text) and not pc.all(pc.match_substring_regex(text, _CANONICAL_TIME)).as_py():
        raise ValueError("time: not in the canonical form YYYY-MM-DDTHH:MM:SS.mmmZ")
    return text.cast(arrow_schema().field(_TIME).type)


def _record_batch(rows: list[RatedRow]) -> pa.RecordBatch:
    """The rows as one record batch of `arrow_schema()`. Arrow converts the rows (tuples) in one pass, as one
    struct array whose fields are the columns; anything else (rows that are not all tuples of the schema's
    width, a value that does not convert, a null row) goes through `_record_batch_by_columns`, which decides
    and raises as it always did. Both give the same arrays: Arrow converts each value with the same converter
    of its field's type either way (tests/schemas/test_rated_batch.py compares the IPC bytes)."""
    import pyarrow as pa

    if rows and type(rows[0]) is tuple:  # a list row would be read by Arrow as (name, value) pairs
        try:
            struct = pa.array(rows, _row_type())
        except Exception:  # the column-by-column conversion raises the error that counts
            return _record_batch_by_columns(rows)
        if isinstance(struct, pa.StructArray) and not struct.null_count:
            columns = struct.flatten()
            columns[_TIME] = _time_column(columns[_TIME])
            return pa.RecordBatch.from_arrays(columns, schema=arrow_schema())
    return _record_batch_by_columns(rows)


def _record_batch_by_columns(rows: list[RatedRow]) -> pa.RecordBatch:
    import pyarrow as pa

    schema = arrow_schema()
    columns = list(zip(*rows, strict=True))
    arrays = []
    for i, (field, values) in enumerate(zip(schema, columns, strict=True)):
        if i == _TIME:
            arrays.append(_time_column(pa.array(values, pa.string())))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the continuation marker and a zero length


@functools.cache
def _stream_frame() -> tuple[bytes, bytes]:
    """What an IPC stream of `arrow_schema()` holds around its record batch: the schema message before it and
    the end-of-stream marker after it (a stream with no batch is exactly the two)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, arrow_schema()).close()
    empty = sink.getvalue().to_pybytes()
    if not empty.endswith(_END_OF_STREAM):
        raise RuntimeError(f"an empty Arrow IPC stream does not end with the end-of-stream marker: {empty[-8:]!r}")
    return empty[: -len(_END_OF_STREAM)], _END_OF_STREAM


def _stream(batch: pa.RecordBatch) -> bytes:
    """The IPC stream of one record batch of `arrow_schema()`: the schema message, the batch's message (as the
    stream writer writes it: `RecordBatch.serialize`, default options) and the end-of-stream marker, joined
    once (the schema message is built once; tests/schemas/test_rated_batch.py compares with the writer's)."""
    head, end = _stream_frame()
    return b"".join((head, batch.serialize(), end))


def _stream_overhead() -> int:
    """The bytes of an IPC stream of `arrow_schema()` around its record batch: the schema message and the
    end-of-stream marker (the length of a stream with no batch)."""
    head, end = _stream_frame()
    return len(head) + len(end)


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


def pack_arrow(rows: list[RatedRow], max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> list[bytes]:
    """Rows into `rated-usage` message values: Arrow IPC streams of one record batch each, at most
    `max_bytes` (a row larger than that gets a message of its own), order kept. Rows that do not fit
    the Arrow schema (a value of another type, a time not in canonical form, an offset out of range)
    are sent as JSON Lines (`pack`) instead, so that the sink and ClickHouse judge them as before."""
    packer = ArrowPacker(max_bytes)
    packer.add(rows)
    return packer.values()


class ArrowPacker:
    """`pack_arrow` over rows given in parts: each part is converted to Arrow when it is added, and `values` joins
    the parts' record batches and cuts them into messages as `pack_arrow` cuts one. A part that does not fit the
    Arrow schema goes as JSON Lines (`pack`), in its place in the order."""

    __slots__ = ("batches", "max_bytes", "out")

    def __init__(self, max_bytes: int = RATED_MESSAGE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.batches: list[pa.RecordBatch] = []  # converted parts not yet cut into messages
        self.out: list[bytes] = []

    def add(self, rows: list[RatedRow]) -> None:
        if not rows:
            return
        import pyarrow as pa

        try:
            self.batches.append(_record_batch(rows))
        except (pa.ArrowException, ArithmeticError, TypeError, ValueError) as exc:  # e.g. OverflowError, ArrowInvalid
            log.warning("%d rated records do not fit the Arrow schema (%s): sent as JSON Lines", len(rows), exc)
            self._cut()
            self.out += pack([orjson.dumps(dict(zip(RATED_FIELDS, row, strict=True))) for row in rows], self.max_bytes)

    def values(self) -> list[bytes]:
        """The message values of every part added, in order (the packer is then empty)."""
        self._cut()
        out, self.out = self.out, []
        return out

    def _cut(self) -> None:
        batches = self.batches
        if batches:
            import pyarrow as pa

            self.out += _split(batches[0] if len(batches) == 1 else pa.concat_batches(batches), self.max_bytes)
            self.batches = []


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
