"""Meter definitions (OpenMeter's meters; Lago's billable metrics map onto them): model + repository.

A definition says which external events feed a Meterstream meter and how (ingest/translate.py's
`MeterDefinition`: slug, event type, aggregation, value JSONPath, group-by JSONPaths). Per tenant, a
slug names one active meter; deleting a meter keeps its row (`deleted_at`, OpenMeter's soft delete)
and frees the slug. Rated usage already in ClickHouse is not touched by a delete.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, select, text
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities import priceable
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.ingest.translate import MeterDefinition, check_meter
from meterstream.schemas.event import InvalidEvent


class MeterRow(Base):
    __tablename__ = "meter_definitions"
    __table_args__ = (
        Index(
            "uq_meter_definitions_tenant_slug_active",
            "tenant",
            "slug",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_meter_definitions_tenant_type", "tenant", "event_type"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    slug: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    event_type: Mapped[str] = mapped_column(String(256))
    aggregation: Mapped[str] = mapped_column(String(16))
    value_property: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    group_by: Mapped[dict[str, str]] = mapped_column(JSON)
    event_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class Meter:
    """A stored meter definition."""

    id: str
    tenant: str
    slug: str
    event_type: str
    aggregation: str
    value_property: str | None
    group_by: dict[str, str]
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    description: str | None = None
    event_from: datetime | None = None
    metadata: dict[str, Any] | None = None
    deleted_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def definition(self) -> MeterDefinition:
        return MeterDefinition(
            slug=self.slug, event_type=self.event_type, aggregation=self.aggregation,
            value_property=self.value_property, group_by=dict(self.group_by), event_from=self.event_from,
        )  # fmt: skip


def _meter(row: MeterRow) -> Meter:
    return Meter(
        id=row.id, tenant=row.tenant, slug=row.slug, event_type=row.event_type, aggregation=row.aggregation,
        value_property=row.value_property, group_by=dict(row.group_by or {}), created_at=aware(row.created_at),
        updated_at=aware(row.updated_at), name=row.name, description=row.description,
        event_from=aware(row.event_from), metadata=row.meta, deleted_at=aware(row.deleted_at),
    )  # fmt: skip


_KEEP: Any = object()  # `describe`: leave the metadata as it is
FilePrices = Callable[[str], Mapping[str, Collection[str]]]  # tenant -> meter -> plans pricing it


class MeterRepository:
    """`file_prices`: the file catalog's priced meters of a tenant (priceable.file_catalog_prices), so that a
    meter the processor's fallback plans price is held to the same rule as one a stored plan prices."""

    def __init__(self, sessions: sessionmaker, file_prices: FilePrices | None = None) -> None:
        self._sessions = sessions
        self._file_prices = file_prices

    def create(
        self,
        tenant: str,
        definition: MeterDefinition,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Meter:
        """Store a new meter; `InvalidEvent` (field + reason) for a bad definition, `Conflict` for a taken slug.

        An aggregation other than SUM/COUNT is refused (`aggregation`) for a slug that an active plan version
        of the tenant, or the file catalog's plans for it, price as usage (entities/priceable.py)."""
        err = check_meter(definition)
        if err is not None:
            raise err
        if len(definition.event_type) > 256:
            raise InvalidEvent("eventType", "at most 256 characters")
        now = datetime.now(UTC)
        row = MeterRow(
            id=new_ulid(), tenant=tenant, slug=definition.slug, name=name, description=description,
            event_type=definition.event_type, aggregation=definition.aggregation,
            value_property=definition.value_property if definition.aggregation != "COUNT" else None,
            group_by=dict(definition.group_by), event_from=definition.event_from, meta=metadata,
            created_at=now, updated_at=now, deleted_at=None,
        )  # fmt: skip
        with self._sessions.begin() as s:
            active = (MeterRow.tenant == tenant, MeterRow.slug == definition.slug, MeterRow.deleted_at.is_(None))
            taken = s.scalar(select(MeterRow.id).where(*active))
            if taken is not None:
                raise Conflict("slug", f"a meter with slug {definition.slug!r} already exists")
            if not priceable.summed(definition.aggregation):
                priceable.check_meter(
                    definition.slug, definition.aggregation, self._priced_by(s, tenant, definition.slug)
                )
            s.add(row)
        return _meter(row)

    def _priced_by(self, s: Any, tenant: str, slug: str) -> list[str]:
        from meterstream.entities.plans import priced_by

        found = priced_by(s, tenant, slug)
        if self._file_prices is not None:
            found += list(self._file_prices(tenant).get(slug, ()))
        return found

    def _find(self, s: Any, tenant: str, id_or_slug: str) -> MeterRow | None:
        stmt = select(MeterRow).where(MeterRow.tenant == tenant, MeterRow.deleted_at.is_(None))
        row = s.scalar(stmt.where(MeterRow.id == id_or_slug))
        return row if row is not None else s.scalar(stmt.where(MeterRow.slug == id_or_slug))

    def get(self, tenant: str, id_or_slug: str) -> Meter:
        with self._sessions() as s:
            row = self._find(s, tenant, id_or_slug)
            if row is None:
                raise NotFound(f"meter {id_or_slug!r} not found")
            return _meter(row)

    def list(self, tenant: str, include_deleted: bool = False) -> list[Meter]:
        stmt = select(MeterRow).where(MeterRow.tenant == tenant).order_by(MeterRow.created_at, MeterRow.id)
        if not include_deleted:
            stmt = stmt.where(MeterRow.deleted_at.is_(None))
        with self._sessions() as s:
            return [_meter(r) for r in s.scalars(stmt)]

    def delete(self, tenant: str, id_or_slug: str) -> Meter:
        with self._sessions.begin() as s:
            row = self._find(s, tenant, id_or_slug)
            if row is None:
                raise NotFound(f"meter {id_or_slug!r} not found")
            row.deleted_at = row.updated_at = datetime.now(UTC)
            return _meter(row)

    def describe(
        self, tenant: str, id_or_slug: str, *, name: str | None, description: str | None,
        metadata: Any = _KEEP, group_by: Mapping[str, str] | None = None,
    ) -> Meter:  # fmt: skip
        """Set a meter's name and description, and (when given) its metadata and group-bys; what it meters and how
        it aggregates stay (they decide the usage already produced). New group-bys may be added (OpenMeter's
        `meters.update`: events from then on carry them); one the meter has keeps its path, since the usage already
        produced carries it (Invalid names it). NotFound for an unknown or deleted meter."""
        with self._sessions.begin() as s:
            row = self._find(s, tenant, id_or_slug)
            if row is None:
                raise NotFound(f"meter {id_or_slug!r} not found")
            if group_by is not None:
                old = dict(row.group_by or {})
                for key, path in old.items():
                    if group_by.get(key) != path:
                        raise Invalid(f"groupBy.{key}", f"a group-by of the meter cannot change or go ({path})")
                err = check_meter(replace(_meter(row).definition, group_by=dict(group_by)))
                if err is not None:
                    raise Invalid(err.field, err.reason)
                row.group_by = dict(group_by)
            if metadata is not _KEEP:
                row.meta = metadata
            row.name, row.description, row.updated_at = name, description, datetime.now(UTC)
            s.flush()
            return _meter(row)

    def definitions(self, tenant: str, event_types: set[str] | None = None) -> list[MeterDefinition]:
        """The tenant's active definitions (of these event types only, when given): what translate needs."""
        stmt = select(MeterRow).where(MeterRow.tenant == tenant, MeterRow.deleted_at.is_(None))
        if event_types is not None:
            if not event_types:
                return []
            stmt = stmt.where(MeterRow.event_type.in_(sorted(event_types)))
        with self._sessions() as s:
            return [_meter(r).definition for r in s.scalars(stmt)]
