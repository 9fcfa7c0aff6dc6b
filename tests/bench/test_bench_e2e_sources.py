"""bench/e2e.py's latency phase maps each rated message to the input positions its records carry."""

from __future__ import annotations

import sys

import orjson
from by_path import ROOT, load

from meterstream.schemas.rated import RATED_FIELDS, pack, pack_rows
from meterstream.schemas.rated_arrow import pack_arrow

sys.path.append(str(ROOT / "bench"))  # e2e.py imports its sibling modules (after every other path: no shadowing)
e2e = load("bench/e2e.py")


def _row(p: int, o: int) -> tuple:
    return ("t", f"e{o}", "c", "", "m", "2026-11-05T10:00:00.000Z", "2026-11", "1", "0.5", "1", "EUR", "p", "m",
            {"k": "v"}, "", p, o)  # fmt: skip


def test_a_json_rows_message_gives_its_rows_positions_in_order() -> None:
    rows = [_row(3, 17), _row(3, 18), _row(3, 40)]
    (value,) = pack_rows(rows)
    assert e2e.sources(value) == [(3, 17), (3, 18), (3, 40)]


def test_an_arrow_message_too() -> None:
    (value,) = pack_arrow([_row(2, 7), _row(2, 9)])
    assert e2e.sources(value) == [(2, 7), (2, 9)]


def test_a_json_lines_message_too() -> None:
    lines = [orjson.dumps(dict(zip(RATED_FIELDS, _row(1, o), strict=True))) for o in (5, 9)]
    (value,) = pack(lines)
    assert e2e.sources(value) == [(1, 5), (1, 9)]


def test_input_positions_follow_each_partitions_end_offset_in_produce_order() -> None:
    # one idempotent producer: the n-th event sent to partition p lands at p's end offset before + n
    got = e2e.input_positions([1, 0, 1, 1, 0], {0: 10, 1: 5, 2: 7})
    assert got == [(1, 5), (0, 10), (1, 6), (1, 7), (0, 11)]
