"""The dispatcher's reads and writes of `webhook_outbox` (webhooks/events.py appends to it).

`fan_out` turns events not yet fanned out into deliveries, in one short transaction (PostgreSQL: `FOR UPDATE
SKIP LOCKED`, so two dispatchers never fan out one event twice; the unique (event, endpoint) key would refuse it
anyway). `unpublished` / `mark_published` are the Kafka side: read, produce, wait for the acknowledgement, mark.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from meterstream.entities.numbering import lock_for_write
from meterstream.webhooks import deliveries
from meterstream.webhooks.endpoints import WebhookEndpointRow, to_endpoint
from meterstream.webhooks.events import WebhookOutboxRow


def fan_out(sf: sessionmaker, now: datetime, limit: int) -> tuple[int, int]:
    """Fan out up to `limit` events (in seq order) to the endpoints that want them; returns (events, deliveries).
    An idle poll only reads (no write lock: on SQLite that is the whole database's)."""
    with sf() as s:
        if s.scalar(select(WebhookOutboxRow.seq).where(WebhookOutboxRow.fanned_at.is_(None)).limit(1)) is None:
            return 0, 0
    with sf.begin() as s:
        lock_for_write(s)
        rows = s.scalars(
            select(WebhookOutboxRow)
            .where(WebhookOutboxRow.fanned_at.is_(None))
            .order_by(WebhookOutboxRow.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0, 0
        tenants = {r.tenant for r in rows}
        endpoints = [
            to_endpoint(e)
            for e in s.scalars(
                select(WebhookEndpointRow)
                .where(WebhookEndpointRow.tenant.in_(tenants), WebhookEndpointRow.enabled.is_(True))
                .order_by(WebhookEndpointRow.id)
            ).all()
        ]
        made = 0
        for row in rows:
            made += deliveries.create_for(s, row, endpoints, now)
            row.fanned_at = now
        s.flush()
        return len(rows), made


def unpublished(sf: sessionmaker, limit: int) -> list[tuple[int, str, str, str, str]]:
    """Up to `limit` events not yet on Kafka, in seq order: (seq, event_id, type, key, body)."""
    stmt = (
        select(WebhookOutboxRow.seq, WebhookOutboxRow.event_id, WebhookOutboxRow.type, WebhookOutboxRow.key,
               WebhookOutboxRow.body)
        .where(WebhookOutboxRow.published_at.is_(None))
        .order_by(WebhookOutboxRow.seq)
        .limit(limit)
    )  # fmt: skip
    with sf() as s:
        return [(int(a), b, c, d, e) for a, b, c, d, e in s.execute(stmt).all()]


def mark_published(sf: sessionmaker, seqs: list[int], now: datetime) -> None:
    """Record that Kafka acknowledged these events (call only after it did)."""
    with sf.begin() as s:
        lock_for_write(s)
        s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.seq.in_(seqs)).values(published_at=now))


def waiting(sf: sessionmaker, kafka: bool) -> int:
    """Events not yet fanned out, plus (with Kafka) those not yet published."""
    count = select(func.count()).select_from(WebhookOutboxRow)
    with sf() as s:
        n = int(s.scalar(count.where(WebhookOutboxRow.fanned_at.is_(None))) or 0)
        if kafka:
            n += int(s.scalar(count.where(WebhookOutboxRow.published_at.is_(None))) or 0)
        return n


def events(sf: sessionmaker, tenant: str | None = None, limit: int = 1000) -> list[WebhookOutboxRow]:
    """The newest `limit` events (of one tenant), in seq order (for the CLI and the tests)."""
    stmt = select(WebhookOutboxRow)
    if tenant is not None:
        stmt = stmt.where(WebhookOutboxRow.tenant == tenant)
    with sf() as s:
        rows = list(s.scalars(stmt.order_by(WebhookOutboxRow.seq.desc()).limit(limit)).all())
        s.expunge_all()
        return rows[::-1]


__all__ = ["events", "fan_out", "mark_published", "unpublished", "waiting"]
