"""Lago events accepted with an error Lago reports in its `events.errors` webhook (docs/lago.md "Webhooks"):

- `invalid_code`: no billable metric has the event's code (the event itself is kept in entities/unmatched.py and
  metered once such a metric exists);
- `missing_aggregation_property`: the properties lack a billable metric's `field_name`, so that metric counts
  nothing for it (the raw event is kept here: `GET /events/{transaction_id}` finds it).

One row per (event, error), written by the Lago event path (api/compat/lago/service.py). The webhook digest
(webhooks/lago_digest.py) takes the rows not yet reported, in the order written, and marks them reported in the
transaction that appends the `events.errors` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import DateTime, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.common import aware
from meterstream.entities.db import Base

INVALID_CODE = "invalid_code"
MISSING_AGGREGATION_PROPERTY = "missing_aggregation_property"
KINDS = (INVALID_CODE, MISSING_AGGREGATION_PROPERTY)


class LagoEventErrorRow(Base):
    __tablename__ = "lago_event_errors"
    __table_args__ = (
        Index("ix_lago_event_errors_tenant_transaction", "tenant", "transaction_id"),
        Index("ix_lago_event_errors_reported_at", "reported_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    transaction_id: Mapped[str] = mapped_column(String(256))
    code: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    field: Mapped[str | None] = mapped_column(String(256), nullable=True)  # the missing property (Lago's path)
    raw: Mapped[str | None] = mapped_column(Text, nullable=True)  # the raw Lago event (missing_aggregation_property)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class EventError:
    """One error of an accepted Lago event, as the event path reports it."""

    transaction_id: str
    code: str
    kind: str
    field: str | None = None
    raw: Any = None  # the raw Lago event, kept for `GET /events/{transaction_id}` (None: not kept here)


def purge_created_before(sf: sessionmaker, cutoff: datetime) -> int:
    """Delete the Lago event errors (of every tenant) recorded before `cutoff`, reported or not; how many."""
    from sqlalchemy import delete

    with sf.begin() as s:
        return s.execute(delete(LagoEventErrorRow).where(LagoEventErrorRow.created_at < cutoff)).rowcount or 0


def record(sf: sessionmaker, tenant: str, errors: list[EventError], now: datetime | None = None) -> None:
    """Store the errors of a request's accepted events (one transaction)."""
    if not errors:
        return
    now = now or datetime.now(UTC)
    with sf.begin() as s:
        s.add_all(
            LagoEventErrorRow(tenant=tenant, transaction_id=e.transaction_id, code=e.code, kind=e.kind, field=e.field,
                              raw=orjson.dumps(e.raw).decode() if e.raw is not None else None, created_at=now)
            for e in errors
        )  # fmt: skip


def kept_event(sf: sessionmaker, tenant: str, transaction_id: str) -> tuple[Any, str, datetime] | None:
    """(raw event, missing field, when) of the newest kept event of this transaction that was not metered."""
    with sf() as s:
        row = s.scalar(
            select(LagoEventErrorRow)
            .where(LagoEventErrorRow.tenant == tenant, LagoEventErrorRow.transaction_id == transaction_id,
                   LagoEventErrorRow.raw.is_not(None))
            .order_by(LagoEventErrorRow.id.desc())
            .limit(1)
        )  # fmt: skip
        if row is None:
            return None
        return orjson.loads(row.raw), row.field or "", aware(row.created_at)


def take_unreported(s: Session, now: datetime, limit: int) -> dict[str, dict[str, list[str]]]:
    """Up to `limit` errors not yet reported (oldest first), marked reported at `now` in the caller's transaction:
    {tenant: {kind: [transaction ids, each once, in order]}}."""
    rows = s.scalars(
        select(LagoEventErrorRow).where(LagoEventErrorRow.reported_at.is_(None))
        .order_by(LagoEventErrorRow.id).limit(limit).with_for_update()
    ).all()  # fmt: skip
    out: dict[str, dict[str, dict[str, None]]] = {}  # tenant -> kind -> ids (a dict: each once, in order)
    for row in rows:
        out.setdefault(row.tenant, {k: {} for k in KINDS})[row.kind][row.transaction_id] = None
        row.reported_at = now
    return {tenant: {kind: list(ids) for kind, ids in kinds.items()} for tenant, kinds in out.items()}


__all__ = ["INVALID_CODE", "KINDS", "MISSING_AGGREGATION_PROPERTY", "EventError", "LagoEventErrorRow", "kept_event",
           "record", "take_unreported"]  # fmt: skip
