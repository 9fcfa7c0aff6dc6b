"""Webhook endpoints per tenant: register (a fresh `whsec_` secret), list, get, disable, enable.

An endpoint has an id (`ep_<ULID>`), an http(s) URL, its secret (kept in the store: signing needs it), the event
types it wants (empty: every type but the opt-in `session.*` ones, webhooks/events.py `subscribed`) and
`enabled`. Events are fanned out to the tenant's endpoints that are enabled and want the event's type at the
moment the dispatcher reads the event; a disabled endpoint gets nothing new (its pending deliveries are still
tried, and `replay` still works).

An endpoint's `format` says what its receiver gets: `standard` (the event's body, Standard Webhooks signatures) or
`lago` (registered through Lago's `/api/v1/webhook_endpoints`: Lago's payloads and signatures, docs/lago.md
"Webhooks"; its id is a UUID, its `event_types` are Lago's names, its `signature_algo` jwt or hmac, and `issuer` the
API URL its JWTs name). Only a Lago endpoint is deleted (Lago's DELETE); its pending deliveries then die.
"""

from __future__ import annotations

import uuid
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
from meterstream.webhooks.events import EVENT_TYPES, LAGO_TYPES, OPT_IN_TYPES, subscribed
from meterstream.webhooks.lago_signing import ALGORITHMS, DEFAULT_ALGORITHM
from meterstream.webhooks.signing import new_secret, secret_key

STANDARD = "standard"
LAGO = "lago"


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
    format: Mapped[str] = mapped_column(String(16), server_default=STANDARD)
    signature_algo: Mapped[str | None] = mapped_column(String(8), nullable=True)  # a Lago endpoint's: jwt | hmac
    issuer: Mapped[str | None] = mapped_column(String(2048), nullable=True)  # a Lago endpoint's JWT `iss`


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
    format: str = STANDARD
    signature_algo: str | None = None
    issuer: str | None = None

    def wants(self, event_type: str) -> bool:
        if not self.enabled:
            return False
        if self.format == LAGO:  # the events Lago has, by Lago's names (none named: every one of them)
            lago = LAGO_TYPES.get(event_type)
            return lago is not None and (not self.event_types or lago[0] in self.event_types)
        return subscribed(self.event_types, event_type)


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
        format=row.format or STANDARD,
        signature_algo=row.signature_algo,
        issuer=row.issuer,
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


# --- Lago-format endpoints (api/compat/lago/webhooks.py) ---------------------------------------------------------


def _lago_fields(url: object, signature_algo: object, name: object, event_types: object) -> tuple[str, str, str, str]:
    """(url, algorithm, name, event types as stored JSON), checked; errors name Lago's fields."""
    try:
        url = check_url(url)
    except Invalid as exc:
        raise Invalid("webhook_url", exc.reason) from None
    algo = DEFAULT_ALGORITHM if signature_algo is None else signature_algo
    if algo not in ALGORITHMS:
        raise Invalid("signature_algo", f"one of {', '.join(ALGORITHMS)} (got {signature_algo!r})")
    if name is not None and (not isinstance(name, str) or len(name) > 1024):
        raise Invalid("name", "text of at most 1024 characters")
    if event_types is not None and not isinstance(event_types, list):
        raise Invalid("event_types", "a list of webhook types, or null for every type")
    types = []
    for i, t in enumerate(event_types or []):
        if not isinstance(t, str) or not 0 < len(t) <= 64:
            raise Invalid(f"event_types[{i}]", "a webhook type such as invoice.created")
        types.append(t)
    return url, str(algo), name or "", orjson.dumps(sorted(set(types))).decode()


def _lago_row(s: Session, tenant: str, endpoint_id: str) -> WebhookEndpointRow:
    row = s.scalar(select(WebhookEndpointRow).where(
        WebhookEndpointRow.tenant == tenant, WebhookEndpointRow.endpoint_id == endpoint_id,
        WebhookEndpointRow.format == LAGO).with_for_update())  # fmt: skip
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r} for tenant {tenant!r}")
    return row


