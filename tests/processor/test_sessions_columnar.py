"""The columnar batch path with telecom session records mixed in: they are not plainly valid for the fast
path (processor/decode.py), so the batch path hands each to `step.process` in its place, and the outputs,
dead letters and RocksDB contents (session states included) must equal the per-message specification's,
the same harness as tests/processor/test_columnar_differential.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_columnar_differential import (  # the same harness (tests/processor is on the path)
    NOV_02,
    TIMESTAMPS,
    WINDOW,
    Message,
    assert_same_outcome,
    event,
    run_columnar,
    run_legacy,
)

from meterstream.schemas.event import DEFAULT_TIME_WINDOW

STARTS = ["2026-10-05T15:59:00.000Z", "2026-10-05T07:00:00.000Z", "2026-10-03T10:00:00.000Z"]


@st.composite
def session_record(draw: st.DrawFn) -> bytes:
    session: dict = {
        "id": draw(st.sampled_from(["s1", "s2", "s3"])),
        "sequence": draw(st.integers(0, 5)),
        "start": draw(st.sampled_from(STARTS)),
    }
    if draw(st.booleans()):
        session["total_usage"] = True
    if draw(st.integers(0, 4)) == 0:
        session["final"] = True
    doc = {
        "id": draw(st.sampled_from([f"s{i}" for i in range(30)])),
        "tenant": "telco",
        "customer": draw(st.sampled_from(["a", "b"])),
        "meter": draw(st.sampled_from(["voice_seconds", "voice_seconds", "sms", "data_bytes"])),
        "quantity": draw(st.sampled_from(["0", "20", "30", "45", "60", "61", "90", "125.5", "3600"])),
        "time": "2026-10-05T18:00:00.000Z",
        "dimensions": {"destination": draw(st.sampled_from(["4915112345", "49301234", "33123456"]))},
        "session": session,
    }
    return orjson.dumps(doc)


@st.composite
def scenario(draw: st.DrawFn):
    values = draw(st.lists(st.one_of(event(), session_record(), session_record()), min_size=1, max_size=80))
    values += draw(st.lists(st.sampled_from(values), max_size=10))  # exact re-sends
    partitions = draw(st.integers(1, 2))
    offsets = dict.fromkeys(range(partitions), 0)
    msgs = []
    for value in values:
        p = draw(st.integers(0, partitions - 1))
        msgs.append(Message(p, offsets[p], b"k", value, draw(st.sampled_from(TIMESTAMPS))))
        offsets[p] += 1
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(msgs) - 1)), max_size=5)))
    batches = [msgs[a:b] for a, b in zip([0, *cuts], [*cuts, len(msgs)], strict=True) if msgs[a:b]]
    clocks = [NOV_02 + i * draw(st.sampled_from([0, 1000, WINDOW + 1])) for i in range(len(batches))]
    return batches, clocks, draw(st.sampled_from([DEFAULT_TIME_WINDOW, None]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_columnar_equals_specification_with_session_records(case: tuple) -> None:
    assert_same_outcome(*case)


def test_the_scenario_reaches_session_states_and_held_records() -> None:
    """The generator is not vacuous: a fixed case writes session states and holds a record."""
    base = {"tenant": "telco", "customer": "a", "meter": "voice_seconds", "time": "2026-10-05T18:00:00.000Z",
            "dimensions": {"destination": "49301234"}}  # fmt: skip
    session = {"id": "s1", "start": STARTS[0]}
    values = [
        orjson.dumps({**base, "id": f"x{seq}", "quantity": "30", "session": {**session, "sequence": seq}})
        for seq in (1, 3, 2)
    ]
    msgs = [Message(0, i, b"k", v, None) for i, v in enumerate(values)]
    with tempfile.TemporaryDirectory() as tmp:
        legacy = run_legacy(Path(tmp) / "l", [msgs[:2], msgs[2:]], [NOV_02, NOV_02], None)
        columnar = run_columnar(Path(tmp) / "c", [msgs[:2], msgs[2:]], [NOV_02, NOV_02], None)
    assert columnar == legacy
    rated, _dead, state = legacy
    assert len(rated) == 2  # record 3 was held, then rated with record 2
    assert b"s|telco\x1fa\x1fs1" in state[0]
    assert orjson.loads(state[0][b"\x00counts"]) == {"rated": 2, "held": 1}
