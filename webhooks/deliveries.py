"""Deliveries: one row per (event, endpoint), with its attempts, next try, status and last error.

Statuses: `pending` (an attempt is due at `next_at`), `delivered` (the receiver answered 2xx), `dead` (every
attempt failed: the dead letter). `replay` puts dead (or chosen) deliveries back to `pending` with a fresh
set of attempts. All times are UTC; `now` is passed in (the dispatcher's clock), so tests can move time.

A delivery to a Lago-format endpoint (webhooks/endpoints.py `format`) keeps its own `body`, Lago's payload, made
by the dispatcher's renderer at the first attempt and sent unchanged on every later one (and on `replay`).

`claim` takes due deliveries for one dispatcher: it moves their `next_at` a lease ahead in a short transaction
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two dispatchers never take the same row), so a dispatcher that dies
while posting leaves them due again when the lease ends, and no transaction stays open during the HTTP call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.common import Invalid, aware
from meterstream.entities.db import Base
from meterstream.entities.numbering import lock_for_write
from meterstream.webhooks.endpoints import Endpoint, WebhookEndpointRow
from meterstream.webhooks.events import WebhookOutboxRow

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATUSES = (PENDING, DELIVERED, DEAD)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_seq", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_status_next_at", "status", "next_at"),
        Index("ix_webhook_deliveries_tenant_endpoint", "tenant", "endpoint_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the last HTTP status, if any
    last_error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)  # a Lago-format endpoint's payload, once made


@dataclass(frozen=True)
class Delivery:
    id: int
    tenant: str
    event_seq: int
    event_id: str
    event_type: str
    endpoint_id: str
    status: str
    attempts: int
    next_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Work:
    """A claimed delivery with what posting it needs: `body` is the event's; a Lago-format endpoint's (`format`)
    payload is `rendered` (None: not made yet)."""

    delivery: Delivery
    url: str
    secret: str
    body: bytes
    format: str = "standard"
    signature_algo: str | None = None
    issuer: str | None = None
    rendered: bytes | None = None


def to_delivery(row: WebhookDeliveryRow) -> Delivery:
    return Delivery(
        id=int(row.id),
        tenant=row.tenant,
        event_seq=int(row.event_seq),
        event_id=row.event_id,
        event_type=row.event_type,
        endpoint_id=row.endpoint_id,
        status=row.status,
        attempts=int(row.attempts),
        next_at=aware(row.next_at),  # type: ignore[arg-type]
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        updated_at=aware(row.updated_at),  # type: ignore[arg-type]
        delivered_at=aware(row.delivered_at),
    )


def create_for(s: Session, event: WebhookOutboxRow, endpoints: Iterable[Endpoint], now: datetime) -> int:
    """One pending delivery, due now, per endpoint of the event's tenant that wants its type (caller's
    transaction); returns how many."""
    n = 0
    for ep in endpoints:
        if ep.tenant == event.tenant and ep.wants(event.type):
            s.add(WebhookDeliveryRow(tenant=event.tenant, event_seq=event.seq, event_id=event.event_id,
                                     event_type=event.type, endpoint_id=ep.endpoint_id, status=PENDING, attempts=0,
                                     next_at=now, created_at=now, updated_at=now))  # fmt: skip
            n += 1
    return n


def claim(sf: sessionmaker, now: datetime, limit: int, lease: timedelta) -> list[Work]:
    """Up to `limit` pending deliveries due at `now` (oldest first), their `next_at` moved to `now + lease`.
    An idle poll only reads (no write lock)."""
    if due_count(sf, now) == 0:
        return []
    with sf.begin() as s:
        lock_for_write(s)
        stmt = (
            select(WebhookDeliveryRow, WebhookEndpointRow.url, WebhookEndpointRow.secret, WebhookOutboxRow.body,
                   WebhookEndpointRow.format, WebhookEndpointRow.signature_algo, WebhookEndpointRow.issuer)
            .join(WebhookEndpointRow, (WebhookEndpointRow.tenant == WebhookDeliveryRow.tenant)
                  & (WebhookEndpointRow.endpoint_id == WebhookDeliveryRow.endpoint_id))
            .join(WebhookOutboxRow, WebhookOutboxRow.seq == WebhookDeliveryRow.event_seq)
            .where(WebhookDeliveryRow.status == PENDING, WebhookDeliveryRow.next_at <= now)
            .order_by(WebhookDeliveryRow.next_at, WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
        )  # fmt: skip
        out = []
        for row, url, secret, body, format_, algo, issuer in s.execute(stmt).all():
            row.next_at, row.updated_at = now + lease, now
            rendered = row.body.encode() if row.body is not None else None
            out.append(Work(to_delivery(row), url, secret, body.encode(), format_, algo, issuer, rendered))
        s.flush()
        return out


def keep_body(sf: sessionmaker, delivery_id: int, body: bytes) -> None:
    """Store a Lago-format delivery's payload, made at its first attempt, for every later one."""
    with sf.begin() as s:
        lock_for_write(s)
        _locked(s, delivery_id).body = body.decode()


