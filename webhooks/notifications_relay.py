"""The processor's alerts to the webhooks: the `notifications` topic into `webhook_outbox`, each notification once.

The stream processor (processor/balances.py) puts one `Notification` on the `notifications` topic per threshold
crossing (`balance.threshold_crossed`), exhausted prepaid balance (`balance.exhausted`) and exceeded credit limit
(`credit_limit.exceeded`). This relay writes each as a webhook event of the same type (webhooks/events.py); the
webhook dispatcher then fans it out to the tenant's endpoints and to `invoice-events` like every lifecycle event.

Once: a notification's id is deterministic from its cause (a processor that repeats a batch after a crash sends
the same id), and the event's id is `msg_` + that id in a unique column: a repeat is recognised and skipped, in
the same transaction, so neither a processor's repeat nor this relay's own (a crash between the write and the
offset commit) makes a second webhook. Offsets are committed only after the write committed (at least once in,
exactly once out).

Automatic top-ups: a `wallet.top_up_requested` notification (a wallet's rule crossed, billing/thresholds.py) is
not a webhook event: it is applied to the wallet store (`entities.wallets.recurring_top_up`), in its own
transaction, before the webhook events of the batch and before the offset commit; the top-ups carry the
references `auto:<notification id>:<kind>`, so a request the processor repeats, or this relay reads twice,
writes one top-up. A request whose wallet was terminated or whose rule was removed since is counted and passed
over; an unusable amount is logged and passed over (the processor's own output, not a customer's input).

Opt-in kinds (`session.held`, `session.released`, `session.release_failed`: one per held record or release,
webhooks/events.py OPT_IN_TYPES) are written only for a tenant with an enabled endpoint that names the kind
(read in the write's transaction); the others are counted (`outcome="unsubscribed"`) and passed over, so a
tenant without such an endpoint gets no outbox row, no delivery and no `invoice-events` message per held
record. An endpoint registered later gets the kind from then on, not the notifications passed over before.

Skipped on purpose: `dunning.*` notifications (invoice_emitter/dunning_run.py appends their webhook events itself,
in the transaction that logs the step: relaying them too would send each twice), and kinds that are not webhook event
types (counted, logged). A message that is not a readable Notification is logged with its partition and offset,
counted (`outcome="unreadable"`) and passed over: it is the processor's own output, not a customer's input,
and the topic keeps it.

It runs as a daemon thread in the API process, beside the dispatcher (api/app.py; `meterstream up` runs the
API), in the consumer group `<prefix>meterstream-notifications-webhooks` (several API processes share the
partitions). Metrics (Prometheus): `meterstream_notification_webhooks_total{outcome}`. Health: stalled when
notifications were read and none could be written for `stall_seconds` (the entity store down).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from meterstream.background import BackgroundLoop
from meterstream.billing.thresholds import TOP_UP_REQUESTED
from meterstream.entities.common import Conflict, Invalid
from meterstream.health import StallWatch
from meterstream.schemas.provisioning import NOTIFICATIONS, Notification, decode_notification
from meterstream.schemas.settings import Settings
from meterstream.webhooks import events
from meterstream.webhooks.endpoints import opt_in_subscriptions

log = logging.getLogger(__name__)

OUTCOMES = Counter(
    "meterstream_notification_webhooks_total",
    "Notifications of the notifications topic by outcome (written, repeated, dunning, other_kind, unsubscribed, "
    "unreadable, top_up_written, top_up_repeated, top_up_skipped)",
    ["outcome"],
)  # fmt: skip
# written by invoice_emitter/dunning_run.py itself (webhooks/events.py DUNNING_*), never relayed
OWN_WEBHOOKS_PREFIX = "dunning."


def event_id(note: Notification) -> str:
    """The webhook event's id: deterministic from the notification's (the same notification, the same event)."""
    return f"msg_{note.id}"


def event_data(note: Notification) -> dict[str, Any]:
    """What the event carries: the notification's figures (decimal strings), who, and when it was decided."""
    return {"object": "notification", "id": note.id, "customer": note.customer, "at": note.at, **note.data}


