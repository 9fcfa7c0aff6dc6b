"""IngestService: the ONE ingest path of the API (own routes and compat layers call it).

Each event is validated with `schemas.event.parse_event` semantics (the first bad field and why). The
plainly valid common event takes the processor's fast path (`processor.decode.Decoder.check`, a strict
subset of `parse_event` proven equal to it by tests/processor/test_columnar_differential.py); anything
it does not recognise goes through `parse_event` itself, so every refusal keeps its field and reason.
Either way the event is produced in its canonical wire form (`UsageEvent.to_json()`'s bytes;
tests/api/test_ingest_fast_path.py proves both paths produce the same messages and results).
Valid events go to `usage-events` keyed tenant/customer, rejected ones to `dead-letters` (stage
"api"), through one idempotent acks=all producer; `submit` returns only once Kafka acknowledged every
message of the call, or raises `Unavailable` (the route answers 503 + Retry-After) — an event is
never reported accepted unless it is stored.

`duplicate` comes from a bounded per-process index of recently *acknowledged* ids (written only after
the Kafka ack, so a failed write never hides a retry — OpenMeter #5118) and from earlier events in the
same call. It is a courtesy: the processor's dedup by (tenant, id) stays authoritative, so a duplicate
the API cannot see (another API process, an id older than the index) is still dropped downstream.
Two concurrent calls carrying the same id are both produced (neither is acknowledged yet); the
processor keeps one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Literal

import anyio.to_thread
import msgspec
import orjson
from confluent_kafka import KafkaError, Producer

from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics
from meterstream.processor.decode import Decoder, Fast
from meterstream.schemas.event import (
    DEFAULT_TIME_WINDOW,
    InvalidEvent,
    TimeWindow,
    UsageEvent,
    event_key,
    parse_event,
)
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]


class EventResult(msgspec.Struct, omit_defaults=True):
    """The outcome of one input event, in input order."""

    index: int
    id: str | None
    status: Status
    field: str | None = None
    reason: str | None = None


class Unavailable(Exception):
    """Kafka did not acknowledge in time or the local queue is full: nothing of the call is reported stored."""

    def __init__(self, retry_after_s: int, reason: str) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.reason = reason


class RecentIds:
    """A bounded FIFO set of (tenant, id) pairs the API saw acknowledged.

    Keyed by one string per pair (a tuple key costs ~2x the memory): ~150 bytes per id, so the default
    200,000 ids hold ~30 MB. It only needs to cover a client resending a request whose answer it lost.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, item: tuple[str, str]) -> bool:
        return f"{item[0]}\x1f{item[1]}" in self._ids

    def add_all(self, items: list[tuple[str, str]]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            ids = self._ids
            for tenant, ident in items:
                ids[f"{tenant}\x1f{ident}"] = None
            while len(ids) > self.capacity:
                ids.popitem(last=False)


class _Acks:
    """Delivery reports of one call: done when every produced message has its report.

    Reports arrive on the producer's poll thread; a blocking caller waits on `done`, an async one on
    `future` (resolved on its event loop).
    """

    __slots__ = ("_lock", "done", "errors", "future", "loop", "pending", "sealed")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._lock = threading.Lock()
        self.pending = 0
        self.sealed = False
        self.errors: list[str] = []
        self.done = threading.Event()
        self.loop = loop
        self.future: asyncio.Future | None = loop.create_future() if loop is not None else None

    def _finish(self) -> None:  # under the lock, once
        self.done.set()
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.pending += n

    def seal(self) -> None:
        with self._lock:
            self.sealed = True
            if self.pending == 0:
                self._finish()

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(str(err))
            self.pending -= 1
            if self.sealed and self.pending == 0:
                self._finish()


_dumps = orjson.dumps


def wire_json(fast: Fast) -> bytes:
    """The canonical wire form of a fast-path event: the bytes `UsageEvent.to_json()` gives for it (same
    fields, same order). Raises TypeError for strings orjson cannot encode (lone surrogates)."""
    data: dict[str, Any] = {
        "id": fast.id, "tenant": fast.tenant, "customer": fast.customer, "meter": fast.meter,
        "quantity": fast.quantity_text, "time": fast.time_text,
    }  # fmt: skip
    if fast.subject is not None:
        data["subject"] = fast.subject
    if fast.dimensions:
        data["dimensions"] = fast.dimensions
    if fast.source is not None:
        data["source"] = fast.source
    if fast.origin is not None:
        data["origin"] = {"key": fast.origin[0], "kind": fast.origin[1]}
    return _dumps(data)


class _Batch:
    """One call's validated events: results in input order, messages to produce, ids to remember."""

    __slots__ = ("accepted_ids", "bad", "good", "results")

    def __init__(self) -> None:
        self.results: list[EventResult] = []
        self.good: list[tuple[bytes, bytes]] = []  # (key, value) to usage-events
        self.bad: list[tuple[bytes | None, bytes]] = []  # (key, dead letter) to dead-letters
        self.accepted_ids: list[tuple[str, str]] = []


_dlq_offsets = itertools.count(time.time_ns())


class IngestService:
    """Validate, produce and wait for Kafka. Thread-safe; `submit` blocks (call it from a worker thread)."""

    def __init__(self, settings: Settings, producer: Producer | None = None, *, fast_path: bool = True) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.timeout_s = settings.api_produce_timeout_s
        self._producer = producer or self._make_producer()
        self._producer_lock = threading.Lock()
        self.recent = RecentIds(settings.api_recent_ids)
        # the processor's time window, judged at reception: a too old / too future event is refused here,
        # with the same reason, instead of being dead-lettered downstream after a 200 "accepted"
        self.window = TimeWindow.of(settings.event_max_age_days, settings.event_max_future_minutes)
        # the plainly valid common event is recognised cheaply (same window); off: parse_event for every event
        self._check = Decoder(self.window).check if fast_path else None
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="api-producer-poll", daemon=True)
        self._poller.start()

    def _make_producer(self) -> Producer:
        # librdkafka gives up on a message after the API's wait, so a 503 means "not stored" whenever the
        # broker never had it (a message in flight at that moment may still be; the processor dedups it).
        ms = int(self.settings.api_produce_timeout_s * 1000)
        conf = {"linger.ms": 5, "message.timeout.ms": ms, "error_cb": self._on_error, "logger": log}
        return make_producer(self.settings, **conf)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():  # an idempotent producer can reach a fatal state: replace it
            log.error("fatal producer error, replacing the producer: %s", err)
            self._fatal = True
        else:
            log.debug("producer: %s", err)

    _fatal = False

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._poller.join(timeout)
        self._producer.flush(timeout)

    # -- validation (pure) -------------------------------------------------------------------------

    @staticmethod
    def validate(
        tenant: str, data: Any, received_ms: int | None = None, window: TimeWindow = DEFAULT_TIME_WINDOW
    ) -> tuple[bytes, UsageEvent]:
        """(the event as JSON with the caller's tenant, the parsed event), or InvalidEvent (field + reason).

        The bytes are exactly what `parse_event` accepted. `submit` produces the event's canonical form
        (`to_json()`) instead, the same bytes its fast path produces for the event.
        """
        if not isinstance(data, dict):
            raise InvalidEvent("$", "must be a JSON object")
        data = {**data, "tenant": tenant}
        try:
            raw = orjson.dumps(data)
        except TypeError as exc:
            raise InvalidEvent("$", f"not JSON-serialisable ({exc})") from None
        return raw, parse_event(raw, received_ms, window)

    # -- the one ingest path ------------------------------------------------------------------------

    def submit(self, tenant: str, events: list[dict[str, Any]]) -> list[EventResult]:
        """Validate each event, produce the valid ones and the dead letters, wait for Kafka's acks (blocking)."""
        batch = self._prepare(tenant, events)
        acks = self._send(batch, _Acks())
        if not acks.done.wait(self.timeout_s + 2.0):
            raise self._late()
        return self._finish(batch, acks)

    async def asubmit(self, tenant: str, events: list[dict[str, Any]]) -> list[EventResult]:
        """`submit` for an event loop: no thread waits for Kafka (the delivery reports resolve a future);
        validating a large batch runs in a worker thread, a small one inline."""
        if len(events) > 64:
            batch = await anyio.to_thread.run_sync(self._prepare, tenant, events)
        else:
            batch = self._prepare(tenant, events)
        acks = self._send(batch, _Acks(asyncio.get_running_loop()))
        assert acks.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(acks.future), self.timeout_s + 2.0)
        except TimeoutError:
            raise self._late() from None
        return self._finish(batch, acks)

    def dead_letter(self, tenant: str, items: list[tuple[Any, InvalidEvent]]) -> None:
        """Dead-letter (stage "api") events a caller refused itself (a compat layer's translation), in the same
        format as `submit`'s rejects; returns once Kafka acknowledged them, else raises `Unavailable`."""
        if not items:
            return
        batch = _Batch()
        batch.bad = [self._dead_letter(tenant, data, exc) for data, exc in items]
        acks = self._send(batch, _Acks())
        if not acks.done.wait(self.timeout_s + 2.0):
            raise self._late()
        self._finish(batch, acks)

    def _prepare(self, tenant: str, events: list[dict[str, Any]]) -> _Batch:
        b = _Batch()
        seen: set[str] = set()
        received_ms = int(time.time() * 1000)
        recent, window, results, check = self.recent, self.window, b.results, self._check
        recent_ids, good, accepted_ids = recent._ids, b.good, b.accepted_ids
        prefix = f"{tenant}\x1f"
        keys: dict[str, bytes] = {}  # customer -> Kafka key, within the call
        for index, data in enumerate(events):
            fast = check({**data, "tenant": tenant}, received_ms) if check is not None and type(data) is dict else None
            if fast is not None:
                try:
                    raw = wire_json(fast)
                except TypeError:  # not encodable (e.g. a lone surrogate): the specification says why
                    fast = None
            if fast is not None:
                ident, customer = fast.id, fast.customer
            else:
                try:
                    event = self.validate(tenant, data, received_ms, window)[1]
                except InvalidEvent as exc:
                    ident = data.get("id") if isinstance(data, dict) else None
                    results.append(EventResult(index, ident if isinstance(ident, str) else None, "rejected",
                                               exc.field, exc.reason))  # fmt: skip
                    b.bad.append(self._dead_letter(tenant, data, exc))
                    continue
                ident, customer, raw = event.id, event.customer, event.to_json()
            if ident in seen or prefix + ident in recent_ids:  # RecentIds' own key: tenant \x1f id
                results.append(EventResult(index, ident, "duplicate"))
                continue
            seen.add(ident)
            accepted_ids.append((tenant, ident))
            results.append(EventResult(index, ident, "accepted"))
            key = keys.get(customer)
            if key is None:
                key = keys[customer] = event_key(tenant, customer)
            good.append((key, raw))
        return b

    def _late(self) -> Unavailable:
        return Unavailable(max(1, int(self.timeout_s)), "Kafka did not acknowledge in time")

    def _finish(self, batch: _Batch, acks: _Acks) -> list[EventResult]:
        if acks.errors:
            raise Unavailable(max(1, int(self.timeout_s)), f"Kafka refused: {acks.errors[0]}")
        self.recent.add_all(batch.accepted_ids)  # only now: stored for sure
        return batch.results

    def _dead_letter(self, tenant: str, data: Any, exc: InvalidEvent) -> tuple[bytes | None, bytes]:
        customer = data.get("customer") if isinstance(data, dict) else None
        try:
            key = event_key(tenant, customer) if isinstance(customer, str) and customer else None
        except UnicodeEncodeError:  # a lone surrogate (only from Python callers: msgspec refuses it in JSON)
            key = None
        try:
            raw = orjson.dumps({**data, "tenant": tenant} if isinstance(data, dict) else data).decode()
        except TypeError:
            raw = repr(data)
        ident = data.get("id") if isinstance(data, dict) else None
        # The API has no source message: topic "api", partition = process id, offset = a process-unique
        # counter seeded with the clock, so dead letters never collapse onto each other downstream.
        letter = {
            "stage": "api", "field": exc.field, "reason": exc.reason, "topic": "api",
            "partition": os.getpid() % 65_536, "offset": next(_dlq_offsets),
            "key": key.decode() if key else None, "raw": raw,
            "event_id": ident if isinstance(ident, str) else None, "tenant": tenant,
        }  # fmt: skip
        try:
            return key, orjson.dumps(letter)
        except TypeError:  # a lone surrogate in the id, field or reason (only from Python callers): escaped
            safe = {k: v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else v
                    for k, v in letter.items()}  # fmt: skip
            return key, orjson.dumps(safe)

    def _send(self, batch: _Batch, acks: _Acks) -> _Acks:
        """Produce the batch's messages with `acks` as their delivery callback; sealed when all are queued."""
        if self._fatal:
            self._replace_producer()
        produce = self._producer.produce
        try:
            for topic, records in ((self.topics.usage, batch.good), (self.topics.dead_letters, batch.bad)):
                acks.add(len(records))  # counted up front (one lock, not one per message)
                for i, (key, value) in enumerate(records):
                    try:
                        produce(topic, value=value, key=key, on_delivery=acks)
                    except BufferError:
                        acks.errors.append("local queue full")
                        acks.add(i - len(records))  # not queued: drop their count again
                        raise Unavailable(1, "the producer queue is full") from None
        finally:
            acks.seal()
        return acks

    def _replace_producer(self) -> None:
        with self._producer_lock:
            if not self._fatal:
                return
            old = self._producer
            self._producer = self._make_producer()
            self._fatal = False
        old.flush(0)

    # -- health ----------------------------------------------------------------------------------

    def kafka_ready(self, timeout: float = 2.0) -> tuple[bool, str]:
        """A metadata request for the usage topic, with a short timeout."""
        try:
            md = self._producer.list_topics(self.topics.usage, timeout=timeout)
        except Exception as exc:
            return False, str(exc)
        topic = md.topics.get(self.topics.usage)
        if topic is None or topic.error is not None:
            return False, f"topic {self.topics.usage}: {topic.error if topic else 'missing'}"
        return True, f"{len(md.brokers)} broker(s)"
