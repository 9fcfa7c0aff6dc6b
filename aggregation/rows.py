"""Kafka records as ClickHouse rows: the fields the sink inserts, how strictly ClickHouse reads them,
and the dead-letter row of a record it refuses.

The sink does not decode records in Python. A `rated-usage` message is JSON rows, JSON Lines or Arrow IPC
(`schemas.rated`): JSON rows messages (the columnar processor's) are joined into one JSONCompactEachRow
block and JSON Lines values into one JSONEachRow block, both parsed by ClickHouse (a C++ parser, ~4x less
CPU than building Decimal columns in Python); Arrow messages (older topics) are read without copying (their
columns already have the table's types, `schemas.rated_arrow.arrow_schema`) and inserted as one Arrow table.
The tables take the records' field names as they are (`rated_usage.id` and `dead_letters.key` are
EPHEMERAL input columns feeding `event_id` and `kafka_key`), so the topic contracts in `schemas.rated`
stay the ones consumers see. ClickHouse is the judge of what it can store: `INSERT_SETTINGS` make its JSON reading
strict (a number or an object where a string belongs, a null or a missing field of a rated record are
refused instead of silently becoming "5", "" or 0), and `rated_usage` has CHECK constraints (quantities
are never negative). What it refuses becomes a `refusal_row` in `dead_letters` (see `aggregation.refusals`).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from meterstream.schemas.rated import RATED_FIELDS as RATED_FIELDS  # re-exported: the sink's field list
from meterstream.schemas.rated import DeadLetter, is_rows, record_count, record_lines, rows_body, rows_count
from meterstream.schemas.rated_arrow import arrow_records, is_arrow, read_arrow

DEAD_LETTER_FIELDS: tuple[str, ...] = tuple(DeadLetter.__annotations__)
# a dead letter written by the sink also says which record of a packed message it is
SINK_DEAD_LETTER_FIELDS: tuple[str, ...] = (*DEAD_LETTER_FIELDS, "record")
SINK_STAGE = "sink"

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

_STRICT_JSON = {
    "input_format_json_read_numbers_as_strings": 0,  # {"tenant": 5} is refused, not stored as "5"
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_bools_as_numbers": 0,
}
# Per table. A rated record has no optional field: null or missing is refused (ClickHouse would store
# 0 / ""). A dead letter's key, event_id and tenant may be null (schemas.rated.DeadLetter): stored as "".
INSERT_SETTINGS: dict[str, dict[str, int]] = {
    "rated_usage": {**_STRICT_JSON, "input_format_null_as_default": 0, "input_format_force_null_for_omitted_fields": 1},
    "dead_letters": dict(_STRICT_JSON),
}


class Position(NamedTuple):
    """Where a message value came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    record: int = 0  # index of the value's first record in its message (a packed rated-usage message)


class Unreadable(NamedTuple):
    """A message that claims to be Arrow or JSON rows but cannot be read as rated usage: a dead letter as a whole."""

    value: bytes
    position: Position | None
    reason: str