def _locked(s: Session, delivery_id: int) -> WebhookDeliveryRow:
    row = s.scalar(select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id).with_for_update())
    if row is None:  # pragma: no cover - deliveries are never deleted
        raise LookupError(f"no webhook delivery {delivery_id}")
    return row


def succeeded(sf: sessionmaker, delivery_id: int, now: datetime, status_code: int) -> Delivery:
    with sf.begin() as s:
        lock_for_write(s)
        row = _locked(s, delivery_id)
        row.attempts = int(row.attempts) + 1
        row.status, row.last_status, row.last_error = DELIVERED, status_code, None
        row.delivered_at, row.updated_at = now, now
        s.flush()
        return to_delivery(row)


def failed(sf: sessionmaker, delivery_id: int, now: datetime, error: str, status_code: int | None,
           delay: float | None) -> Delivery:  # fmt: skip
    """Record a failed attempt: pending again after `delay` seconds, or dead when `delay` is None."""
    with sf.begin() as s:
        lock_for_write(s)
        row = _locked(s, delivery_id)
        row.attempts = int(row.attempts) + 1
        row.last_status, row.last_error, row.updated_at = status_code, error[:1024], now
        if delay is None:
            row.status = DEAD
        else:
            row.status, row.next_at = PENDING, now + timedelta(seconds=delay)
        s.flush()
        return to_delivery(row)


def replay(
    sf: sessionmaker,
    tenant: str,
    now: datetime,
    *,
    delivery_ids: Sequence[int] | None = None,
    endpoint_id: str | None = None,
    status: str = DEAD,
) -> list[Delivery]:
    """Put the tenant's deliveries back to `pending`, due `now`, with a fresh set of attempts: the chosen ids, or
    every delivery in `status` (default: the dead ones), optionally of one endpoint. Returns those changed."""
    if status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)} (got {status!r})")
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.tenant == tenant)
    if delivery_ids is not None:
        stmt = stmt.where(WebhookDeliveryRow.id.in_(list(delivery_ids)))
    else:
        stmt = stmt.where(WebhookDeliveryRow.status == status)
    if endpoint_id is not None:
        stmt = stmt.where(WebhookDeliveryRow.endpoint_id == endpoint_id)
    with sf.begin() as s:
        lock_for_write(s)
        rows = s.scalars(stmt.order_by(WebhookDeliveryRow.id).with_for_update()).all()
        for row in rows:
            row.status, row.attempts, row.next_at, row.updated_at = PENDING, 0, now, now
            row.delivered_at = None
        s.flush()
        return [to_delivery(r) for r in rows]


def list_deliveries(
    sf: sessionmaker,
    tenant: str,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """The tenant's deliveries, newest first."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)} (got {status!r})")
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.tenant == tenant)
    if status is not None:
        stmt = stmt.where(WebhookDeliveryRow.status == status)
    if endpoint_id is not None:
        stmt = stmt.where(WebhookDeliveryRow.endpoint_id == endpoint_id)
    if event_id is not None:
        stmt = stmt.where(WebhookDeliveryRow.event_id == event_id)
    with sf() as s:
        rows = s.scalars(stmt.order_by(WebhookDeliveryRow.id.desc()).limit(limit)).all()
        return [to_delivery(r) for r in rows]


def due_count(sf: sessionmaker, now: datetime) -> int:
    """Pending deliveries whose attempt is due (the dispatcher's delivery backlog)."""
    with sf() as s:
        stmt = (
            select(func.count())
            .select_from(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.status == PENDING, WebhookDeliveryRow.next_at <= now)
        )
        return int(s.scalar(stmt) or 0)


def dead_count(sf: sessionmaker) -> int:
    with sf() as s:
        stmt = select(func.count()).select_from(WebhookDeliveryRow).where(WebhookDeliveryRow.status == DEAD)
        return int(s.scalar(stmt) or 0)


def utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now: a time with a time zone")
    return now.astimezone(UTC)


__all__ = ["DEAD", "DELIVERED", "PENDING", "STATUSES", "Delivery", "WebhookDeliveryRow", "Work", "claim",
           "create_for", "dead_count", "due_count", "failed", "keep_body", "list_deliveries", "replay", "succeeded",
           "to_delivery", "utc"]  # fmt: skip
