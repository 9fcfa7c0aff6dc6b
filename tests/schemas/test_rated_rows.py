"""The JSON rows form of `rated-usage` messages (schemas.rated.pack_rows, the columnar processor's): the bytes
written by hand, cut under the size cap in order, the same messages whatever parts the rows come in, and read
back by `unpack`, `record_count` and `record_lines`."""

from __future__ import annotations

from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rated_record import RECORD

from meterstream.schemas.rated import (
    RATED_FIELDS,
    RowPacker,
    is_rows,
    pack_rows,
    record_count,
    record_lines,
    row_of,
    rows_body,
    rows_count,
    unpack,
)
from meterstream.schemas.rated_arrow import is_arrow

ROW = (
    "acme", "e-1", "c-1", "", "calls", "2026-11-05T10:00:00.000Z", "2026-11", "3", "0.03", "3", "EUR", "tel@1",
    "calls|+49", {"dir": "out"}, "", 2, 7,
)  # fmt: skip
ROW_TEXT = (
    b'["acme","e-1","c-1","","calls","2026-11-05T10:00:00.000Z","2026-11","3","0.03","3","EUR","tel@1",'
    b'"calls|+49",{"dir":"out"},"",2,7]'
)  # 130 bytes


def test_a_message_is_the_count_a_newline_and_the_rows_as_arrays_separated_by_commas() -> None:
    second = (*ROW[:1], "e-2", *ROW[2:13], {}, "src", 2, 8)
    (value,) = pack_rows([ROW, second])
    assert value == (
        b"2\n" + ROW_TEXT + b',["acme","e-2","c-1","","calls","2026-11-05T10:00:00.000Z","2026-11","3","0.03","3",'
        b'"EUR","tel@1","calls|+49",{},"src",2,8]'
    )
    assert is_rows(value) and not is_arrow(value) and record_count(value) == rows_count(value) == 2
    assert rows_body(value).startswith(b'["acme","e-1"')
    assert unpack(value)[1] == dict(zip(RATED_FIELDS, second, strict=True))


def test_text_that_looks_like_the_separators_stays_inside_its_string() -> None:
    tricky = (*ROW[:1], 'e"],[\n', *ROW[2:13], {"k],[": "\\n\u00e9"}, *ROW[14:])
    (value,) = pack_rows([tricky, ROW])
    assert record_count(value) == 2 and [r["id"] for r in unpack(value)] == ['e"],[\n', "e-1"]
    assert unpack(value)[0]["dimensions"] == {"k],[": "\\n\u00e9"}


def test_messages_are_cut_under_the_cap_in_order_and_a_larger_row_goes_alone() -> None:
    # each row is 130 bytes, plus a comma between rows; the count and its newline take at most 10 bytes of the cap:
    # with a cap of 500 the rows may use 490: three rows (3 * 130 + 2 = 392) fit, four (4 * 130 + 3 = 523) do not.
    # Seven rows (916 bytes) are cut into pieces of the rows that fit on average, 7 * 490 // 916 = 3: 3, then the
    # four left (523 bytes) into 4 * 490 // 523 = 3 and 1
    assert len(ROW_TEXT) == 130
    rows = [(*ROW[:16], o) for o in range(7)]  # offsets 0-6: one digit each, every row 130 bytes
    values = pack_rows(rows, max_bytes=500)
    assert [record_count(v) for v in values] == [3, 3, 1]
    assert all(len(v) <= 500 for v in values) and len(values[0]) == 2 + 3 * 130 + 2
    assert [r["src_offset"] for v in values for r in unpack(v)] == list(range(7))
    big = (*ROW[:13], {"k": "x" * 600}, *ROW[14:])
    assert [record_count(v) for v in pack_rows([ROW, big, ROW], max_bytes=500)] == [1, 1, 1]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), max_size=8),
    widths=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    max_bytes=st.sampled_from([300, 1000, 4096, 1 << 20]),
)
def test_rows_in_parts_travel_in_order_under_the_cap_in_messages_that_could_not_be_merged(sizes, widths, max_bytes):
    rows, n = [], 0
    for size in sizes:
        part = []
        for _ in range(size):
            part.append((*ROW[:1], f"e-{n}", *ROW[2:13], {"w": "y" * widths[n % len(widths)]}, *ROW[14:16], n))
            n += 1
        rows.append(part)
    packer = RowPacker(max_bytes)
    for part in rows:
        packer.add(part)
    values = packer.values()
    assert [r["src_offset"] for v in values for r in unpack(v)] == list(range(n))
    assert all(len(v) <= max_bytes or record_count(v) == 1 for v in values)
    assert all(record_count(v) == len(orjson.loads(b"[" + rows_body(v) + b"]")) for v in values)
    # a message was cut only when the next rows did not fit in it
    for before, after in pairwise(values):
        assert len(rows_body(before)) + 1 + len(rows_body(after)) > max_bytes - 10


def test_a_part_that_fits_a_message_is_never_split() -> None:
    """Parts of 3 rows of 130 bytes (3 * 130 + 2 = 392 bytes) under a cap of 1,000 (990 for the rows): two parts
    fit a message (392 + 1 + 392 = 785), a third would not (1,178): messages of 6, 6 and 3 rows."""
    rows = [(*ROW[:16], o) for o in range(15)]  # offsets 0-9 one digit, 10-14 two: the last part is 395 bytes
    packer = RowPacker(1000)
    for start in range(0, 15, 3):
        packer.add(rows[start : start + 3])
    assert [record_count(v) for v in packer.values()] == [6, 6, 3]


def test_record_lines_turns_rows_into_objects_and_keeps_an_unreadable_message_whole() -> None:
    (value,) = pack_rows([row_of(RECORD)])
    assert record_lines(value) == [orjson.dumps(RECORD)]
    broken = value[:-5]
    assert record_lines(broken) == [broken]


def test_a_value_without_its_count_is_not_json_rows() -> None:
    with pytest.raises(ValueError, match="no record count"):
        rows_count(b"123456789012\n[]")
    with pytest.raises(ValueError, match="no record count"):
        rows_count(b"12[]")
    assert not is_rows(b'{"tenant":"a"}') and not is_rows(b"\xff\xff\xff\xff")