class RecordBatch:
    """Records for one table, in arrival order: JSON values, inserted as one JSONEachRow block, and (rated
    usage only) JSON rows messages, inserted as one JSONCompactEachRow block, and Arrow record runs, inserted
    as one Arrow table."""

    def __init__(self, table: str, fields: tuple[str, ...]) -> None:
        self.table = table
        self.fields = fields
        self.packed = table == "rated_usage"  # a rated-usage message may pack several records
        self.values: list[bytes] = []
        self.positions: list[Position | None] = []  # parallel to values
        self.rows_values: list[bytes] = []  # JSON rows messages (rated usage only)
        self.rows_positions: list[Position | None] = []  # parallel to rows_values
        # runs of consecutive records of one Arrow message; the position's `record` is the run's first
        self.arrow: list[pa.Table] = []
        self.arrow_positions: list[Position | None] = []  # parallel to arrow
        self.unreadable: list[Unreadable] = []
        self.rows = 0

    def add(self, value: bytes, position: Position | None = None) -> None:
        if self.packed and is_rows(value):
            try:
                n = rows_count(value)
            except ValueError as exc:
                self.unreadable.append(Unreadable(value, position, str(exc)))
                self.rows += 1
                return
            self.rows_values.append(value)
            self.rows_positions.append(position)
            self.rows += n
            return
        if self.packed and is_arrow(value):
            try:
                table = read_arrow(value)
            except ValueError as exc:
                self.unreadable.append(Unreadable(value, position, str(exc)))
                self.rows += 1
                return
            self.add_arrow(table, position)
            return
        self.values.append(value)
        self.positions.append(position)
        self.rows += record_count(value) if self.packed else 1

    def add_arrow(self, table: pa.Table, position: Position | None = None) -> None:
        self.arrow.append(table)
        self.arrow_positions.append(position)
        self.rows += table.num_rows

    def __len__(self) -> int:
        """Records held (not messages)."""
        return self.rows

    def block(self) -> bytes:
        """The JSON values as one JSONEachRow block."""
        return b"\n".join(self.values)

    def rows_block(self) -> bytes:
        """The JSON rows messages' records as one JSONCompactEachRow block (arrays separated by commas; a message
        of no rows adds nothing)."""
        return b",".join(body for body in map(rows_body, self.rows_values) if body)

    def arrow_table(self) -> pa.Table:
        """The Arrow records as one table (its chunks are the messages' buffers, not copies)."""
        return pa.concat_tables(self.arrow)

    def take_unreadable(self) -> list[Unreadable]:
        """The unreadable messages, removed from the batch."""
        taken, self.unreadable = self.unreadable, []
        self.rows -= len(taken)
        return taken

    def arrow_rows(self) -> tuple[pa.Table, list[Position | None]]:
        """The Arrow records as one table, with each row's position (its message and `record`)."""
        where: list[Position | None] = []
        for table, pos in zip(self.arrow, self.arrow_positions, strict=True):
            n = table.num_rows
            if pos is None:
                where.extend([None] * n)
            else:
                where.extend(pos._replace(record=pos.record + i) for i in range(n))
        return self.arrow_table(), where

    def keep_arrow(self, table: pa.Table, where: list[Position | None], drop: set[int] | dict[int, Any]) -> None:
        """Add back the rows of `table` (from `arrow_rows`) not in `drop`, as runs of one message each."""
        i, n = 0, table.num_rows
        while i < n:
            if i in drop:
                i += 1
                continue
            j = i + 1
            while j < n and j not in drop and _follows(where[j - 1], where[j]):
                j += 1
            self.add_arrow(table.slice(i, j - i), where[i])
            i = j

    def records(self) -> tuple[list[bytes], list[Position | None]]:
        """Every JSON record on its own line, with its position (a packed message's lines get their
        `record`); the JSON rows records are in `rows_records`, the Arrow records in `arrow_rows`."""
        positions = self.positions + [None] * (len(self.values) - len(self.positions))  # values set directly
        return self._lines(self.values, positions)

    def rows_records(self) -> tuple[list[bytes], list[Position | None]]:
        """Every record of the JSON rows messages as a JSON object on its own line, with its position."""
        return self._lines(self.rows_values, self.rows_positions)

    def _lines(
        self, values: list[bytes], positions: list[Position | None]
    ) -> tuple[list[bytes], list[Position | None]]:
        lines: list[bytes] = []
        where: list[Position | None] = []
        for value, pos in zip(values, positions, strict=True):
            parts = record_lines(value) if self.packed else [value]
            lines.extend(parts)
            where.extend(pos._replace(record=pos.record + i) if pos else None for i in range(len(parts)))
        return lines, where

    def keep_rows(self, lines: list[bytes], where: list[Position | None], drop: set[int] | dict[int, Any]) -> None:
        """Add back the records of `rows_records` not in `drop` as JSON rows again (a message of one row each, at
        its position): they are inserted under the JSON rows insert's own token, as before the search (as JSON
        lines they would go under the JSON Lines insert's token, which an insert of this batch may have used
        already: ClickHouse would drop them as a repeat)."""
        for i, (line, pos) in enumerate(zip(lines, where, strict=True)):
            if i in drop:
                continue
            try:
                record = orjson.loads(line)
                value = b"1\n" + orjson.dumps([record[name] for name in self.fields])
            except (orjson.JSONDecodeError, TypeError, KeyError):  # not a record (a message ClickHouse took whole)
                self.add(line, pos)
                continue
            self.rows_values.append(value)
            self.rows_positions.append(pos)
            self.rows += 1

    def clear(self) -> None:
        self.values = []
        self.positions = []
        self.rows_values = []
        self.rows_positions = []
        self.arrow = []
        self.arrow_positions = []
        self.unreadable = []
        self.rows = 0


