"""The outbox relay: entity changes from the SQL store's outbox onto the compacted `entities` topic.

Every entity write appends the changed documents to `entity_outbox` in its own transaction
(entities/outbox.py). The relay reads the outbox in seq order from its position (`relay_position`),
produces each change with its document key (idempotent producer, acks=all, one partition: the topic
keeps the outbox order), waits until Kafka acknowledged all of them, and only then advances its position.
A crash between the acknowledgement and the position write repeats those changes: at-least-once, which
is harmless because each message is a whole document with a version and the readers keep the highest
version per key (processor/live_catalog.py). It polls every `interval` (≤ 0.5 s) and at once again while
a batch came back full, so a committed change is on the topic well within a second.

It runs as a daemon thread inside the API process (api/app.py starts it in the lifespan; `meterstream up`
runs the API), with Prometheus metrics (changes relayed, outbox backlog, seconds since the last relay)
and a stall check (`health()`: backlog > 0 and no relay for `stall_seconds`).

After relaying a subscription it replays the dead letters that were waiting for it: usage of that
tenant/customer (any customer of the tenant for a `*` default subscription) dead-lettered because no
subscription covered its time, whose event time a phase of the new subscription covers. That runs on its
own thread, `replay_delay` seconds later (by then the processors have the subscription; they also catch up
with the topic before refusing an event for want of one), one event id once per relay process, through
ingest/dlq.py (the processor's (tenant, id) dedup charges a replayed event once). See
docs/entities-stream.md.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Producer
from prometheus_client import Counter, Gauge
from sqlalchemy.orm import sessionmaker

from meterstream.background import BackgroundLoop
from meterstream.entities import outbox
from meterstream.health import StallWatch
from meterstream.ingest.producer import DeliveryTracker, make_producer, produce_waiting, undelivered
from meterstream.ingest.topics import ensure_entities_topic, entities_topic
from meterstream.schemas.entities import SubscriptionDoc, decode_change
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

RELAY_NAME = "entities"
MAX_INTERVAL = 0.5

RELAYED = Counter("meterstream_relay_changes_total", "Entity changes relayed from the outbox to the entities topic")
BACKLOG = Gauge("meterstream_relay_outbox_backlog", "Outbox changes not yet relayed (at the last poll)")
SINCE = Gauge("meterstream_relay_seconds_since_last", "Seconds since the relay last put a change on the topic")
ERRORS = Counter("meterstream_relay_errors_total", "Relay polls that failed (database or Kafka); retried")
REPLAYED = Counter(
    "meterstream_relay_dead_letters_replayed_total", "Dead letters replayed after their subscription arrived"
)


class RelayError(RuntimeError):
    """Kafka did not acknowledge every change of a batch: the position stays where it was."""


class OutboxRelay(BackgroundLoop):
    """Relays `entity_outbox` to the `entities` topic; `relay_once()` is one poll, `start()` runs the loop."""

    stop_timeout = 10.0

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker,
        *,
        name: str = RELAY_NAME,
        batch_size: int = 500,
        interval: float = 0.25,
        producer: Producer | None = None,
        replay: bool = True,
        replay_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < interval <= MAX_INTERVAL:
            raise ValueError(f"interval: must be in (0, {MAX_INTERVAL}] seconds")
        self.settings = settings
        self.sessions = sessions
        self.name = name
        self.batch_size = batch_size
        self.interval = interval
        self.topic = entities_topic(settings)
        self.producer = producer
        self.clock = clock
        self.watch = StallWatch(settings.stall_seconds, clock)
        self.last_relay: float | None = None
        self.relayed = 0
        self.backlog = 0
        self.replayer = DeadLetterReplayer(settings, replay_delay, clock) if replay else None
        self._init_loop()
        self.thread_name = f"entity-relay-{name}"
        self._topic_ready = False
        self._last_error_log = float("-inf")
        self._lock = threading.Lock()  # one relay_once at a time (the loop and `flush` callers)
        me = weakref.ref(self)  # the gauge must not keep a stopped relay (and its producer) alive
        SINCE.set_function(lambda: r.seconds_since_last() if (r := me()) is not None else 0.0)

    # --- one poll ----------------------------------------------------------------------------------------
    def relay_once(self) -> int:
        """Relay up to `batch_size` changes after the position; returns how many (0: nothing new)."""
        with self._lock:
            return self._relay_once()

    def flush(self, timeout: float = 10.0) -> bool:
        """Relay, in the caller's thread, every change committed before this call: True once Kafka acknowledged
        them all (an API write answers after this, so a change it acknowledged is on the topic before any
        event produced after the answer: processors catch up with the topic before each batch). False when
        that did not happen within `timeout` (the loop keeps trying; the caller's write is committed anyway)."""
        deadline = self.clock() + timeout
        target = outbox.last_seq(self.sessions)
        while True:
            try:
                if outbox.get_relay_position(self.sessions, self.name) >= target:
                    return True
                self.relay_once()
            except Exception as exc:  # Kafka or the database is down: the write stands, the loop retries
                log.warning("entity relay: flush: %s", exc)
                if self.clock() >= deadline:
                    return False
                time.sleep(0.1)
            if self.clock() >= deadline:
                return outbox.get_relay_position(self.sessions, self.name) >= target

    def _relay_once(self) -> int:
        if not self._topic_ready:
            ensure_entities_topic(self.settings)
            self._topic_ready = True
        if self.producer is None:
            self.producer = make_producer(self.settings, **{"linger.ms": 5})
        position = outbox.get_relay_position(self.sessions, self.name)
        last = outbox.last_seq(self.sessions)
        self._set_backlog(last - position)  # before producing: a batch Kafka refuses still counts as waiting
        rows = outbox.read_outbox(self.sessions, position, self.batch_size)
        if rows:
            tracker = DeliveryTracker()
            for _seq, key, value in rows:
                produce_waiting(self.producer, self.topic, key=key, value=value, on_delivery=tracker)
            if (why := undelivered(self.producer, tracker, 30, len(rows))) is not None:
                self.producer = None  # a fresh idempotent producer for the retry (a failed one may be fenced)
                raise RelayError(f"{len(rows)} changes after seq {position} not relayed: {why}")
            position = rows[-1][0]
            outbox.set_relay_position(self.sessions, self.name, position)  # only after Kafka acknowledged
            self.relayed += len(rows)
            self.last_relay = self.clock()
            RELAYED.inc(len(rows))
            self.watch.progressed()
            if self.replayer is not None:
                self.replayer.note(value for _seq, _key, value in rows)
            self._set_backlog(last - position)
        return len(rows)

    def _set_backlog(self, backlog: int) -> None:
        self.backlog = max(backlog, 0)
        BACKLOG.set(self.backlog)
        self.watch.set_lag("outbox", self.backlog)

    # --- the loop ----------------------------------------------------------------------------------------
    def run(self) -> None:
        """Poll until `stop()`: at once again after a full batch, else every `interval`; errors are retried."""
        while not self._stop.is_set():
            try:
                n = self.relay_once()
            except Exception as exc:  # the database or Kafka is down: keep the position, try again
                ERRORS.inc()
                n = 0
                now = self.clock()
                if now - self._last_error_log >= 60:
                    self._last_error_log = now
                    log.warning("entity relay: %s (retrying every %.2f s)", exc, self.interval)
            if n < self.batch_size:
                self._stop.wait(self.interval)

    def start(self) -> OutboxRelay:
        if self._start_loop() and self.replayer is not None:
            self.replayer.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        timeout = self.stop_timeout if timeout is None else timeout
        self._stop_loop(timeout)
        if self.replayer is not None:
            self.replayer.stop(timeout)
        if self.producer is not None:
            self.producer.flush(timeout)
            self.producer = None

    # --- observability -----------------------------------------------------------------------------------
    def seconds_since_last(self) -> float:
        return 0.0 if self.last_relay is None else self.clock() - self.last_relay

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Stalled: changes wait in the outbox and none was relayed for `stall_seconds`."""
        stalled = self.watch.stalled()
        detail = {
            "relayed": self.relayed,
            "backlog": self.backlog,
            "seconds_without_progress": round(self.watch.idle_seconds(), 1),
            "running": self._thread is not None and self._thread.is_alive(),
        }
        return not stalled, detail


class DeadLetterReplayer:
    """Replays dead letters waiting for a subscription, `delay` seconds after it was relayed (own thread)."""

    def __init__(self, settings: Settings, delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.delay = delay
        self.clock = clock
        self.replayed: set[tuple[str, str]] = set()  # (tenant, event id): once per relay process
        self._queue: queue.Queue[tuple[float, SubscriptionDoc] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def note(self, values: Any) -> None:
        """Remember the relayed subscriptions among these outbox values (other documents are ignored)."""
        for value in values:
            try:
                doc = decode_change(value)
            except Exception:  # not ours to judge: the live catalog logs bad documents
                continue
            if isinstance(doc, SubscriptionDoc) and not doc.deleted and doc.phases:
                self._queue.put((self.clock() + self.delay, doc))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="entity-relay-replay", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item[1]]
            time.sleep(max(item[0] - self.clock(), 0))
            while True:  # everything noted meanwhile goes in the same pass over the dead letters
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more[1])
            try:
                self.replay_for(batch)
            except Exception as exc:  # they stay in the topic: `meterstream dlq replay` can still re-drive them
                log.warning("entity relay: replaying dead letters for %d subscriptions failed: %s", len(batch), exc)

    def replay_for(self, subs: list[SubscriptionDoc]) -> list[str]:
        """Replay the dead letters these subscriptions make rateable; returns their source positions."""
        from meterstream.ingest.dlq import read_dead_letters, replay_dead_letters
        from meterstream.processor.live_catalog import is_waiting_for_subscription

        tenants = {s.tenant for s in subs}
        todo = []
        for record in read_dead_letters(self.settings):
            if record.tenant not in tenants or not is_waiting_for_subscription(record.reason):
                continue
            ident = (record.tenant, record.event_id or record.position)
            if ident in self.replayed:
                continue
            when = _event_time(record.raw)
            customer = (record.key or "").partition("/")[2]
            if when is None or not any(_covers(s, record.tenant, customer, when) for s in subs):
                continue
            self.replayed.add(ident)
            todo.append(record)
        if not todo:
            return []
        result = replay_dead_letters(self.settings, todo)
        REPLAYED.inc(len(result.replayed))
        log.info("entity relay: replayed %d dead letters waiting for a subscription", len(result.replayed))
        return result.replayed


def _covers(sub: SubscriptionDoc, tenant: str, customer: str, when: datetime) -> bool:
    return sub.tenant == tenant and sub.customer in (customer, "*") and sub.phase_at(when) is not None


def _event_time(raw: str) -> datetime | None:
    from meterstream.schemas.event import parse_time

    try:
        data = orjson.loads(raw)
        return parse_time(data["time"]) if isinstance(data, dict) else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def start_relay(settings: Settings, sessions: sessionmaker, **kwargs: Any) -> OutboxRelay:
    """A started relay (daemon thread) for the API process."""
    return OutboxRelay(settings, sessions, **kwargs).start()


__all__ = ["RELAY_NAME", "DeadLetterReplayer", "OutboxRelay", "RelayError", "start_relay"]