def classify(note: Notification) -> str | None:
    """None when the notification becomes a webhook event, else why it does not (the metric's outcome)."""
    if note.kind == TOP_UP_REQUESTED:
        return "top_up"
    if note.kind.startswith(OWN_WEBHOOKS_PREFIX):
        return "dunning"
    if note.kind not in events.EVENT_TYPES:
        return "other_kind"
    return None


def write_once(sessions: sessionmaker, notes: Iterable[Notification]) -> dict[str, int]:
    """Write the notifications as webhook events in one transaction, skipping any already written (by id) and
    any of an opt-in kind no enabled endpoint of its tenant names; returns the count per outcome. Raises when the
    store fails (nothing written; the caller retries)."""
    # + top_up_* when there are top-ups, unsubscribed when opt-in kinds were passed over
    counts = {"written": 0, "repeated": 0, "dunning": 0, "other_kind": 0}
    wanted: dict[str, Notification] = {}
    for note in notes:
        why = classify(note)
        if why == "top_up":
            outcome = apply_top_up(sessions, note)
            counts[outcome] = counts.get(outcome, 0) + 1
            continue
        if why is not None:
            counts[why] += 1
            continue
        if event_id(note) in wanted:
            counts["repeated"] += 1
        wanted[event_id(note)] = note
    if not wanted:
        return counts
    table = events.WebhookOutboxRow.__table__
    for attempt in (1, 2):  # a second writer may commit the same id between our read and our insert: read again
        try:
            with sessions.begin() as s:
                todo = _subscribed_only(s, wanted)
                ids = list(todo)
                known = set(s.scalars(select(table.c.event_id).where(table.c.event_id.in_(ids)))) if ids else set()
                for eid, note in todo.items():
                    if eid in known:
                        continue
                    events.append(s, note.tenant, note.kind, note.customer, f"{note.tenant}/{note.customer}",
                                  event_data(note), event_id=eid)  # fmt: skip
            counts["repeated"] += len(known)
            counts["written"] += len(todo) - len(known)
            if len(todo) < len(wanted):
                counts["unsubscribed"] = len(wanted) - len(todo)
            return counts
        except IntegrityError:
            if attempt == 2:
                raise
    return counts  # pragma: no cover - the loop returns or raises


def _subscribed_only(s: Session, wanted: dict[str, Notification]) -> dict[str, Notification]:
    """`wanted` without the opt-in kinds no enabled endpoint of their tenant names (events.OPT_IN_TYPES)."""
    opt_in = {note.tenant for note in wanted.values() if note.kind in events.OPT_IN_TYPES}
    if not opt_in:
        return wanted
    named = opt_in_subscriptions(s, opt_in)
    return {eid: note for eid, note in wanted.items()
            if note.kind not in events.OPT_IN_TYPES or (note.tenant, note.kind) in named}  # fmt: skip


def apply_top_up(sessions: sessionmaker, note: Notification) -> str:
    """Write the automatic top-up a `wallet.top_up_requested` notification asks for (at most once per id); the
    metric's outcome. Raises when the store fails (the caller retries the batch)."""
    from meterstream.entities.wallets import recurring_top_up

    data = note.data
    try:
        done = recurring_top_up(sessions, note.tenant, str(data.get("wallet")), str(data.get("rule")), note.id,
                                data.get("paid_credits"), data.get("granted_credits"))  # fmt: skip
    except (Invalid, Conflict) as exc:
        log.error("top-up request %s of %s/%s not applied: %s", note.id, note.tenant, note.customer, exc)
        return "top_up_skipped"
    if done in ("written", "repeated"):
        return f"top_up_{done}"
    log.warning("top-up request %s of %s/%s not applied: %s", note.id, note.tenant, note.customer, done)
    return "top_up_skipped"


def decode_all(messages: Iterable[Any]) -> tuple[list[Notification], int]:
    """The readable notifications of a consumed batch, and how many were not (logged with their offsets)."""
    notes: list[Notification] = []
    bad = 0
    for msg in messages:
        try:
            notes.append(decode_notification(msg.value()))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            bad += 1
            log.error("notifications %s/%s: not a Notification, not relayed (%s)", msg.partition(), msg.offset(), exc)
    return notes, bad