def _url_taken(s: Session, tenant: str, url: str, endpoint_id: str | None = None) -> None:
    """Lago refuses a second endpoint of the organization with the same URL."""
    stmt = select(WebhookEndpointRow.endpoint_id).where(
        WebhookEndpointRow.tenant == tenant, WebhookEndpointRow.format == LAGO, WebhookEndpointRow.url == url
    )
    if any(other != endpoint_id for other in s.scalars(stmt)):
        raise Invalid("webhook_url", "value_already_exist")


def register_lago(sf: sessionmaker, tenant: str, url: object, *, signature_algo: object = None, name: object = None,
                  event_types: object = None, issuer: str) -> Endpoint:  # fmt: skip
    """A new Lago-format endpoint (enabled, a UUID id); `issuer` is what its JWTs name as `iss`."""
    text("tenant", tenant, 128)
    url, algo, label, types = _lago_fields(url, signature_algo, name, event_types)
    now = datetime.now(UTC)
    with sf.begin() as s:
        lock_for_write(s)
        _url_taken(s, tenant, url)
        row = WebhookEndpointRow(tenant=tenant, endpoint_id=str(uuid.uuid4()), url=url, secret="", event_types=types,
                                 description=label, enabled=True, created_at=now, updated_at=now, format=LAGO,
                                 signature_algo=algo, issuer=issuer)  # fmt: skip
        s.add(row)
        s.flush()
        return to_endpoint(row)


def update_lago(sf: sessionmaker, tenant: str, endpoint_id: str, changes: dict[str, object]) -> Endpoint:
    """Change a Lago endpoint's `webhook_url`, `signature_algo`, `name` or `event_types` (the keys given)."""
    with sf.begin() as s:
        lock_for_write(s)
        row = _lago_row(s, tenant, endpoint_id)
        current = to_endpoint(row)
        url, algo, label, types = _lago_fields(  # a URL or algorithm sent as null is kept; a null name or types clear
            changes.get("webhook_url") or current.url, changes.get("signature_algo") or current.signature_algo,
            changes.get("name", current.description or None),
            changes.get("event_types", list(current.event_types) or None))  # fmt: skip
        _url_taken(s, tenant, url, endpoint_id)
        row.url, row.signature_algo, row.description, row.event_types = url, algo, label, types
        row.updated_at = datetime.now(UTC)
        s.flush()
        return to_endpoint(row)


def delete_lago(sf: sessionmaker, tenant: str, endpoint_id: str) -> Endpoint:
    """Delete a Lago endpoint; its deliveries still pending die (`endpoint deleted`), delivered ones stay listed."""
    from meterstream.webhooks.deliveries import DEAD, PENDING, WebhookDeliveryRow

    with sf.begin() as s:
        lock_for_write(s)
        row = _lago_row(s, tenant, endpoint_id)
        gone = to_endpoint(row)
        now = datetime.now(UTC)
        for delivery in s.scalars(select(WebhookDeliveryRow).where(
                WebhookDeliveryRow.tenant == tenant, WebhookDeliveryRow.endpoint_id == endpoint_id,
                WebhookDeliveryRow.status == PENDING).with_for_update()):  # fmt: skip
            delivery.status, delivery.last_error, delivery.updated_at = DEAD, "endpoint deleted", now
        s.delete(row)
        return gone


def list_lago(sf: sessionmaker, tenant: str) -> list[Endpoint]:
    """The tenant's Lago-format endpoints, in the order created."""
    return [e for e in list_endpoints(sf, tenant) if e.format == LAGO]


def get_lago(sf: sessionmaker, tenant: str, endpoint_id: str) -> Endpoint:
    found = get(sf, tenant, endpoint_id)
    if found.format != LAGO:
        raise NotFound(f"no webhook endpoint {endpoint_id!r} for tenant {tenant!r}")
    return found


__all__ = ["LAGO", "STANDARD", "Endpoint", "WebhookEndpointRow", "check_url", "delete_lago", "disable", "get",
           "get_lago", "list_endpoints", "list_lago", "register", "register_lago", "set_enabled",
           "update_lago"]  # fmt: skip
