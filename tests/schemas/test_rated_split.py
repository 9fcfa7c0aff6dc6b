"""`schemas.rated_arrow.pack_arrow` decides where to cut a batch from the stream's size computed without writing it
(`stream_size`): that size must be the written stream's length exactly, for whole batches and for slices, so
the messages are the ones a write-then-measure split gives, byte for byte (checked here against that split,
written out in the test)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from rated_record import RECORD

from meterstream.schemas.rated import row_of
from meterstream.schemas.rated_arrow import _record_batch, _stream, pack_arrow, stream_size


def written_split(batch: pa.RecordBatch, max_bytes: int) -> list[bytes]:
    """The split as it was first written: write the stream, measure it, cut and recurse."""
    value = _stream(batch)
    n = batch.num_rows
    if len(value) <= max_bytes or n == 1:
        return [value]
    step = -(-n // max(2, -(-len(value) // max_bytes)))
    return [v for start in range(0, n, step) for v in written_split(batch.slice(start, step), max_bytes)]


TEXT = st.characters(blacklist_categories=("Cs",))  # no lone surrogates: those rows travel as JSON Lines
ROW = st.fixed_dictionaries(
    {
        "id": st.text(TEXT, min_size=1, max_size=40),
        "subject": st.sampled_from(["", "user-01", "s" * 3000, "\u00e9" * 50]),
        "amount": st.decimals(allow_nan=False, allow_infinity=False, places=6).map(lambda d: format(d, "f")),
        "dimensions": st.dictionaries(
            st.sampled_from(["region", "k", "\u00e9"]), st.text(TEXT, max_size=30), max_size=3
        ),
        "src_offset": st.integers(0, 2**64 - 1),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=300), st.sampled_from([1024, 4096, 20_000, 256 * 1024]))
def test_the_messages_are_those_of_a_write_then_measure_split(parts: list[dict], max_bytes: int) -> None:
    rows = [row_of({**RECORD, **part}) for part in parts]
    assert pack_arrow(rows, max_bytes=max_bytes) == written_split(_record_batch(rows), max_bytes)


def test_stream_size_is_the_written_length_for_batches_and_slices() -> None:
    rows = [row_of({**RECORD, "id": f"e{i}", "subject": "x" * (i % 97), "src_offset": i}) for i in range(2000)]
    batch = _record_batch(rows)
    assert stream_size(batch) == len(_stream(batch)) > 100_000
    for start, length in [(0, 1), (1, 1), (7, 333), (1999, 1), (1000, 1000), (3, 1997)]:
        part = batch.slice(start, length)
        assert stream_size(part) == len(_stream(part))


def test_a_large_batch_is_cut_into_parts_under_the_cap() -> None:
    rows = [row_of({**RECORD, "id": f"e{i:05d}", "src_offset": i}) for i in range(3000)]
    values = pack_arrow(rows, max_bytes=64 * 1024)
    assert len(values) > 2 and all(len(v) <= 64 * 1024 for v in values)