ConsumerFactory = Callable[[dict[str, Any]], Any]


class NotificationsRelay(BackgroundLoop):
    """`notifications` -> `webhook_outbox`, in a daemon thread (`start`/`stop`), or a step at a time (`run_once`)."""

    thread_name = "notifications-relay"

    def __init__(self, settings: Settings, sessions: sessionmaker, *, consumer_factory: ConsumerFactory = Consumer,
                 group: str | None = None, batch_size: int = 500, poll_seconds: float = 0.2,
                 retry_seconds: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.settings = settings
        self.sessions = sessions
        self.topic = settings.topic(NOTIFICATIONS)
        self.group = group or f"{settings.topic_prefix}meterstream-notifications-webhooks"
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.watch = StallWatch(settings.stall_seconds, monotonic)
        # + top_up_written / top_up_repeated / top_up_skipped once an automatic top-up was handled
        self.totals: dict[str, int] = {"written": 0, "repeated": 0, "dunning": 0, "other_kind": 0, "unreadable": 0}
        self._pending: list[Any] = []  # read, not yet written (the store failed): retried before reading more
        self._consumer = consumer_factory({
            "bootstrap.servers": settings.bootstrap,
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # a new group relays what the topic holds; ids make repeats harmless
            "fetch.wait.max.ms": 500,  # an empty fetch costs the broker CPU (processor/runner.py); data ends it at once
        })  # fmt: skip
        self._subscribed = False
        self._init_loop()
        self.error: str | None = None

    def _subscribe(self) -> None:
        from meterstream.ingest.topics import ensure_provisioning_topics

        ensure_provisioning_topics(self.settings, timeout=5.0)  # created when missing (the processor may not have yet)
        self._consumer.subscribe([self.topic])
        self._subscribed = True

    def run_once(self) -> int:
        """Read a batch (or retry the pending one), write it, commit its offsets; returns the messages handled."""
        if not self._subscribed:
            self._subscribe()
        if not self._pending:
            for msg in self._consumer.consume(num_messages=self.batch_size, timeout=self.poll_seconds):
                err = msg.error()
                if err is None:
                    self._pending.append(msg)
                elif err.code() != KafkaError._PARTITION_EOF:
                    log.warning("notifications relay: %s", err)
        if not self._pending:
            self.watch.set_lag("notifications", 0)
            return 0
        self.watch.set_lag("notifications", len(self._pending))
        notes, bad = decode_all(self._pending)
        counts = write_once(self.sessions, notes)  # raises: kept pending, retried
        counts["unreadable"] = bad
        self._consumer.commit(asynchronous=False)  # the consumed positions: every pending message is written
        done = len(self._pending)
        self._pending = []
        for outcome, n in counts.items():
            if n:
                OUTCOMES.labels(outcome).inc(n)
                self.totals[outcome] = self.totals.get(outcome, 0) + n
        self.watch.set_lag("notifications", 0)
        self.watch.progressed()
        self.error = None
        return done

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ok, detail): not ok when notifications wait and none was written for `stall_seconds`."""
        stalled = self.watch.stalled()
        return not stalled, {"waiting": len(self._pending), "idle_seconds": round(self.watch.idle_seconds(), 1),
                             "stalled": stalled, "error": self.error, **self.totals}  # fmt: skip

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception as exc:  # the store or the broker: wait, retry the same batch
                    self.error = str(exc)[:300]
                    log.warning("notifications relay: %s (retried)", self.error)
                    self._stop.wait(self.retry_seconds)
        finally:
            self._consumer.close()

    def close(self) -> None:
        """For a relay driven by `run_once` (no thread)."""
        self._consumer.close()


def start_notifications_relay(settings: Settings, sessions: sessionmaker, **kwargs: Any) -> NotificationsRelay:
    """A started relay (daemon thread): for the API process, or any long-running process with the store."""
    return NotificationsRelay(settings, sessions, **kwargs).start()


__all__ = [
    "NotificationsRelay",
    "apply_top_up",
    "classify",
    "event_data",
    "event_id",
    "start_notifications_relay",
    "write_once",
]
