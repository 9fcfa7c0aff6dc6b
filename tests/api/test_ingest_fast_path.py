"""IngestService's fast path (processor.decode.Decoder.check + the canonical wire form) against the
specification (`parse_event` for every event): hypothesis event bodies — valid, invalid in every
field, other tenants, duplicates in the call and across calls, window edges to the millisecond —
must give the same results and the same produced messages (topic, key, bytes) with the fast path on
and off. A fake producer records the produce calls and acknowledges at once: no broker needed.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any
from unittest import mock

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.api import ingest as ingest_mod
from meterstream.api.ingest import IngestService, wire_json
from meterstream.processor.decode import Decoder
from meterstream.schemas.event import TimeWindow, parse_event
from meterstream.schemas.settings import Settings

NOW_MS = 1_793_620_800_000  # 2026-11-02T12:00:00.000Z, the API's clock in these tests
WINDOW = TimeWindow.of(92, 60)
TENANT = "acme"
# the window's ends: 92 days before NOW (2026-08-02T12:00:00.000Z) and 60 minutes after (13:00:00.000Z)
EDGE_TIMES = [
    "2026-08-02T12:00:00.000Z",  # oldest accepted
    "2026-08-02T11:59:59.999Z",  # 1 ms too old
    "2026-11-02T13:00:00.000Z",  # latest accepted
    "2026-11-02T13:00:00.001Z",  # 1 ms too far ahead
]


class FakeProducer:
    """Records produce calls; acknowledges each message at once (no broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None) -> None:
        self.sent.append((topic, key, value))
        if on_delivery is not None:
            on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        import time

        time.sleep(min(timeout, 0.01))
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def _service(fast_path: bool) -> tuple[IngestService, FakeProducer]:
    producer = FakeProducer()
    s = Settings(event_max_age_days=92, event_max_future_minutes=60)
    return IngestService(s, producer, fast_path=fast_path), producer  # type: ignore[arg-type]


def _run(fast_path: bool, calls: list[list[Any]]) -> tuple[list[list[Any]], list[tuple[str, bytes | None, bytes]]]:
    svc, producer = _service(fast_path)
    try:
        clock = SimpleNamespace(time=lambda: NOW_MS / 1000)
        offsets = itertools.count()  # the dead letters' process-unique offsets, the same in both runs
        with mock.patch.object(ingest_mod, "time", clock), mock.patch.object(ingest_mod, "_dlq_offsets", offsets):
            results = [[msgspec.to_builtins(r) for r in svc.submit(TENANT, events)] for events in calls]
    finally:
        svc.close(0.5)
    return results, producer.sent


# -- strategies: each field valid, at a limit, or wrong -------------------------------------------------

_text = st.text(max_size=8)
_ids = (
    st.sampled_from(["e1", "e2", "e3"])
    | st.text(min_size=1, max_size=70)
    | st.sampled_from(["", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "\ud800", "é" * 70])
    | st.integers(-3, 3)
    | st.none()
)
_customers = (
    st.sampled_from(["c1", "c2", "c/3", "", "y" * 64, "y" * 65, "y" * 256, "y" * 257, "\ud800x"])
    | _text
    | st.none()
    | st.integers()
)
_tenants = st.sampled_from([TENANT, "other", "", "a/b", "x\x01"]) | st.none() | st.integers()
_meters = (
    st.sampled_from(["api_calls", "gpu.seconds", "s-3", "Api", "1abc", "", "m" * 128, "m" * 129, "a b"])
    | _text
    | st.none()
)
_QUANTITY_TEXTS = ["0", "1", "1.5", "0.000000001", "1.0000000001", "01", " 1", "1e3", "-1", "", ".5", "5.",
                   "9" * 18, "9" * 19, "1" * 30, "NaN", "1.50"]  # fmt: skip
_quantities = (
    st.sampled_from(_QUANTITY_TEXTS)
    | st.integers(-5, 10**19)
    | st.sampled_from([10**18, 10**18 - 1, 2**63, 2**64, 9_007_199_254_740_993])
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
    | st.decimals(min_value=0, max_value=10**20, places=9).map(lambda d: format(d, "f"))
)
_instants = st.integers(NOW_MS - 93 * 86_400_000, NOW_MS + 2 * 3_600_000)


