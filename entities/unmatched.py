"""Events that matched no meter: kept with the raw event, listed, counted, replayed once a meter exists.

An external event (OpenMeter CloudEvent, Lago event) whose type no meter definition covers is not an
error of the sender and must not be lost: it is stored here (tenant, source, id, type, raw JSON) and
counted (`meterstream_api_unmatched_events_total`). When a meter for its type is created, `replay`
runs the stored events of that type through the given translation and the IngestService; the ones
that now yield usage events are marked replayed (their derived ids make a second replay a duplicate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter
from sqlalchemy import DateTime, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.db import Base

UNMATCHED = Counter("meterstream_api_unmatched_events_total", "External events that matched no meter definition")
REPLAYED = Counter("meterstream_api_unmatched_replayed_total", "Unmatched events replayed after a meter was created")


def purge_received_before(sf: sessionmaker, cutoff: datetime) -> int:
    """Delete the unmatched events (of every tenant) received before `cutoff`, replayed or not; how many."""
    from sqlalchemy import delete

    with sf.begin() as s:
        return s.execute(delete(UnmatchedEvent).where(UnmatchedEvent.received_at < cutoff)).rowcount or 0


class UnmatchedEvent(Base):
    __tablename__ = "unmatched_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(256), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    event_type: Mapped[str | None] = mapped_column(String(256), nullable=True)
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(512))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class Unmatched:
    id: int
    tenant: str
    source: str | None
    event_id: str | None
    event_type: str | None
    event: Any  # the raw external event, decoded
    reason: str
    received_at: datetime
    replayed_at: datetime | None


def _out(row: UnmatchedEvent) -> Unmatched:
    return Unmatched(row.id, row.tenant, row.source, row.event_id, row.event_type, orjson.loads(row.raw),
                     row.reason, row.received_at, row.replayed_at)  # fmt: skip


class UnmatchedRepository:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def add(self, tenant: str, event: Any, *, event_type: str | None, source: str | None = None,
            event_id: str | None = None, reason: str = "no meter for this event type") -> int:  # fmt: skip
        raw = orjson.dumps(event).decode()
        row = UnmatchedEvent(tenant=tenant, source=source, event_id=event_id, event_type=event_type, raw=raw,
                             reason=reason[:512], received_at=datetime.now(UTC))  # fmt: skip
        with self._sessions.begin() as s:
            s.add(row)
            s.flush()
            new_id = row.id
        UNMATCHED.inc()
        return new_id

    def list(self, tenant: str, *, event_type: str | None = None, include_replayed: bool = False,
             limit: int = 100, offset: int = 0) -> list[Unmatched]:  # fmt: skip
        stmt = select(UnmatchedEvent).where(UnmatchedEvent.tenant == tenant)
        if event_type is not None:
            stmt = stmt.where(UnmatchedEvent.event_type == event_type)
        if not include_replayed:
            stmt = stmt.where(UnmatchedEvent.replayed_at.is_(None))
        stmt = stmt.order_by(UnmatchedEvent.id).limit(limit).offset(offset)
        with self._sessions() as s:
            return [_out(r) for r in s.scalars(stmt)]

    def count(self, tenant: str, *, event_type: str | None = None, include_replayed: bool = False) -> int:
        stmt = select(func.count()).select_from(UnmatchedEvent).where(UnmatchedEvent.tenant == tenant)
        if event_type is not None:
            stmt = stmt.where(UnmatchedEvent.event_type == event_type)
        if not include_replayed:
            stmt = stmt.where(UnmatchedEvent.replayed_at.is_(None))
        with self._sessions() as s:
            return int(s.scalar(stmt) or 0)

    def mark_replayed(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._sessions.begin() as s:
            s.execute(update(UnmatchedEvent).where(UnmatchedEvent.id.in_(ids)).values(replayed_at=datetime.now(UTC)))

    def replay(
        self,
        tenant: str,
        event_type: str,
        translate: Callable[[Any], list[dict[str, Any]]],
        submit: Callable[[str, list[dict[str, Any]]], Any],
        batch: int = 1_000,
    ) -> int:
        """Re-run the tenant's stored events of `event_type`: `translate(raw) -> usage events` (empty: still
        unmatched), `submit(tenant, events)` (IngestService.submit: raises if Kafka does not acknowledge,
        and then nothing is marked). Returns how many stored events were replayed."""
        done = skipped = 0
        while True:
            pending = self.list(tenant, event_type=event_type, limit=batch, offset=skipped)
            replayable: list[int] = []
            events: list[dict[str, Any]] = []
            for item in pending:
                out = translate(item.event)
                if out:
                    replayable.append(item.id)
                    events.extend(out)
            if events:
                submit(tenant, events)
            self.mark_replayed(replayable)
            done += len(replayable)
            skipped += len(pending) - len(replayable)
            REPLAYED.inc(len(replayable))
            if len(pending) < batch:
                return done
