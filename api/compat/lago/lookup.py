"""`GET /events/{transaction_id}`: where a Lago transaction ended up (blocking; ClickHouse + SQL reads).

Its usage events have ids `derived_id("lago", transaction_id, meter)`, one per meter its code fed, so
the lookup computes the candidate ids from the tenant's meter definitions (deleted ones included) and
reads them by primary key:
1. `rated_usage FINAL` (through api/queries.py, the one query path): rated -> status "rated";
2. the unmatched events kept for (tenant, "lago", transaction_id): status "unmatched"; else an accepted
   event that fed no metric (its metrics' field_name missing, entities/lago_event_errors.py): "not_metered";
3. `dead_letters` with those ids (refused after the API accepted them, e.g. no plan prices the meter
   for this customer): status "dead_lettered" with the stage's field and reason.
Nothing found: 404. Accepted events become visible here once the pipeline has rated them (about a
second on the embedded default); a transaction the API refused with 422 is not an event (as in Lago).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.api.compat.lago.events import SOURCE, parse_lago_event
from meterstream.api.compat.lago.responses import kept_event_object, stored_event_object
from meterstream.api.queries import UsageQueries
from meterstream.entities import lago_event_errors
from meterstream.entities.common import aware
from meterstream.entities.meters import MeterRepository
from meterstream.entities.unmatched import UnmatchedEvent
from meterstream.ingest.translate import derived_id
from meterstream.schemas.event import InvalidEvent, parse_time


def candidate_ids(transaction_id: str, slugs: list[str]) -> list[str]:
    return sorted({derived_id(SOURCE, transaction_id, slug) for slug in slugs})


def rated_sql(db: str) -> str:
    return (
        "SELECT event_id, customer, subject, meter, toString(time), dimensions "
        f"FROM {db}.rated_usage FINAL "
        "WHERE tenant = {tenant:String} AND event_id IN {ids:Array(String)} ORDER BY meter"
    )


def dead_letter_sql(db: str) -> str:
    return (
        "SELECT stage, field, reason, raw "
        f"FROM {db}.dead_letters "
        "WHERE tenant = {tenant:String} AND event_id IN {ids:Array(String)} ORDER BY offset DESC LIMIT 1"
    )


class LagoLookup:
    def __init__(self, queries: UsageQueries, meters: MeterRepository, sessions: sessionmaker) -> None:
        self.queries = queries
        self.meters = meters
        self.sessions = sessions

    def find(self, tenant: str, transaction_id: str) -> dict[str, Any] | None:
        """The Lago event object of the transaction, or None."""
        known = self.meters.list(tenant, include_deleted=True)
        code_of = {m.slug: m.event_type for m in known}
        ids = candidate_ids(transaction_id, list(code_of))
        if ids:
            db = self.queries.db
            rows = self.queries.query(rated_sql(db), {"tenant": tenant, "ids": ids})
            if rows:
                return stored_event_object(transaction_id, [_rated(r) for r in rows], code_of)
        kept = self._unmatched(tenant, transaction_id) or self._not_metered(tenant, transaction_id)
        if kept is not None:
            return kept
        if ids:
            letters = self.queries.query(dead_letter_sql(self.queries.db), {"tenant": tenant, "ids": ids})
            if letters:
                return _dead_lettered(transaction_id, letters[0], code_of)
        return None

    def _unmatched(self, tenant: str, transaction_id: str) -> dict[str, Any] | None:
        with self.sessions() as s:
            row = s.scalar(_kept(tenant, transaction_id))
            if row is None:
                return None
            raw, reason = orjson.loads(row.raw), row.reason
        try:
            event = parse_lago_event(raw, aware(row.received_at))
        except InvalidEvent:  # kept events were checked when they came in: a defect if reached
            return None
        return kept_event_object(event, "unmatched", reason)

    def _not_metered(self, tenant: str, transaction_id: str) -> dict[str, Any] | None:
        """An accepted event whose metrics' field_name its properties lacked, so that nothing was metered."""
        kept = lago_event_errors.kept_event(self.sessions, tenant, transaction_id)
        if kept is None:
            return None
        raw, field, received = kept
        try:
            event = parse_lago_event(raw, received)
        except InvalidEvent:  # checked when it came in: a defect if reached
            return None
        return kept_event_object(event, "not_metered", f"the event has no {field}: its metric counts nothing", field)


def _kept(tenant: str, transaction_id: str) -> Any:
    """The newest kept, not yet replayed, unmatched Lago event of this transaction id."""
    return (
        select(UnmatchedEvent)
        .where(
            UnmatchedEvent.tenant == tenant,
            UnmatchedEvent.source == SOURCE,
            UnmatchedEvent.event_id == transaction_id,
            UnmatchedEvent.replayed_at.is_(None),
        )
        .order_by(UnmatchedEvent.id.desc())
        .limit(1)
    )


def kept_codes(sessions: sessionmaker, tenant: str, codes: set[str]) -> set[str]:
    """Which of these codes have kept, not yet replayed, Lago events (one query)."""
    stmt = (
        select(UnmatchedEvent.event_type)
        .where(
            UnmatchedEvent.tenant == tenant,
            UnmatchedEvent.source == SOURCE,
            UnmatchedEvent.event_type.in_(sorted(codes)),
            UnmatchedEvent.replayed_at.is_(None),
        )
        .distinct()
    )
    with sessions() as s:
        return {c for c in s.scalars(stmt) if c is not None}


def kept_transaction(sessions: sessionmaker, tenant: str, transaction_id: str) -> bool:
    with sessions() as s:
        return s.scalar(_kept(tenant, transaction_id)) is not None


def _rated(row: tuple) -> dict[str, Any]:
    event_id, customer, subject, meter, time_text, dims = row
    return {
        "event_id": event_id,
        "customer": customer,
        "subject": subject,
        "meter": meter,
        "time": parse_time(time_text.replace(" ", "T") + "Z"),
        "dimensions": dict(dims or {}),
    }


def _dead_lettered(transaction_id: str, letter: tuple, code_of: Mapping[str, str]) -> dict[str, Any] | None:
    stage, field, reason, raw = letter
    try:
        usage = orjson.loads(raw)
        row = {
            "event_id": usage["id"],
            "customer": usage["customer"],
            "subject": usage.get("subject"),
            "meter": usage["meter"],
            "time": parse_time(usage["time"]),
            "dimensions": usage.get("dimensions") or {},
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    obj = stored_event_object(transaction_id, [row], code_of)
    obj["meterstream"] = {"status": "dead_lettered", "event_ids": [row["event_id"]], "stage": stage,
                          "field": field, "reason": reason}  # fmt: skip
    return obj
