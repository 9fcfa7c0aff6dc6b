"""The faust engine's own replay data: what a crash between its table writes and its offset commit leaves.

faust commits table writes (changelog) and input offsets separately, so a message can come back with
some of its writes landed. The shared dedup entry stays {"p", "o", "t"}; the engine keeps the record
and the running-total writes of each processed position under its own `f|` key, written first.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

pytest.importorskip("faust")

from meterstream.processor.faust_engine import output_key, process_replayable
from meterstream.processor.step import Kind, Position
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")
WINDOW = 35 * 86_400_000
# t1's plan "basic", api_calls graduated: 0-10 free, 10-100 at 0.5, above at 0.25
DKEY = "d|t1\x1f{}"
TOTAL = "c|t1\x1fc1\x1fapi_calls\x1f2026-10"


def ev(i: str, q: str) -> bytes:
    return orjson.dumps(
        {"id": i, "tenant": "t1", "customer": "c1", "meter": "api_calls", "quantity": q, "time": "2026-10-05T00:00:00Z"}
    )


def run(state: dict, value: bytes, offset: int):
    return process_replayable(CATALOG, state, value, Position("usage", 0, offset, b"t1/c1"), 1_000, WINDOW)


def test_dedup_entry_is_shared_shape_and_output_kept_apart() -> None:
    state: dict = {}
    out = run(state, ev("e1", "20"), 0)
    assert out.kind is Kind.RATED and Decimal(out.rated["amount"]) == Decimal("5")  # 10 free + 10 * 0.5
    assert state[DKEY.format("e1")] == {"p": 0, "o": 0, "t": 1_000}
    assert state[TOTAL] == ["20", 0]
    kept = state[output_key(0, 0)]
    assert kept == {"p": 0, "t": 1_000, "r": out.rated, "w": [(TOTAL, ["20", 0])]}
    assert set(state) == {DKEY.format("e1"), TOTAL, "f|0|0"}


def test_replay_reemits_identical_record() -> None:
    state: dict = {}
    first = run(state, ev("e1", "20"), 0)
    again = run(state, ev("e1", "20"), 0)  # same position: the message came back after a crash
    assert again.kind is Kind.REPLAYED and orjson.dumps(again.rated) == orjson.dumps(first.rated)
    assert state[TOTAL] == ["20", 0]  # not counted twice


def test_replay_finishes_running_total_cut_off_by_crash() -> None:
    state: dict = {}
    run(state, ev("e1", "20"), 0)
    snapshot = dict(state)
    second = run(state, ev("e2", "30"), 1)
    # crash: the output entry and dedup entry of e2 reached the changelog, its running total did not
    crashed = {**snapshot, "f|0|1": state["f|0|1"], DKEY.format("e2"): state[DKEY.format("e2")]}
    assert crashed[TOTAL] == ["20", 0]
    replay = run(crashed, ev("e2", "30"), 1)
    assert replay.kind is Kind.REPLAYED and replay.rated == second.rated
    assert Decimal(replay.rated["amount"]) == Decimal("15")  # cumulative 20 -> 50: 30 * 0.5
    assert crashed[TOTAL] == ["50", 1]
    after = run(crashed, ev("e3", "50"), 2)
    # cumulative 50 -> 100 is all in tier 2: 50 * 0.5
    assert after.rated["cumulative"] == "100" and Decimal(after.rated["amount"]) == Decimal("25")


def test_output_entry_without_dedup_entry_is_rated_again_identically() -> None:
    state: dict = {}
    run(state, ev("e1", "20"), 0)
    snapshot = dict(state)
    second = run(state, ev("e2", "30"), 1)
    crashed = {**snapshot, "f|0|1": state["f|0|1"]}  # crash after the output entry only
    again = run(crashed, ev("e2", "30"), 1)
    assert again.kind is Kind.RATED and again.rated == second.rated and crashed == state


def test_duplicate_at_another_position_is_dropped() -> None:
    state: dict = {}
    run(state, ev("e1", "20"), 0)
    dup = run(state, ev("e1", "20"), 5)
    assert dup.kind is Kind.DUPLICATE and dup.rated is None and "f|0|5" not in state
