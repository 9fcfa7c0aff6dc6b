"""The rated-usage message format: records packed as JSON Lines, bounded in size, order kept."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from meterstream.schemas.rated import pack, record_count, unpack


def test_pack_splits_at_the_byte_limit_and_keeps_order() -> None:
    lines = [orjson.dumps({"id": f"e{i}", "pad": "x" * 40}) for i in range(10)]  # 60 bytes each
    values = pack(lines, max_bytes=125)  # two records and a newline (121 bytes) fit, three (182) do not
    assert [record_count(v) for v in values] == [2, 2, 2, 2, 2]
    assert [r["id"] for v in values for r in unpack(v)] == [f"e{i}" for i in range(10)]
    assert all(len(v) == 121 for v in values)


def test_a_record_larger_than_the_limit_travels_alone() -> None:
    small, big = orjson.dumps({"id": "a"}), orjson.dumps({"id": "b", "pad": "x" * 500})
    assert pack([small, big, small], max_bytes=100) == [small, big, small]


def test_nothing_to_pack_is_no_message() -> None:
    assert pack([]) == []


@given(st.lists(st.text(max_size=30), max_size=60), st.integers(min_value=1, max_value=400))
def test_pack_then_unpack_gives_back_every_record(ids: list[str], limit: int) -> None:
    lines = [orjson.dumps({"id": i}) for i in ids]
    values = pack(lines, max_bytes=limit)
    assert [r["id"] for v in values for r in unpack(v)] == ids
    assert sum(record_count(v) for v in values) == len(ids)