def _iso(ms: int, form: int) -> str:
    from datetime import UTC, datetime, timedelta

    d = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    if form == 0:
        return d.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # canonical
    if form == 1:
        return d.isoformat(timespec="seconds").replace("+00:00", "Z")
    if form == 2:
        return d.astimezone(__import__("datetime").timezone(timedelta(hours=2))).isoformat(timespec="milliseconds")
    return d.isoformat(timespec="microseconds").replace("+00:00", "Z")


BAD_TIMES = ["2026-02-30T00:00:00.000Z", "2026-11-02T25:00:00.000Z", "yesterday", "", "1899-12-31T23:59:59.999Z",
             "2026-11-02 12:00:00.000Z"]  # fmt: skip
_times = (
    st.builds(_iso, _instants, st.sampled_from([0, 0, 0, 1, 2, 3]))
    | st.sampled_from(EDGE_TIMES + BAD_TIMES)
    | st.integers()
    | st.none()
)
_dim_keys = st.sampled_from(["region", "", "k\x01", "z" * 16, "z" * 17, "ü" * 16]) | _text
_dim_values = (
    st.sampled_from(["eu", "", "v" * 16, "v" * 17, "v" * 64, "\ud800"]) | _text | st.integers(0, 3) | st.none()
)
_dimensions = st.dictionaries(_dim_keys, _dim_values, max_size=4) | st.none() | st.just([]) | st.just("eu")
_optional_text = st.none() | _text | st.sampled_from(["s" * 64, "s" * 65, "s" * 257]) | st.integers(0, 2)

_origins = (
    st.fixed_dictionaries({"key": st.sampled_from(["4:lago:t1", "", "k" * 65, "k" * 257]) | _text,
                           "kind": st.sampled_from(["storage", "A", "x" * 64]) | _text | st.integers(0, 2)})
    | st.sampled_from([None, "o", {"key": "k"}, {"key": "k", "kind": "A", "x": 1}, []])
)  # fmt: skip
_FIELDS = {
    "id": _ids, "tenant": _tenants, "customer": _customers, "subject": _optional_text, "meter": _meters,
    "quantity": _quantities, "time": _times, "dimensions": _dimensions, "source": _optional_text, "origin": _origins,
}  # fmt: skip
_PLAIN = {  # the optional fields, plainly valid
    "tenant": st.just(TENANT), "subject": _text, "source": _text,
    "origin": st.fixed_dictionaries({"key": st.sampled_from(["4:lago:t1", "9:chat-svc:e1"]),
                                     "kind": st.sampled_from(["storage", "prompt"])}),
    "dimensions": st.dictionaries(st.sampled_from(["region", "zone"]), st.sampled_from(["eu", "us", ""]), max_size=2),
}  # fmt: skip
_REQUIRED = {"id", "customer", "meter", "quantity", "time"}


@st.composite
def _event(draw: st.DrawFn) -> Any:
    shape = draw(st.integers(0, 19))
    if shape == 0:  # not an object
        return draw(st.sampled_from([[], "event", 3, None, [{"id": "e1"}]]))
    # mostly plainly valid events, each field sometimes replaced by one from the wide strategies above
    event: dict[str, Any] = {
        "id": draw(st.sampled_from(["e1", "e2", "e3", "e4"]) | st.text(min_size=1, max_size=12)),
        "customer": draw(st.sampled_from(["c1", "c2"])),
        "meter": draw(st.sampled_from(["api_calls", "gpu.seconds"])),
        "quantity": draw(st.sampled_from(["1", "2.5", 3, "0.000000001"])),
        "time": draw(st.builds(_iso, st.integers(NOW_MS - 92 * 86_400_000, NOW_MS + 3_600_000), st.just(0))),
    }
    for name, strategy in _FIELDS.items():
        if draw(st.integers(0, 9)) == 0:
            event[name] = draw(strategy)
        elif name not in _REQUIRED and draw(st.booleans()):
            event[name] = draw(_PLAIN[name])
    if draw(st.integers(0, 19)) == 0:
        del event[draw(st.sampled_from(sorted(_REQUIRED)))]
    if draw(st.integers(0, 29)) == 0:
        event["extra"] = draw(_text)
    return event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_event(), min_size=1, max_size=12), min_size=1, max_size=3))
def test_fast_path_equals_the_specification(calls: list[list[Any]]) -> None:
    fast = _run(True, calls)
    slow = _run(False, calls)
    assert fast[0] == slow[0]  # results: index, id, status, field, reason
    assert fast[1] == slow[1]  # messages: topic, key, bytes, in order


