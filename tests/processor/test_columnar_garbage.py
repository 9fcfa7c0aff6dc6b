"""A batch leaves no reference cycle behind, refused events included.

A refused event goes through the specification (`step.process` -> `parse_event`), which raises and
catches exceptions. If one of those exceptions stays referenced from a frame of its own traceback, the
chain of frames (each finished frame keeps its caller) holds the batch's whole working set — its decoded
events, dedup keys, rated rows — until a full collection finds the cycle: memory, and collector time
on every young collection in between. These tests fail on such a cycle: with the collector paused, every
object of the batch must be freed by reference counting alone (`gc.collect()` then finds nothing).
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import orjson
import pytest

from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.event import InvalidEvent, parse_event

NOW = 1_793_577_600_000  # 2026-11-02T00:00:00Z
CATALOG = parse_catalog(
    {
        "version": 1,
        "plans": [{"id": "p", "currency": "USD", "meters": {"calls": {"model": "unit", "unit_amount": "0.5"}}}],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "p"}],
    }
)


def event(i: int, quantity: object) -> bytes:
    return orjson.dumps(
        {"id": f"e{i}", "tenant": "t", "customer": "c", "meter": "calls", "quantity": quantity,
         "time": "2026-11-01T10:00:00.000Z"}
    )  # fmt: skip


@pytest.fixture
def collector_paused():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


BAD = [
    b'{"id": "x", "tenant": "t", "customer": "c", "meter": "calls", "quantity": "-1", "time": "2026-11-01T10:00:00Z"}',
    b'{"id": "x", "tenant": "t", "customer": "c", "meter": "calls", "quantity": "1", "time": "yesterday"}',
    b'{"id": "x", "tenant": "t", "customer": "c", "meter": "calls", "quantity": "1"}',
]


@pytest.mark.parametrize("raw", BAD)
def test_a_refused_event_leaves_no_cycle(raw: bytes, collector_paused: None) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(raw)
    assert gc.collect() == 0


def run_batch() -> None:
    values = [event(i, "2") for i in range(50)] + BAD + [event(50, "3"), event(0, "2")]  # a duplicate too
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        step = ColumnarStep(CATALOG, "usage-events", 35 * 86_400_000)
        state = BatchState(store)
        out = step.run({0: state}, [Message(0, i, b"t/c", v) for i, v in enumerate(values)], NOW)
        assert len(out.rated[0]) == 51  # e0..e49 and e50 (hand count: three refused, one duplicate dropped)
        assert [dl["field"] for _, _, dl in out.dead_letters] == ["quantity", "time", "time"]
        state.commit(out.last[0] + 1, out.outcomes[0])
        del out, state, step
        store.close()


def test_a_batch_with_refused_events_leaves_no_cycle() -> None:
    run_batch()  # once first: modules imported on first use (their classes are cycles) are not the batch's
    gc.collect()
    gc.disable()
    try:
        run_batch()
        assert gc.collect() == 0
    finally:
        gc.enable()
