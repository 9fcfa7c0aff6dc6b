"""The columnar path's brief telecom answers (`rate_cdr(..., brief=True)`: the rater's memo gives cost, line
and bundle without building a RatedCDR) against the per-message specification, on a batch built so that
the brief answers are most of it: calls covered by the monthly bundle, the call during which it runs out
(the rater's reference path), calls charged after it, SMS, data, and calls to a destination priced in two
rate groups (a memo keyed by the duration, answered briefly too). Same records, dead letters and RocksDB
contents (the differential harness), the brief path counted so that the test cannot pass without it, and
hand-checked amounts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from test_columnar_differential import CATALOG, NOV_02, TOPIC, WINDOW, _sent, assert_same_outcome

from meterstream.processor import columnar
from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.schemas.event import DEFAULT_TIME_WINDOW

PEAK = "2026-10-05T10:00:00.000Z"  # a Monday, 12:00 in Berlin: the peak band


def cdr(i: int, meter: str, quantity: str, destination: str) -> bytes:
    return orjson.dumps(
        {"id": f"c{i}", "tenant": "telco", "customer": "a", "meter": meter, "quantity": quantity, "time": PEAK,
         "dimensions": {"destination": destination}}
    )  # fmt: skip


def batch() -> list[Message]:
    # the bundle national_minutes: 300 minutes = 18,000 s of national and mobile calls a month.
    # 89 calls of 200 s use 17,800 s; the 90th (300 s) runs it out inside the record (the rater's reference
    # path); the 3 after it are charged in full.
    values = [cdr(i, "voice_seconds", "300" if i == 89 else "200", "4915112345") for i in range(93)]
    values += [cdr(100 + i, "sms", "1", "4915112345") for i in range(5)]
    values += [cdr(200 + i, "data_bytes", "2000000", "4915112345") for i in range(5)]
    values += [cdr(300 + i, "voice_seconds", "90", "+8610123456") for i in range(5)]  # RT_WORLD: two groups
    return [Message(0, i, b"telco/a", v, None) for i, v in enumerate(values)]


@pytest.fixture
def brief_answers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records the rater answered briefly in the columnar path."""
    seen = [0]
    rate_cdr = columnar.rate_cdr

    def counted(*args, **kwargs):
        result = rate_cdr(*args, **kwargs)
        seen[0] += type(result) is tuple
        return result

    monkeypatch.setattr(columnar, "rate_cdr", counted)
    return seen


def test_brief_answers_equal_the_specification(brief_answers: list[int]) -> None:
    msgs = batch()
    assert_same_outcome([msgs[:40], msgs[40:]], [NOV_02, NOV_02 + 1000], DEFAULT_TIME_WINDOW)
    # every record but the one that runs the bundle out inside it (the specification ran first on the same plan:
    # the first world call's memo entry is there already)
    assert brief_answers[0] == len(msgs) - 1


def test_brief_amounts_by_hand(brief_answers: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        out = ColumnarStep(CATALOG, TOPIC, WINDOW).run({0: BatchState(store)}, batch(), NOV_02)
        records = _sent(out.rated[0])
        store.close()
    assert brief_answers[0] >= 106  # all but the run-out call and maybe the first world call (filling its memo)
    voice = [r["amount"] for r in records if r["meter"] == "voice_seconds" and r["line"].endswith("/mobile/peak")]
    # covered calls cost nothing; a charged one: 200 s at 0.19 EUR per 60 s (RT_MOB_PEAK, 60/1 increments)
    # = 0.633333... -> 0.6333 (4 decimals, half up)
    assert voice[:89] == ["0.0000"] * 89
    assert voice[90:] == ["0.6333"] * 3
    assert len(voice) == 93
    # +86: no priced prefix, the "*any" rate RT_WORLD: 0.25 connect, 60/60 increments, the first minute at
    # 1.49, later ones at 0.99: 90 s bill 120 s = 0.25 + 1.49 + 0.99 = 2.73
    world = [(r["amount"], r["line"]) for r in records if r["line"].startswith("voice_seconds/international")]
    assert world == [("2.7300", "voice_seconds/international/peak")] * 5
    assert [r["amount"] for r in records if r["meter"] == "sms"] == ["0.0900"] * 5  # RT_SMS_NAT 0.09 each
    # data: 2,000,000 bytes = 2 MB at 0.02 per MB (1 MB steps) = 0.04
    assert [r["amount"] for r in records if r["meter"] == "data_bytes"] == ["0.0400"] * 5
