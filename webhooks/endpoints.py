"""Webhook endpoints per tenant: register (a fresh `whsec_` secret), list, get, disable, enable.

An endpoint has an id (`ep_<ULID>`), an http(s) URL, its secret (kept in the store: signing needs it), the event
types it wants (empty: every type but the opt-in `session.*` ones, webhooks/events.py `subscribed`) and
`enabled`. Events are fanned out to the tenant's endpoints that are enabled and want the event's type at the
moment the dispatcher reads the event; a disabled endpoint gets nothing new (its pending deliveries are still
tried, and `replay` still works).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.common import Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import text
from meterstream.entities.numbering import lock_for_write
from meterstream.webhooks.events import EVENT_TYPES, OPT_IN_TYPES, subscribed
from meterstream.webhooks.signing import new_secret, secret_key


class WebhookEndpointRow(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        UniqueConstraint("tenant", "endpoint_id", name="uq_webhook_endpoints_tenant_endpoint_id"),
        Index("ix_webhook_endpoints_tenant_enabled", "tenant", "enabled"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    event_types: Mapped[str] = mapped_column(Text)  # JSON list; [] = every type
    description: Mapped[str] = mapped_column(String(1024))
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    endpoint_id: str
    url: str
    secret: str
    event_types: tuple[str, ...]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str) -> bool:
        return self.enabled and subscribed(self.event_types, event_type)


def to_endpoint(row: WebhookEndpointRow) -> Endpoint:
    return Endpoint(
        tenant=row.tenant,
        endpoint_id=row.endpoint_id,
        url=row.url,
        secret=row.secret,
        event_types=tuple(orjson.loads(row.event_types)),
        description=row.description,
        enabled=bool(row.enabled),
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        updated_at=aware(row.updated_at),  # type: ignore[arg-type]
    )


def opt_in_subscriptions(s: Session, tenants: Iterable[str]) -> set[tuple[str, str]]:
    """(tenant, type) for every opt-in type (events.OPT_IN_TYPES) an enabled endpoint of one of `tenants` names:
    the only opt-in events worth storing (caller's transaction; one read of the small endpoints table)."""
    rows = s.execute(select(WebhookEndpointRow.tenant, WebhookEndpointRow.event_types).where(
        WebhookEndpointRow.tenant.in_(sorted(set(tenants))), WebhookEndpointRow.enabled.is_(True)))  # fmt: skip
    return {(tenant, t) for tenant, types in rows for t in orjson.loads(types) if t in OPT_IN_TYPES}


def check_url(url: object) -> str:
    value = text("url", url, 2048)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url", f"an http:// or https:// URL with a host (got {value!r})")
    return value


def check_event_types(types: Iterable[str] | None) -> list[str]:
    wanted = list(types or [])
    for i, t in enumerate(wanted):
        if t not in EVENT_TYPES:
            raise Invalid(f"event_types[{i}]", f"one of {', '.join(EVENT_TYPES)} (got {t!r})")
    return sorted(set(wanted))


def register(
    sf: sessionmaker,
    tenant: str,
    url: str,
    *,
    event_types: Iterable[str] | None = None,
    description: str = "",
    secret: str | None = None,
) -> Endpoint:
    """A new enabled endpoint of `tenant` with a fresh secret (or `secret`, a `whsec_...` of at least 16 bytes).
    The secret is shown in the returned record: give it to the receiver."""
    text("tenant", tenant, 128)
    check_url(url)
    types = check_event_types(event_types)
    if not isinstance(description, str) or len(description) > 1024:
        raise Invalid("description", "text of at most 1024 characters")
    if secret is None:
        secret = new_secret()
    else:
        try:
            secret_key(secret)
        except ValueError as exc:
            raise Invalid("secret", str(exc).removeprefix("secret: ")) from None
    now = datetime.now(UTC)
    row = WebhookEndpointRow(tenant=tenant, endpoint_id="ep_" + new_ulid(), url=url, secret=secret,
                             event_types=orjson.dumps(types).decode(), description=description, enabled=True,
                             created_at=now, updated_at=now)  # fmt: skip
    with sf.begin() as s:
        s.add(row)
        s.flush()
        return to_endpoint(row)


def get(sf: sessionmaker, tenant: str, endpoint_id: str) -> Endpoint:
    with sf() as s:
        row = s.scalar(select(WebhookEndpointRow).where(WebhookEndpointRow.tenant == tenant,
                                                        WebhookEndpointRow.endpoint_id == endpoint_id))  # fmt: skip
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r} for tenant {tenant!r}")
        return to_endpoint(row)


def list_endpoints(sf: sessionmaker, tenant: str | None = None, *, enabled_only: bool = False) -> list[Endpoint]:
    """The endpoints of `tenant` (None: of every tenant), in the order registered."""
    stmt = select(WebhookEndpointRow)
    if tenant is not None:
        stmt = stmt.where(WebhookEndpointRow.tenant == tenant)
    if enabled_only:
        stmt = stmt.where(WebhookEndpointRow.enabled.is_(True))
    with sf() as s:
        return [to_endpoint(r) for r in s.scalars(stmt.order_by(WebhookEndpointRow.id)).all()]


def set_enabled(sf: sessionmaker, tenant: str, endpoint_id: str, enabled: bool) -> Endpoint:
    """Disable (or enable again) an endpoint; NotFound when the tenant has no such endpoint."""
    with sf.begin() as s:
        lock_for_write(s)
        row = s.scalar(
            select(WebhookEndpointRow)
            .where(WebhookEndpointRow.tenant == tenant, WebhookEndpointRow.endpoint_id == endpoint_id)
            .with_for_update()
        )
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r} for tenant {tenant!r}")
        row.enabled, row.updated_at = enabled, datetime.now(UTC)
        s.flush()
        return to_endpoint(row)


def disable(sf: sessionmaker, tenant: str, endpoint_id: str) -> Endpoint:
    return set_enabled(sf, tenant, endpoint_id, False)


__all__ = ["Endpoint", "WebhookEndpointRow", "check_url", "disable", "get", "list_endpoints", "register",
           "set_enabled"]  # fmt: skip
