"""`schemas.rated.ascii_strings` builds Arrow string columns from one joined text: it must give the array
`pa.array(values, pa.string())` gives, to the byte once written as IPC, and refuse what that refuses."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.schemas.rated import ascii_strings

VALUE = st.one_of(
    st.text(st.characters(max_codepoint=127), max_size=30),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),  # non-ASCII: Arrow's own conversion
    st.sampled_from(["", "2026-10-12T10:11:12.345Z", "acct-007", "\x00", "é"]),
)


def ipc(array: pa.Array) -> bytes:
    batch = pa.RecordBatch.from_arrays([array], names=["c"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(VALUE, VALUE, VALUE, st.none()), max_size=60), st.integers(0, 5))
def test_the_same_array_as_arrows_conversion(values: list, start: int) -> None:
    expected = pa.array(values, pa.string())
    built = ascii_strings(values)
    assert built.type == pa.string() and built.equals(expected)
    assert built.to_pylist() == values
    assert ipc(built) == ipc(expected)
    assert ipc(built.slice(start)) == ipc(expected.slice(start))  # offsets not from 0, as _split slices them


def test_ascii_text_is_taken_from_the_joined_buffer() -> None:
    built = ascii_strings(["ab", "", "cde"])
    assert built.buffers()[2].to_pybytes() == b"abcde" and built.to_pylist() == ["ab", "", "cde"]


@pytest.mark.parametrize("values", [["a", 1], [1.5], ["a", None, 7]])
def test_other_types_are_refused_as_arrow_refuses_them(values: list) -> None:
    with pytest.raises(pa.ArrowException):
        pa.array(values, pa.string())
    with pytest.raises(pa.ArrowException):
        ascii_strings(values)
