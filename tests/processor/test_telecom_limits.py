"""One voice record must not stall the processor: rating splits a call at every time-band change, so a
26-digit duration (valid for the event schema) would take ~10^21 days of work. Longer than 31 days
(2,678,400 s) it is dead-lettered at once, naming the quantity, by the specification and the batch path."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson

from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import load_catalog
from meterstream.rating.telecom.rater import MAX_VOICE_SECONDS

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "deploy" / "demo_catalog.yaml")
NOW = 1_793_577_600_000  # 2026-11-02


def call(i: str, seconds: str) -> bytes:
    return orjson.dumps({"id": i, "tenant": "telco", "customer": "line-1", "meter": "voice_seconds",
                         "quantity": seconds, "time": "2026-10-30T10:00:00.000Z",
                         "dimensions": {"destination": "+4930123456"}})  # fmt: skip


def test_a_voice_record_longer_than_31_days_is_a_dead_letter_not_a_stall() -> None:
    assert MAX_VOICE_SECONDS == 2_678_400
    state: dict = {}
    t0 = time.monotonic()
    out = process(CATALOG, state, call("huge", "9" * 26), Position("usage", 0, 0, None), NOW, 10**12)
    assert time.monotonic() - t0 < 1.0
    assert out.kind is Kind.DEAD_LETTER
    assert out.dead_letter["field"] == "quantity" and "duration too long" in out.dead_letter["reason"]
    # 31 days exactly is still rated; one second more is not
    ok = process(CATALOG, state, call("month", str(MAX_VOICE_SECONDS)), Position("usage", 0, 1, None), NOW, 10**12)
    over = process(CATALOG, state, call("more", str(MAX_VOICE_SECONDS + 1)), Position("usage", 0, 2, None), NOW, 10**12)
    assert ok.kind is Kind.RATED and over.kind is Kind.DEAD_LETTER


def test_the_batch_path_dead_letters_it_too() -> None:
    msgs = [Message(0, 0, None, call("huge", "9" * 26)), Message(0, 1, None, call("ok", "60"))]
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        t0 = time.monotonic()
        out = ColumnarStep(CATALOG, "usage", 10**12, None).run({0: BatchState(store)}, msgs, NOW)
        store.close()
    assert time.monotonic() - t0 < 2.0
    assert [(d[2]["event_id"], d[2]["field"]) for d in out.dead_letters] == [("huge", "quantity")]
    assert out.outcomes[0][Kind.RATED.value] == 1