@settings(max_examples=300, deadline=None)
@given(st.lists(_event(), min_size=1, max_size=5))
def test_wire_form_is_to_json(events: list[Any]) -> None:
    """Every event the fast path takes is produced as `parse_event(...).to_json()`'s bytes."""
    check = Decoder(WINDOW).check
    for data in events:
        if not isinstance(data, dict):
            continue
        data = {**data, "tenant": TENANT}
        fast = check(data, NOW_MS)
        if fast is None:
            continue
        try:
            raw = orjson.dumps(data)
        except TypeError:
            with pytest.raises(TypeError):
                wire_json(fast)
            continue
        assert wire_json(fast) == parse_event(raw, NOW_MS, WINDOW).to_json()


def test_fast_path_is_taken_and_produces_the_canonical_form() -> None:
    """By hand: valid events in a non-canonical key order go the fast way (parse_event is not called) and
    are produced in the canonical wire form (the quantity keeps its scale, as Decimal("1.50") does)."""
    events = [
        {"time": "2026-11-02T11:00:00.000Z", "quantity": 42, "meter": "api_calls", "customer": "c1", "id": "a",
         "dimensions": {"region": "eu"}, "subject": "s1"},
        {"id": "b", "customer": "c2", "meter": "api_calls", "quantity": "1.50", "time": "2026-11-02T11:00:00.000Z",
         "dimensions": {}, "source": None},
        {"id": "a", "customer": "c1", "meter": "api_calls", "quantity": "1", "time": "2026-11-02T11:00:00.000Z"},
    ]  # fmt: skip
    with mock.patch.object(ingest_mod, "parse_event", side_effect=AssertionError("slow path taken")):
        results, sent = _run(True, [events])
    assert [r["status"] for r in results[0]] == ["accepted", "accepted", "duplicate"]
    assert sent == [
        ("usage-events", b"acme/c1",
         b'{"id":"a","tenant":"acme","customer":"c1","meter":"api_calls","quantity":"42",'
         b'"time":"2026-11-02T11:00:00.000Z","subject":"s1","dimensions":{"region":"eu"}}'),
        ("usage-events", b"acme/c2",
         b'{"id":"b","tenant":"acme","customer":"c2","meter":"api_calls","quantity":"1.50",'
         b'"time":"2026-11-02T11:00:00.000Z"}'),
    ]  # fmt: skip


def test_refusals_keep_the_specifications_field_and_reason() -> None:
    """The window's edges to the millisecond and a wrong quantity, by hand (reasons from schemas/event.py)."""
    base = {"customer": "c1", "meter": "api_calls", "quantity": "1"}
    events = [{**base, "id": f"t{i}", "time": t} for i, t in enumerate(EDGE_TIMES)]
    events.append({**base, "id": "q", "time": EDGE_TIMES[0], "quantity": "-1"})
    results, sent = _run(True, [events])
    got = [(r["status"], r.get("field"), r.get("reason")) for r in results[0]]
    assert got[0] == ("accepted", None, None)
    assert got[1] == ("rejected", "time", "more than 92 days before the event was received")
    assert got[2] == ("accepted", None, None)
    assert got[3] == ("rejected", "time", "more than 60 minutes after the event was received")
    assert got[4][:2] == ("rejected", "quantity")
    assert [t for t, _, _ in sent].count("dead-letters") == 3


def test_a_full_local_queue_is_unavailable_and_the_acks_balance() -> None:
    """The 3rd of 5 messages does not fit the local queue: 503-style Unavailable; the two queued messages'
    reports complete the call's acks (3 never queued are not waited for)."""

    class FullAfterTwo(FakeProducer):
        def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None) -> None:
            if len(self.sent) == 2:
                raise BufferError("Local: Queue full")
            super().produce(topic, value, key, on_delivery)

    producer = FullAfterTwo()
    svc = IngestService(Settings(), producer, fast_path=True)  # type: ignore[arg-type]
    try:
        batch = ingest_mod._Batch()
        batch.good = [(b"acme/c1", b"{}")] * 5
        acks = ingest_mod._Acks()
        with pytest.raises(ingest_mod.Unavailable, match="queue is full"):
            svc._send(batch, acks)
        assert len(producer.sent) == 2
        assert acks.pending == 0 and acks.done.is_set()
        assert acks.errors == ["local queue full"]
    finally:
        svc.close(0.5)
