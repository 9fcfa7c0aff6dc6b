"""The webhook dispatcher: lifecycle events from `webhook_outbox` to the tenants' endpoints and to Kafka.

Once an hour (`digest_seconds`) it first reports the Lago events accepted with an error since the last report as
`events.errors` events (webhooks/lago_digest.py), and every 30 s it announces the subscriptions whose start or end
has come (entities/subscriptions.announce_due). Then one poll (`run_once`) does three things, each retried on the
next poll when it fails:
1. fan out: events not yet fanned out become one pending delivery per endpoint that wants them
   (webhooks/outbox.py), due at once;
2. publish: events not yet on Kafka are produced to `invoice-events` (webhooks/topic.py; key, headers), and
   marked published only after Kafka acknowledged them (at least once: a crash in between repeats them);
3. deliver: due deliveries are claimed (a lease, webhooks/deliveries.py) and POSTed with httpx (a timeout, no
   redirects; `concurrency` at a time) with the Standard Webhooks headers (webhooks/signing.py), or, to a
   Lago-format endpoint, Lago's payload (made once by the `renderers`' "lago" function, api/compat/lago/webhooks.py)
   with Lago's headers (webhooks/lago_signing.py, the tenant's keys: webhooks/lago_keys.py); a 2xx answer
   delivers; anything else (another status, a timeout, a refused connection) schedules the next attempt by
   webhooks/backoff.py, and after the last one the delivery is dead until `replay`.

Kafka and the receivers are independent: a broker outage delays the topic, not the webhooks, and a dead
receiver holds at most one of the `concurrency` senders per due delivery, for its timeout.

It runs as a daemon thread in the API process (api/app.py starts it in the lifespan, next to the entity
relay; `meterstream up` runs the API), or alone through `start_dispatcher(settings, sessions)`.
Metrics (Prometheus): events fanned out and published, deliveries delivered / failed / dead, the backlog.
Health: stalled when work waits (events not fanned out or published, deliveries due) and nothing moved for
`stall_seconds` (meterstream/health.py StallWatch). A failing receiver is not a stall: each attempt is progress.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from confluent_kafka import Producer
from prometheus_client import Counter, Gauge
from sqlalchemy.orm import sessionmaker

from meterstream.background import BackgroundLoop
from meterstream.health import StallWatch
from meterstream.ingest.producer import DeliveryTracker, make_producer, produce_waiting, undelivered
from meterstream.schemas.settings import Settings
from meterstream.webhooks import backoff, deliveries, lago_digest, lago_signing, outbox
from meterstream.webhooks.endpoints import LAGO
from meterstream.webhooks.lago_keys import keys_for
from meterstream.webhooks.signing import sign_headers
from meterstream.webhooks.topic import ensure_invoice_events_topic, invoice_events_topic

log = logging.getLogger(__name__)

USER_AGENT = "Meterstream-Webhooks/1"

FANNED = Counter("meterstream_webhook_events_fanned_out_total", "Lifecycle events fanned out to endpoints")
PUBLISHED = Counter("meterstream_webhook_events_published_total", "Lifecycle events Kafka acknowledged")
OUTCOMES = Counter(
    "meterstream_webhook_deliveries_total", "Webhook delivery attempts by outcome (delivered, failed, dead)",
    ["outcome"],
)  # fmt: skip
BACKLOG = Gauge("meterstream_webhook_backlog", "Events not yet fanned out or published plus deliveries due")
ERRORS = Counter("meterstream_webhook_dispatcher_errors_total", "Dispatcher steps that failed (retried)", ["step"])


# (entity store, tenant, our event type, the event's body) -> the payload a receiver of that format gets
Renderer = Callable[[sessionmaker, str, str, bytes], bytes]


class PublishError(RuntimeError):
    """Kafka did not acknowledge every event of a batch: they stay unpublished and are tried again."""


class Dispatcher(BackgroundLoop):
    """`run_once()` is one poll; `start()` runs the loop in a daemon thread. `now` is the wall clock the schedule
    uses (injected by tests), `monotonic` the clock of the stall watch; `producer_factory` makes the Kafka
    producer (again after a failed batch: a failed idempotent producer may be fenced); `renderers` make the payloads
    of endpoints of another format than the standard one, by format (the API passes Lago's)."""

    thread_name = "webhook-dispatcher"
    stop_timeout = 15.0

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker,
        *,
        kafka: bool = True,
        producer_factory: Callable[[], Producer] | None = None,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        batch_size: int = 100,
        concurrency: int = 8,
        interval: float = 0.5,
        schedule: tuple[float, ...] = backoff.SCHEDULE,
        jitter: float = backoff.JITTER,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        renderers: Mapping[str, Renderer] | None = None,
        digest_seconds: float = 3600.0,
    ) -> None:
        self.settings = settings
        self.digest_seconds = digest_seconds
        self.digest_at = float("-inf")  # `monotonic` of the last digest (the first poll makes one)
        self.announce_at = float("-inf")  # `monotonic` of the last look for subscriptions that started or ended
        self.renderers = dict(renderers or {})
        self._lago_keys: dict[str, lago_signing.LagoKeys] = {}  # tenant -> its keys (never changed once made)
        self.sessions = sessions
        self.kafka = kafka
        self.producer: Producer | None = None
        self.producer_factory = producer_factory or (lambda: make_producer(settings, **{"linger.ms": 5}))
        self.topic = invoice_events_topic(settings)
        self.timeout = timeout
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False,
                                             headers={"User-Agent": USER_AGENT})  # fmt: skip
        self.batch_size = batch_size
        self.interval = interval
        self.schedule = schedule
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.now = now
        self.monotonic = monotonic
        self.watch = StallWatch(settings.stall_seconds, monotonic)
        self.concurrency = max(1, concurrency)
        self._senders = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-send")
        # a claimed batch is sent within ceil(batch / concurrency) timeouts; the lease outlasts that
        self.lease = timedelta(seconds=timeout * -(-batch_size // self.concurrency) + 30)
        self.backlog = 0
        self._topic_ready = False
        self._init_loop()
        self._last_error_log: dict[str, float] = {}

    # --- the steps -----------------------------------------------------------------------------------------
    def digest_once(self) -> int:
        """Once per `digest_seconds`: Lago events accepted with an error become `events.errors` events."""
        now = self.monotonic()
        if now - self.digest_at < self.digest_seconds:
            return 0
        made = lago_digest.digest_once(self.sessions, self._utcnow())
        self.digest_at = now
        return made

    def announce_once(self) -> int:
        """Every `ANNOUNCE_SECONDS`: subscriptions whose start or end has come since become `subscription.started` /
        `subscription.terminated` events (entities/subscriptions.announce_due)."""
        from meterstream.entities.subscriptions import ANNOUNCE_SECONDS, announce_due

        now = self.monotonic()
        if now - self.announce_at < ANNOUNCE_SECONDS:
            return 0
        made = announce_due(self.sessions, self._utcnow())
        self.announce_at = now
        return made

    def fan_out_once(self) -> int:
        """Fan out up to `batch_size` events; returns how many events."""
        n_events, _deliveries = outbox.fan_out(self.sessions, self._utcnow(), self.batch_size)
        if n_events:
            FANNED.inc(n_events)
            self.watch.progressed()
        return n_events

    def publish_once(self) -> int:
        """Produce up to `batch_size` unpublished events to Kafka and mark them once acknowledged."""
        if not self.kafka:
            return 0
        rows = outbox.unpublished(self.sessions, self.batch_size)
        if not rows:
            return 0
        if not self._topic_ready:
            ensure_invoice_events_topic(self.settings)
            self._topic_ready = True
        if self.producer is None:
            self.producer = self.producer_factory()
        tracker = DeliveryTracker()
        for _seq, event_id, type_, key, body in rows:
            headers = [("event-id", event_id.encode()), ("event-type", type_.encode())]
            produce_waiting(self.producer, self.topic, key=key.encode(), value=body.encode(), headers=headers,
                            on_delivery=tracker)  # fmt: skip
        if (why := undelivered(self.producer, tracker, 30, len(rows))) is not None:
            self.producer = None  # a fresh idempotent producer for the retry
            raise PublishError(f"{len(rows)} lifecycle events not published: {why}")
        outbox.mark_published(self.sessions, [r[0] for r in rows], self._utcnow())
        PUBLISHED.inc(len(rows))
        self.watch.progressed()
        return len(rows)

    def deliver_once(self) -> int:
        """Attempt up to `batch_size` due deliveries, `concurrency` at a time; returns how many were attempted."""
        work = deliveries.claim(self.sessions, self._utcnow(), self.batch_size, self.lease)
        for done in as_completed([self._senders.submit(self._attempt, item) for item in work]):
            done.result()  # a database error recording the outcome: raised here, retried after the lease
            self.watch.progressed()
        return len(work)

    def _lago_message(self, item: deliveries.Work) -> tuple[bytes, dict[str, str]]:
        """A Lago-format delivery's payload (made at its first attempt and kept) and Lago's headers."""
        d = item.delivery
        body = item.rendered
        if body is None:
            render = self.renderers.get(LAGO)
            if render is None:
                raise RuntimeError("this dispatcher has no renderer for Lago-format endpoints (the API process has)")
            body = render(self.sessions, d.tenant, d.event_type, item.body)
            deliveries.keep_body(self.sessions, d.id, body)
        keys = self._lago_keys.get(d.tenant)
        if keys is None:
            keys = self._lago_keys[d.tenant] = keys_for(self.sessions, d.tenant)
        algo = item.signature_algo or lago_signing.DEFAULT_ALGORITHM
        unique = lago_signing.unique_key(d.event_id, d.endpoint_id)
        return body, lago_signing.sign_headers(algo, keys, item.issuer or "", unique, body)

    def _attempt(self, item: deliveries.Work) -> deliveries.Delivery:
        sent = self._utcnow()
        status: int | None = None
        try:
            if item.format == LAGO:
                body, headers = self._lago_message(item)
            else:
                body = item.body
                headers = sign_headers(item.secret, item.delivery.event_id, int(sent.timestamp()), body)
            headers["Content-Type"] = "application/json"
            response = self.client.post(item.url, content=body, headers=headers, timeout=self.timeout)
            status = response.status_code
            if 200 <= status < 300:
                OUTCOMES.labels("delivered").inc()
                return deliveries.succeeded(self.sessions, item.delivery.id, self._utcnow(), status)
            error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a Lago payload that could not be made (the invoice is gone, the store failed)
            error = f"payload: {type(exc).__name__}: {exc}"
        attempts = item.delivery.attempts + 1
        delay = backoff.retry_delay(attempts, self.rng, self.schedule, self.jitter)
        OUTCOMES.labels("failed" if delay is not None else "dead").inc()
        done = deliveries.failed(self.sessions, item.delivery.id, self._utcnow(), error, status, delay)
        if delay is None:
            log.warning("webhook %s to %s is dead after %d attempts: %s", item.delivery.event_id,
                        item.delivery.endpoint_id, attempts, error)  # fmt: skip
        return done

    # --- one poll, the loop, health ------------------------------------------------------------------------
    def run_once(self) -> dict[str, int]:
        """The three steps, each on its own: one failing (Kafka down) does not stop the others."""
        done = {"digested": 0, "announced": 0, "fanned_out": 0, "published": 0, "attempted": 0}
        for name, step in (("digested", self.digest_once), ("announced", self.announce_once),
                           ("fanned_out", self.fan_out_once),
                           ("published", self.publish_once), ("attempted", self.deliver_once)):  # fmt: skip
            try:
                done[name] = step()
            except Exception as exc:  # the database, Kafka: keep going, try again next poll
                ERRORS.labels(name).inc()
                self._log_error(name, exc)
        self.refresh_backlog()
        return done

    def refresh_backlog(self) -> int:
        try:
            waiting = outbox.waiting(self.sessions, self.kafka)
            due = deliveries.due_count(self.sessions, self._utcnow())
        except Exception as exc:
            self._log_error("backlog", exc)
            return self.backlog
        self.backlog = waiting + due
        BACKLOG.set(self.backlog)
        self.watch.set_lag("webhooks", self.backlog)
        return self.backlog

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ok, detail): not ok when work waits and nothing moved for `stall_seconds`."""
        stalled = self.watch.stalled()
        return not stalled, {"backlog": self.backlog, "idle_seconds": round(self.watch.idle_seconds(), 1),
                             "stalled": stalled}  # fmt: skip

    def run(self) -> None:
        while not self._stop.is_set():
            done = self.run_once()
            if max(done.values()) < self.batch_size:
                self._stop.wait(self.interval)

    def stop(self, timeout: float | None = None) -> None:
        self._stop_loop(timeout)
        self._senders.shutdown(wait=True)
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None  # released now, not when the dispatcher is collected
        self.client.close()

    def _utcnow(self) -> datetime:
        return deliveries.utc(self.now())

    def _log_error(self, step: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log.get(step, float("-inf")) >= 60:
            self._last_error_log[step] = now
            log.warning("webhook dispatcher: %s: %s (retrying every %.2f s)", step, exc, self.interval)


def start_dispatcher(settings: Settings, sessions: sessionmaker, **kwargs: Any) -> Dispatcher:
    """A started dispatcher (daemon thread): for the API process, or any long-running process with the store."""
    return Dispatcher(settings, sessions, **kwargs).start()


__all__ = ["Dispatcher", "PublishError", "Renderer", "start_dispatcher"]
