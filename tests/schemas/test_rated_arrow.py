"""The Arrow form of `rated-usage` messages (schemas.rated_arrow: older topics hold it): recognised by its first
bytes, decoded back to the very records that were encoded, split under the size cap, and JSON Lines where a value
does not fit."""

from __future__ import annotations

import orjson
import pyarrow as pa
from rated_record import RECORD

from meterstream.schemas.rated import RATED_FIELDS, pack, record_count, row_of, unpack
from meterstream.schemas.rated_arrow import arrow_schema, is_arrow, pack_arrow, read_arrow


def test_an_arrow_message_decodes_to_the_same_records_byte_for_byte() -> None:
    records = [
        RECORD,
        {**RECORD, "id": "evt-2", "dimensions": {}, "time": "2026-10-31T23:59:59.999Z", "src_offset": 2**64 - 1},
        {**RECORD, "id": "évt-3", "customer": "cust-\u00e9", "amount": "-3.750", "src_partition": 65535},
    ]
    (value,) = pack_arrow([row_of(r) for r in records])
    assert is_arrow(value) and value[:4] == b"\xff\xff\xff\xff"
    assert record_count(value) == 3
    assert [orjson.dumps(r) for r in unpack(value)] == [orjson.dumps(r) for r in records]


def test_the_columns_have_the_tables_types() -> None:
    """Times are milliseconds since the epoch (UTC): 2026-10-20T00:00:00Z is 1,792,454,400,000 ms, so
    2026-10-12T10:11:12.345Z is that minus 8 days (691,200,000 ms) plus 36,672,345 ms."""
    table = read_arrow(pack_arrow([row_of(RECORD)])[0])
    assert table.schema.equals(arrow_schema())
    assert table.column("time").type == pa.timestamp("ms", "UTC")
    assert table.column("time").cast(pa.int64()).to_pylist() == [1_792_454_400_000 - 691_200_000 + 36_672_345]
    assert table.column("quantity").to_pylist() == ["1234.000000000001"]  # the record's text, exactly
    assert table.column("dimensions").to_pylist() == [[("region", "eu-west-1"), ("az", "b")]]
    assert (table.column("src_partition").type, table.column("src_offset").type) == (pa.uint16(), pa.uint64())
    assert table.column_names == list(RATED_FIELDS)


def test_messages_stay_under_the_cap_in_order() -> None:
    rows = [row_of({**RECORD, "id": f"e{i:05d}", "src_offset": i}) for i in range(5000)]
    values = pack_arrow(rows, max_bytes=64 * 1024)
    assert len(values) > 5 and all(len(v) <= 64 * 1024 for v in values)
    assert [r["src_offset"] for v in values for r in unpack(v)] == list(range(5000))
    assert sum(record_count(v) for v in values) == 5000
    big = {**RECORD, "subject": "s" * 10_000}  # larger than the cap on its own: a message of its own
    assert [record_count(v) for v in pack_arrow([row_of(big)] * 3, max_bytes=4096)] == [1, 1, 1]


def test_rows_that_do_not_fit_the_arrow_schema_travel_as_json_lines() -> None:
    odd = [
        {**RECORD, "time": "2026-10-12T10:11:12Z"},  # not the canonical form: Arrow would not give it back
        {**RECORD, "src_partition": 70_000},  # over UInt16: not wrapped around, left to ClickHouse to refuse
        {**RECORD, "tenant": 5},  # a number where text belongs
    ]
    for record in odd:
        (value,) = pack_arrow([row_of(RECORD), row_of(record)])
        assert not is_arrow(value)
        assert value == pack([orjson.dumps(RECORD), orjson.dumps(record)])[0]


def test_json_lines_messages_are_read_as_before() -> None:
    value = b"\n".join([orjson.dumps(RECORD), orjson.dumps({**RECORD, "id": "evt-2"})])
    assert not is_arrow(value) and record_count(value) == 2
    assert [r["id"] for r in unpack(value)] == ["evt-1", "evt-2"]


def test_a_stream_of_another_schema_is_refused_with_the_reason() -> None:
    sink = pa.BufferOutputStream()
    other = pa.table({"tenant": ["x"]})
    with pa.ipc.new_stream(sink, other.schema) as writer:
        writer.write_table(other)
    for value, words in ((sink.getvalue().to_pybytes(), "not the rated-usage Arrow schema"),
                         (b"\xff\xff\xff\xff\x10\x00", "unreadable Arrow IPC stream")):  # fmt: skip
        try:
            read_arrow(value)
        except ValueError as exc:
            assert words in str(exc)
        else:
            raise AssertionError("read_arrow accepted a foreign stream")
