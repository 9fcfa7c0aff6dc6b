"""OpenMeter's portal tokens (docs/openmeter.md, "Portal tokens"): a token a service hands to its own end user's
browser, good only for reading that user's (one subject's) usage of some meters, until it expires or is
invalidated. Model + repository.

Like API keys (entities/keys.py), a token is `omp_<id>.<secret>`, shown once; only the secret's SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.common import aware, new_ulid
from meterstream.entities.db import Base

PREFIX = "omp_"


class PortalTokenRow(Base):
    __tablename__ = "portal_tokens"
    __table_args__ = (Index("ix_portal_tokens_tenant_subject", "tenant", "subject"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(256))
    allowed_meter_slugs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    invalidated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class PortalToken:
    id: str
    tenant: str
    subject: str
    allowed_meter_slugs: tuple[str, ...] | None
    expires_at: datetime
    created_at: datetime
    invalidated_at: datetime | None = None

    def valid_at(self, t: datetime) -> bool:
        return self.invalidated_at is None and t < self.expires_at

    def allows(self, meter: str) -> bool:
        return self.allowed_meter_slugs is None or meter in self.allowed_meter_slugs


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(r: PortalTokenRow) -> PortalToken:
    allowed: Any = r.allowed_meter_slugs
    return PortalToken(r.id, r.tenant, r.subject, tuple(allowed) if allowed is not None else None,
                       aware(r.expires_at), aware(r.created_at), aware(r.invalidated_at))  # type: ignore[arg-type]  # fmt: skip


class PortalTokenRepository:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def create(
        self, tenant: str, subject: str, allowed_meter_slugs: list[str] | None, now: datetime, lifetime: timedelta
    ) -> tuple[PortalToken, str]:
        """A new token, created `now`, good for `lifetime`; its info and the token itself (shown once, never stored)."""
        secret = secrets.token_urlsafe(32)
        row = PortalTokenRow(
            id=new_ulid(), tenant=tenant, subject=subject, allowed_meter_slugs=allowed_meter_slugs,
            secret_hash=_hash(secret), expires_at=now + lifetime, created_at=now,
        )  # fmt: skip
        with self._sessions.begin() as s:
            s.add(row)
            s.flush()
            return _token(row), f"{PREFIX}{row.id}.{secret}"

    def list(self, tenant: str, limit: int) -> list[PortalToken]:
        """The tenant's tokens, newest first."""
        stmt = select(PortalTokenRow).where(PortalTokenRow.tenant == tenant)
        with self._sessions() as s:
            rows = s.scalars(stmt.order_by(PortalTokenRow.created_at.desc(), PortalTokenRow.id.desc()).limit(limit))
            return [_token(r) for r in rows]

    def invalidate(self, tenant: str, token_id: str | None = None, subject: str | None = None) -> int:
        """Invalidate the token `token_id`, or every token of `subject`, or (neither given) every token of the
        tenant; how many were invalidated."""
        stmt = select(PortalTokenRow).where(PortalTokenRow.tenant == tenant, PortalTokenRow.invalidated_at.is_(None))
        if token_id is not None:
            stmt = stmt.where(PortalTokenRow.id == token_id)
        if subject is not None:
            stmt = stmt.where(PortalTokenRow.subject == subject)
        now = datetime.now(UTC)
        with self._sessions.begin() as s:
            rows = list(s.scalars(stmt))
            for r in rows:
                r.invalidated_at = now
            return len(rows)

    def authenticate(self, token: str, now: datetime) -> PortalToken | None:
        """The token's info if it is well formed, known, not invalidated and not expired at `now`; else None."""
        if not token.startswith(PREFIX):
            return None
        token_id, dot, secret = token[len(PREFIX) :].partition(".")
        if not dot or len(token_id) != 26 or not secret:
            return None
        with self._sessions() as s:
            row = s.get(PortalTokenRow, token_id)
            if row is None:
                _hash(secret)  # the same work whether or not the id exists
                return None
            if not hmac.compare_digest(_hash(secret), row.secret_hash):
                return None
            found = _token(row)
        return found if found.valid_at(now) else None


__all__ = ["PREFIX", "PortalToken", "PortalTokenRepository"]
