"""`schemas.rated_arrow.pack_arrow` converts the rows in one pass (one Arrow struct array whose fields are the columns),
checks the time texts on the array's bytes and writes each message as the schema message + the batch's message +
the end marker. Its messages must be the very bytes of the plain way, written out here as the reference: each
column converted on its own (`pa.array(values, type)`), the time texts matched by the regular expression, the
stream written by Arrow's stream writer and cut by its written length; and where the plain way gives JSON Lines
or raises, so must pack_arrow."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rated_record import RECORD

from meterstream.schemas.rated import RATED_FIELDS, pack, row_of, unpack
from meterstream.schemas.rated_arrow import (
    _CANONICAL_TIME,
    ArrowPacker,
    _all_canonical_times,
    _record_batch,
    _record_batch_by_columns,
    _stream,
    arrow_schema,
    is_arrow,
    pack_arrow,
)

TIME = RATED_FIELDS.index("time")


def reference_batch(rows: list) -> pa.RecordBatch:
    """Column by column, as pack_arrow was first written."""
    schema = arrow_schema()
    arrays = []
    for i, (field, values) in enumerate(zip(schema, zip(*rows, strict=True), strict=True)):
        if i == TIME:
            text = pa.array(values, pa.string())
            if not pc.all(pc.match_substring_regex(text, _CANONICAL_TIME)).as_py():
                raise ValueError("time: not in the canonical form")
            arrays.append(text.cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def written(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def written_split(batch: pa.RecordBatch, max_bytes: int) -> list[bytes]:
    value = written(batch)
    n = batch.num_rows
    if len(value) <= max_bytes or n == 1:
        return [value]
    step = -(-n // max(2, -(-len(value) // max_bytes)))
    return [v for start in range(0, n, step) for v in written_split(batch.slice(start, step), max_bytes)]


def reference_pack_rows(rows: list, max_bytes: int) -> list[bytes]:
    try:
        batch = reference_batch(rows)
    except (pa.ArrowException, ArithmeticError, TypeError, ValueError):
        return pack([orjson.dumps(dict(zip(RATED_FIELDS, row, strict=True))) for row in rows], max_bytes)
    return written_split(batch, max_bytes)


def outcome(fn: Any, *args: Any) -> tuple:
    """What a call gives: ("ok", value) or ("raises", the exception's type)."""
    try:
        return "ok", fn(*args)
    except Exception as exc:  # the type is what is compared
        return "raises", type(exc)


def rows_of(*changes: dict) -> list[tuple]:
    return [row_of({**RECORD, "id": f"e{i}", "src_offset": i, **change}) for i, change in enumerate(changes)]


# ---- by hand ---------------------------------------------------------------------------------------------------

CANONICAL = ["2026-10-12T10:11:12.345Z", "1970-01-01T00:00:00.000Z", "2026-10-31T23:59:59.999Z"]
NOT_CANONICAL = [
    "2026-10-12T10:11:12Z",  # no milliseconds
    "2026-10-12 10:11:12.345Z",  # a space for the T: Arrow's cast would read it
    "2026-10-12T10:11:12,345Z",  # a comma before the fraction
    "2026-10-12T10:11:12.3456",  # 24 characters, no Z
    "2026-10-12T10:11:12.345+00:00",
    "2026-10-12t10:11:12.345z",
    "\uff12026-10-12T10:11:12.345Z",  # a fullwidth digit: not ASCII, and 26 bytes
    "\u0662\u0660\u0662\u0666-10-12T10:11:12.345Z",  # Arabic-Indic digits (Python's \\d would take them)
    "2026-10-12T10:11:12.345Z\n",
    " 2026-10-12T10:11:12.345Z",
    "2026-10-12T10:11:12.345Z ",
    "",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_times_pass_the_byte_check_and_decode_to_their_text(text: str) -> None:
    rows = rows_of({"time": CANONICAL[0]}, {"time": text})
    assert _all_canonical_times(pa.array([row[TIME] for row in rows], pa.string()))
    (value,) = pack_arrow(rows)
    assert is_arrow(value) and [r["time"] for r in unpack(value)] == [CANONICAL[0], text]


@pytest.mark.parametrize("text", NOT_CANONICAL)
def test_a_time_not_in_canonical_form_fails_the_byte_check_and_the_rows_go_as_json_lines(text: str) -> None:
    rows = rows_of({}, {"time": text}, {})
    assert not _all_canonical_times(pa.array([row[TIME] for row in rows], pa.string()))
    (value,) = pack_arrow(rows)
    assert not is_arrow(value)
    assert value == b"\n".join(orjson.dumps(dict(zip(RATED_FIELDS, row, strict=True))) for row in rows)


def test_texts_of_other_lengths_that_join_into_canonical_times_are_refused() -> None:
    """25 + 23 bytes: the data buffer is that of two canonical times; only the offsets tell them apart."""
    times = ["2026-10-12T10:11:12.345Z2", "026-10-12T10:11:12.345Z"]
    assert "".join(times) == CANONICAL[0] * 2 and len(times[0]) != 24
    assert not _all_canonical_times(pa.array(times, pa.string()))
    (value,) = pack_arrow(rows_of(*({"time": t} for t in times)))
    assert not is_arrow(value)


def test_a_null_time_and_a_sliced_array_are_left_to_the_expression() -> None:
    assert not _all_canonical_times(pa.array([CANONICAL[0], None], pa.string()))
    sliced = pa.array(CANONICAL, pa.string()).slice(1)
    assert not _all_canonical_times(sliced)  # not proven by the bytes (an offset) ...
    assert _record_batch(rows_of(*({"time": t} for t in CANONICAL[1:]))).column(TIME).cast(pa.int64()).to_pylist() == [
        0,
        1_793_491_199_999,  # 2026-11-01T00:00:00Z is 1,793,491,200,000 ms (2026-10-20 + 12 days), less 1 ms
    ]
    # ... and a null time is what it always was: a null timestamp in the Arrow message (ClickHouse refuses it)
    (value,) = pack_arrow(rows_of({}, {"time": None}))
    assert is_arrow(value) and [r["time"] for r in unpack(value)] == [RECORD["time"], None]


def test_a_digit_shaped_time_that_is_no_date_goes_as_json_lines_as_before() -> None:
    """Month 13 and year 0 match the expression; Arrow's cast refuses them, and the rows travel as JSON Lines."""
    for text in ["2026-13-12T10:11:12.345Z", "0000-00-00T00:00:00.000Z"]:
        rows = rows_of({}, {"time": text})
        assert _all_canonical_times(pa.array([row[TIME] for row in rows], pa.string()))
        (value,) = pack_arrow(rows)
        assert not is_arrow(value) and value == reference_pack_rows(rows, 1 << 20)[0]


def test_hostile_dimensions_keep_their_bytes_order_and_nulls() -> None:
    dims = [
        {"k\x00ey": "v\nal", "\u00e9\u4e2d": "\U0001f600", "": ""},
        {"region": None},  # a null value is a null (the map's values may be null)
        {},
        {"a": "1", "b": "2", "c": "3", "d": "4"},
        None,  # a null map
    ]
    rows = rows_of(*({"dimensions": d} for d in dims))
    (value,) = pack_arrow(rows)
    assert is_arrow(value) and value == written(reference_batch(rows))
    assert [r["dimensions"] for r in unpack(value)] == dims


@pytest.mark.parametrize(
    "change",
    [
        {"dimensions": {None: "x"}},  # a null key: not a valid map
        {"dimensions": {1: "x"}},
        {"dimensions": {"k": 1}},
        {"dimensions": "region=eu"},
        {"src_partition": 70_000},
        {"src_offset": -1},
        {"src_offset": 2**64},
        {"src_partition": "3"},
        {"tenant": 5},
        {"amount": b"\xff"},  # bytes that are not UTF-8
    ],
)
def test_rows_that_do_not_fit_go_as_json_lines_like_the_reference(change: dict) -> None:
    rows = rows_of({}, change)
    assert outcome(pack_arrow, rows, 1 << 20) == outcome(reference_pack_rows, rows, 1 << 20)
    assert outcome(pack_arrow, rows, 1 << 20)[0] == "raises" or not is_arrow(pack_arrow(rows)[0])


def test_rows_that_are_not_tuples_of_the_schemas_width_are_judged_as_before() -> None:
    good = rows_of({}, {})
    cases = [
        [list(good[0]), list(good[1])],  # lists: Arrow would read a list row as (name, value) pairs
        [good[0], list(good[1])],
        [good[0], good[1][:-1]],  # one value short
        [good[0], (*good[1], 0)],  # one too many
        [good[0], None],
        [None, good[0]],
        [good[0], dict(zip(RATED_FIELDS, good[1], strict=True))],
    ]
    for rows in cases:
        assert outcome(pack_arrow, rows, 1 << 20) == outcome(reference_pack_rows, rows, 1 << 20), rows
    assert outcome(_record_batch, []) == outcome(reference_batch, []) == ("raises", ValueError)  # no columns
    # lists are packed as Arrow, like tuples
    assert pack_arrow(cases[0]) == written_split(reference_batch(good), 1 << 20)


def test_both_conversions_give_the_same_batch() -> None:
    rows = rows_of({}, {"dimensions": {}}, {"subject": "\u00e9" * 40, "src_offset": 2**64 - 1, "src_partition": 65535})
    fast, plain = _record_batch(rows), _record_batch_by_columns(rows)
    assert fast.equals(plain) and _stream(fast) == _stream(plain) == written(reference_batch(rows))
    for part in (fast.slice(1), fast.slice(0, 2), fast.slice(2, 1)):
        assert _stream(part) == written(part)  # slices too: what the split writes


# ---- against the reference, on generated rows ---------------------------------------------------------------

TEXT = st.one_of(  # lone surrogates included: Arrow and orjson refuse those
    st.text(st.characters(exclude_categories=()), max_size=12), st.just("a\ud800")
)
TIMES = st.one_of(
    st.sampled_from(CANONICAL + NOT_CANONICAL),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"),
    st.text(st.sampled_from("0123456789-T:.Z \u0660"), min_size=22, max_size=26),
)
ROW = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=20),
        "tenant": st.one_of(st.sampled_from(["telco", "cloudco"]), TEXT),
        "subject": st.sampled_from(["", "user-01", "\u00e9" * 30, None]),
        "time": TIMES,
        "amount": st.decimals(allow_nan=False, allow_infinity=False, places=4).map(lambda d: format(d, "f")),
        "dimensions": st.one_of(
            st.dictionaries(st.sampled_from(["destination", "region", "\u00e9", ""]), st.one_of(TEXT, st.none())),
            st.none(),
        ),
        "src_partition": st.sampled_from([0, 3, 65535, 65536]),
        "src_offset": st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64])),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=40), st.sampled_from([600, 2048, 1 << 20]))