def _follows(before: Position | None, after: Position | None) -> bool:
    """True when `after` is the record right after `before` in the same message."""
    if before is None or after is None:
        return before is None and after is None
    return before[:3] == after[:3] and after.record == before.record + 1


def arrow_line(table: pa.Table, row: int) -> bytes:
    """One Arrow row as the JSON text of its record (what a dead letter shows as `raw`)."""
    return orjson.dumps(arrow_records(table.slice(row, 1))[0])


_CODE = re.compile(r"Code: (\d+)\. DB::Exception: ")
_NOISE = (
    re.compile(r"\s*\(in file/uri [^)]*\)"),  # chdb's temporary file of the insert
    re.compile(r":?\s*While executing [^.]*\."),
    re.compile(r"\s*data for INSERT was parsed from (file|query)\.?"),
    re.compile(r"\s*\(version [^()]*(\([^()]*\))?\)"),
    re.compile(r"\s*\(at row \d+\)\s*:?"),
    re.compile(r" for table \S+ \([0-9a-f-]{36}\)"),  # the probe table's name and uuid
)
_FIELD = (
    re.compile(r"while reading the value of key (\w+)"),
    re.compile(r"into a column `(\w+)`"),
    re.compile(r"Column values: (\w+) ="),
    re.compile(r"[Cc]olumn `?(\w+)`?"),
)


def store_reason(message: str, limit: int = 1000) -> str:
    """ClickHouse's error message without its transport noise (codes, temp file, version, row number)."""
    codes = _CODE.findall(message)
    text = _CODE.sub("", message)
    for pattern in _NOISE:
        text = pattern.sub("", text)
    text = " ".join(text.split()).strip(" :")
    if codes:
        text = f"ClickHouse code {codes[0]}: {text}"
    return text[:limit]


def store_field(message: str, fields: tuple[str, ...]) -> str:
    """The record field a ClickHouse error names ('' when it names none, e.g. bad JSON)."""
    for pattern in _FIELD:
        for name in pattern.findall(message):
            if name in fields:
                return name
    return ""


def refusal_row(position: Position | None, line: bytes, table: str, reason: str, field: str) -> bytes:
    """The `dead_letters` row (JSONEachRow, SINK_DEAD_LETTER_FIELDS) of a record ClickHouse refused:
    where it sits in Kafka (`position`: topic, partition, offset, key, record), the store's reason, the
    field it names, the record as text and, when it is readable, its tenant and event id."""
    raw = line.decode("utf-8", errors="replace")
    tenant = event_id = None
    try:
        data: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        tenant = data.get("tenant") if isinstance(data.get("tenant"), str) else None
        ident = data.get("id" if table == "rated_usage" else "event_id")
        event_id = ident if isinstance(ident, str) else None
    topic, partition, offset, key, record = position if position is not None else ("", 0, 0, None, 0)
    return orjson.dumps(
        {
            "stage": SINK_STAGE,
            "field": field,
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key.decode("utf-8", errors="replace") if key is not None else None,
            "raw": raw,
            "event_id": event_id,
            "tenant": tenant,
            "record": record,
        }
    )
