"""OpenMeter subjects: the user, device or line inside a customer that events name (model + repository).

Minimal now (issue #14 extends entities): key, display name, metadata, the optional period and Stripe
fields OpenMeter's upsert carries. Events need no subject row: an event's subject is metered whether
or not it was registered; this table is what `subjects.list/get` show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.common import NotFound, aware, new_ulid
from meterstream.entities.db import Base


class SubjectRow(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("tenant", "key", name="uq_subjects_tenant_key"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Subject:
    id: str
    tenant: str
    key: str
    display_name: str | None
    metadata: dict[str, Any] | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    stripe_customer_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SubjectUpsert:
    """The fields of an upsert; a field left None is cleared (OpenMeter's upsert replaces the subject)."""

    key: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    stripe_customer_id: str | None = None


def _subject(row: SubjectRow) -> Subject:
    return Subject(
        row.id, row.tenant, row.key, row.display_name, row.meta, aware(row.current_period_start),
        aware(row.current_period_end), row.stripe_customer_id, aware(row.created_at), aware(row.updated_at),
    )  # fmt: skip


class SubjectRepository:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def upsert(self, tenant: str, items: list[SubjectUpsert]) -> list[Subject]:
        """Create or replace each subject by key, in input order (one transaction)."""
        out: list[Subject] = []
        now = datetime.now(UTC)
        with self._sessions.begin() as s:
            for item in items:
                if not item.key or len(item.key) > 256:
                    raise ValueError("key: 1-256 characters")
                row = s.scalar(select(SubjectRow).where(SubjectRow.tenant == tenant, SubjectRow.key == item.key))
                if row is None:
                    row = SubjectRow(id=new_ulid(), tenant=tenant, key=item.key, created_at=now)
                    s.add(row)
                row.display_name = item.display_name
                row.meta = item.metadata
                row.current_period_start = item.current_period_start
                row.current_period_end = item.current_period_end
                row.stripe_customer_id = item.stripe_customer_id
                row.updated_at = now
                s.flush()
                out.append(_subject(row))
        return out

    def list(self, tenant: str) -> list[Subject]:
        stmt = select(SubjectRow).where(SubjectRow.tenant == tenant).order_by(SubjectRow.key)
        with self._sessions() as s:
            return [_subject(r) for r in s.scalars(stmt)]

    def get(self, tenant: str, id_or_key: str) -> Subject:
        with self._sessions() as s:
            base = select(SubjectRow).where(SubjectRow.tenant == tenant)
            row = s.scalar(base.where(SubjectRow.key == id_or_key)) or s.scalar(base.where(SubjectRow.id == id_or_key))
            if row is None:
                raise NotFound(f"subject {id_or_key!r} not found")
            return _subject(row)

    def delete(self, tenant: str, id_or_key: str) -> None:
        with self._sessions.begin() as s:
            base = select(SubjectRow).where(SubjectRow.tenant == tenant)
            row = s.scalar(base.where(SubjectRow.key == id_or_key)) or s.scalar(base.where(SubjectRow.id == id_or_key))
            if row is None:
                raise NotFound(f"subject {id_or_key!r} not found")
            s.delete(row)
