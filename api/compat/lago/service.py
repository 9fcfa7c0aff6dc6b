"""The Lago event path: checked Lago events -> meter definitions -> the one IngestService (blocking; I/O here).

Per Lago event the outcome is one of:
- `accepted`: its usage events (one per billable metric / meter of its `code`) are in Kafka, acknowledged;
  none for a metric whose `field_name` its properties lack (`not_metered`: Lago's aggregation skips it, so it
  is charged nothing; translate.py);
- `duplicate`: its transaction id was already accepted (by this API recently, or earlier in the same
  request): not stored again, and a success (Lago #3049: one duplicate never fails a batch). A duplicate
  this API cannot see is still dropped by the processor's dedup and never charged;
- `unmatched`: no billable metric has its `code`: kept with the raw event (entities/unmatched.py),
  listed and counted, replayed when such a metric is created (Lago #637: never silently ignored);
- `rejected`: the field and the reason; nothing of the event is produced, the raw Lago event goes to
  the dead letters (stage "api").
An event is all or nothing: every usage event it yields is checked before any is produced.

An accepted event with a metric it fed nothing (`not_metered`) and an unmatched one are also noted as Lago reports
them in its `events.errors` webhook (entities/lago_event_errors.py: `missing_aggregation_property`, with the raw
event, which `GET /events/{transaction_id}` then finds; `invalid_code`), once what the request produced is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from meterstream.api.compat.lago.events import SOURCE, LagoEvent, parse_lago_event
from meterstream.api.compat.lago.translate import lago_field, resolve_customer, translate_lago
from meterstream.api.ingest import IngestService
from meterstream.entities.lago_event_errors import INVALID_CODE, MISSING_AGGREGATION_PROPERTY, EventError
from meterstream.ingest.translate import MeterDefinition
from meterstream.schemas.event import InvalidEvent

Status = Literal["accepted", "duplicate", "unmatched", "rejected"]


@dataclass
class LagoOutcome:
    """What became of one Lago event of a request (in input order)."""

    index: int
    status: Status
    event: LagoEvent | None = None
    customer: str | None = None
    usage_ids: list[str] = field(default_factory=list)
    error: InvalidEvent | None = None
    not_metered: list[dict[str, str]] = field(default_factory=list)  # metrics of its code lacking their field


class LagoEvents:
    """Lago events in, through the shared meter definitions, onto the one ingest path."""

    def __init__(
        self,
        ingest: IngestService,
        definitions: Callable[[str, set[str]], list[MeterDefinition]],
        subscription_customers: Callable[[str, set[str]], dict[str, str]],
        keep_unmatched: Callable[[str, list[dict[str, Any]]], Any],
        replay_left_behind: Callable[[str, set[str]], Any] | None = None,
        note_errors: Callable[[str, list[EventError]], Any] | None = None,
    ) -> None:
        self.ingest = ingest
        self.note_errors = note_errors
        self.definitions = definitions
        self.subscription_customers = subscription_customers
        self.keep_unmatched = keep_unmatched
        self.replay_left_behind = replay_left_behind

    def submit(self, tenant: str, raw_events: list[Any], now: datetime | None = None) -> list[LagoOutcome]:
        now = now or datetime.now(UTC)
        outcomes: list[LagoOutcome] = []
        parsed: list[tuple[int, LagoEvent]] = []
        for i, raw in enumerate(raw_events):
            try:
                parsed.append((i, parse_lago_event(raw, now)))
                outcomes.append(LagoOutcome(i, "accepted"))  # provisional
            except InvalidEvent as exc:
                outcomes.append(LagoOutcome(i, "rejected", error=exc))
        subs = {e.external_subscription_id for _, e in parsed if e.external_subscription_id}
        recorded = self.subscription_customers(tenant, subs) if subs else {}
        meters = self.definitions(tenant, {e.code for _, e in parsed}) if parsed else []
        if meters and self.replay_left_behind is not None:
            # kept events of a code that has a metric now (its replay failed, or the meter came from the
            # OpenMeter API): metered before this request's events, so none is left behind
            self.replay_left_behind(tenant, {m.event_type for m in meters})

        usage: list[dict[str, Any]] = []
        owner: list[int] = []  # usage[k] belongs to outcomes[owner[k]]
        unmatched: list[dict[str, Any]] = []
        for i, event in parsed:
            out = outcomes[i]
            out.event = event
            try:
                customer = resolve_customer(event, recorded)
            except InvalidEvent as exc:
                out.status, out.error = "rejected", exc
                continue
            out.customer = customer
            tr = translate_lago(event, meters, customer, now)
            if tr.errors:
                out.status, out.error = "rejected", tr.errors[0]
                continue
            if tr.unmatched:
                out.status = "unmatched"
                unmatched.append(_unmatched_record(raw_events[i], event, customer))
                continue
            try:
                for u in tr.usage:
                    IngestService.validate(tenant, u)  # all or nothing: check every part before producing
            except InvalidEvent as exc:
                out.status, out.error = "rejected", InvalidEvent(lago_field(exc.field), exc.reason)
                continue
            out.usage_ids = [u["id"] for u in tr.usage]
            out.not_metered = [_not_metered(m) for m in tr.not_metered]
            usage.extend(tr.usage)
            owner.extend([i] * len(tr.usage))

        results = self.ingest.submit(tenant, usage) if usage else []  # raises Unavailable: nothing reported
        parts: dict[int, list[str]] = {}
        for k, r in enumerate(results):
            parts.setdefault(owner[k], []).append(r.status)
        for i, statuses in parts.items():
            out = outcomes[i]
            if "rejected" in statuses:  # validated above: only a defect gets here
                bad = next(r for k, r in enumerate(results) if owner[k] == i and r.status == "rejected")
                out.status, out.error = "rejected", InvalidEvent(lago_field(bad.field or "$"), bad.reason or "")
            elif all(s == "duplicate" for s in statuses):
                out.status = "duplicate"
        rejected = [(raw_events[o.index], o.error) for o in outcomes if o.status == "rejected" and o.error]
        if rejected:  # the raw Lago events, stage "api", acknowledged by Kafka like submit's own rejects
            self.ingest.dead_letter(tenant, rejected)
        if unmatched:
            self.keep_unmatched(tenant, unmatched)
        if self.note_errors is not None:
            errors = [e for o in outcomes for e in _errors(o, raw_events[o.index])]
            if errors:
                self.note_errors(tenant, errors)
        return outcomes


def _errors(out: LagoOutcome, raw: Any) -> list[EventError]:
    """What Lago's `events.errors` reports of an event: a code no metric has; each metric it fed nothing."""
    event = out.event
    if event is None or out.status not in ("accepted", "unmatched"):
        return []
    if out.status == "unmatched":
        return [EventError(event.transaction_id, event.code, INVALID_CODE)]
    if not event.timestamp_given:  # kept with its reception time, as an unmatched event is
        raw = {**raw, "timestamp": event.time_text}
    return [EventError(event.transaction_id, event.code, MISSING_AGGREGATION_PROPERTY, nm["field"],
                       raw if i == 0 else None) for i, nm in enumerate(out.not_metered)]  # fmt: skip


def _not_metered(meter: MeterDefinition) -> dict[str, str]:
    """What the answer says of a metric the event fed nothing (its field_name missing): which, and the field."""
    field_name = lago_field("data" + (meter.value_property or "$")[1:])
    return {"billable_metric": meter.event_type, "meter": meter.slug, "field": field_name}


def _unmatched_record(raw: Any, event: LagoEvent, customer: str) -> dict[str, Any]:
    """What entities/unmatched keeps: the raw Lago event and its identity (source, id, type). An event sent
    without a timestamp is kept with its reception time, so a replay meters it at that time."""
    if not event.timestamp_given:
        raw = {**raw, "timestamp": event.time_text}
    return {
        "source": SOURCE,
        "event_id": event.transaction_id,
        "event_type": event.code,
        "raw": raw,
        "reason": f"no billable metric with code {event.code!r}",
        "customer": customer,
    }