def test_pack_rows_gives_the_references_messages(parts: list[dict], max_bytes: int) -> None:
    rows = [row_of({**RECORD, **part}) for part in parts]
    assert outcome(pack_arrow, rows, max_bytes) == outcome(reference_pack_rows, rows, max_bytes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ROW, max_size=12), min_size=1, max_size=5), st.sampled_from([600, 2048, 1 << 20]))
def test_a_packer_fed_in_parts_gives_the_messages_of_its_parts(parts: list[list[dict]], max_bytes: int) -> None:
    """The processor adds each chunk's rows as it rates them: the parts that fit Arrow give, together, the messages
    `pack_arrow` gives for all their rows at once; a part that does not fit goes as JSON Lines in its place."""
    chunks = [[row_of({**RECORD, **part}) for part in chunk] for chunk in parts]
    # rows that neither form can carry (a lone surrogate) raise in both, as pack_arrow' own test shows
    assume(all(outcome(reference_pack_rows, chunk, max_bytes)[0] == "ok" for chunk in chunks if chunk))
    packer = ArrowPacker(max_bytes)
    for chunk in chunks:
        packer.add(chunk)
    expected: list[bytes] = []
    fitting: list = []  # rows of consecutive parts that fit, packed together
    for chunk in chunks:
        if not chunk:
            continue
        if outcome(reference_batch, chunk)[0] == "ok":
            fitting += chunk
        else:
            expected += reference_pack_rows(fitting, max_bytes) if fitting else []
            expected += reference_pack_rows(chunk, max_bytes)
            fitting = []
    expected += reference_pack_rows(fitting, max_bytes) if fitting else []
    assert packer.values() == expected
    assert packer.values() == []  # emptied


def test_a_part_that_does_not_fit_goes_as_json_lines_between_the_arrow_parts_around_it() -> None:
    first, bad, last = rows_of({}, {}), rows_of({"time": "2026-10-12T10:11:12Z"}), rows_of({"id": "z"})
    packer = ArrowPacker()
    for rows in (first, [], bad, last):
        packer.add(rows)
    values = packer.values()
    assert [is_arrow(v) for v in values] == [True, False, True]
    assert [r["id"] for v in values for r in unpack(v)] == ["e0", "e1", "e0", "z"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(CANONICAL), min_size=1, max_size=3000))
def test_many_canonical_times_pass_the_byte_check(times: list[str]) -> None:
    assert _all_canonical_times(pa.array(times, pa.string()))
    assert not _all_canonical_times(pa.array([*times, "2026-10-12T10:11:12.34Z"], pa.string()))
