"""Features, entitlements and grants (OpenMeter's; docs/entitlements.md): models + repository.

- A **feature** (`key`, `name`, optionally the meter it is metered by, `meterSlug`, and group-by filters on it) is
  what an entitlement grants. Per tenant a key names one feature that is not archived; deleting archives it (new
  entitlements for it are refused, existing ones stay).
- An **entitlement** gives one customer one feature: `metered` (usage of the feature's meter burns the entitlement's
  grants, per usage period), `boolean` (access) or `static` (access with a JSON configuration). A customer has at
  most one active (not deleted) entitlement per feature key; deleting one keeps its row (`deleted_at`).
- A **reset** starts a new usage period of a metered entitlement at a minute (anchored there, or keeping the
  anchor), rolling its grants over as the automatic resets do.
- A **grant** is an amount of a metered entitlement's usage, effective from a minute, optionally expiring,
  recurring, and rolling over at resets within its limits; voiding one ends it at a minute (what it covered stays).

Amounts are exact decimals stored as text. The value of an entitlement is computed at read time from the grants and
the usage in ClickHouse (entitlements/burndown.py, api/compat/openmeter/entitlements.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.entitlements.burndown import Grant
from meterstream.entitlements.periods import Interval, Timeline, interval_iso, parse_interval

TYPES = ("metered", "boolean", "static")


class EntitlementExists(Conflict):
    """The customer already has an active entitlement for the feature: `existing` is its id."""

    def __init__(self, existing: str, feature_key: str) -> None:
        super().__init__("featureKey", f"entitlement with id {existing} already exists for feature {feature_key}")
        self.existing = existing


class FeatureRow(Base):
    __tablename__ = "features"
    __table_args__ = (
        Index("uq_features_tenant_key_active", "tenant", "key", unique=True,
              sqlite_where=text("archived_at IS NULL"), postgresql_where=text("archived_at IS NULL")),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    meter_slug: Mapped[str | None] = mapped_column(String(128), nullable=True)
    group_by_filters: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EntitlementRow(Base):
    __tablename__ = "entitlements"
    __table_args__ = (
        Index("uq_entitlements_customer_feature_active", "tenant", "customer_id", "feature_key", unique=True,
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(26))  # the customer's id (not its key)
    feature_id: Mapped[str] = mapped_column(String(26))
    feature_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[str | None] = mapped_column(Text, nullable=True)  # static: the JSON text as sent
    usage_interval: Mapped[str | None] = mapped_column(String(16), nullable=True)  # as parsed: "P1M", "PT6H"...
    usage_anchor: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    is_soft_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    preserve_overage: Mapped[bool] = mapped_column(Boolean, default=False)
    measure_usage_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    issue_amount: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issue_priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GrantRow(Base):
    __tablename__ = "entitlement_grants"
    __table_args__ = (Index("ix_entitlement_grants_entitlement", "tenant", "entitlement_id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    entitlement_id: Mapped[str] = mapped_column(String(26))
    amount: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expiration_duration: Mapped[str | None] = mapped_column(String(8), nullable=True)
    expiration_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    max_rollover: Mapped[str] = mapped_column(String(64))
    min_rollover: Mapped[str] = mapped_column(String(64))
    recurrence_interval: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recurrence_anchor: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ResetRow(Base):
    __tablename__ = "entitlement_resets"
    __table_args__ = (Index("ix_entitlement_resets_entitlement", "tenant", "entitlement_id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    entitlement_id: Mapped[str] = mapped_column(String(26))
    reset_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    anchor: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # of the periods from this reset on
    preserve_overage: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Reset:
    at: datetime
    anchor: datetime
    preserve_overage: bool


@dataclass(frozen=True)
class Feature:
    id: str
    key: str
    name: str
    meter_slug: str | None
    group_by_filters: dict[str, str] | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class EntitlementCreate:
    """An entitlement's terms, as created."""

    type: str
    feature_key: str | None = None
    feature_id: str | None = None
    config: str | None = None
    usage_interval: Interval | None = None
    usage_anchor: datetime | None = None
    is_soft_limit: bool = False
    preserve_overage: bool = False
    measure_usage_from: datetime | None = None
    issue_amount: Decimal | None = None
    issue_priority: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Entitlement(EntitlementCreate):
    """A stored entitlement: its terms, the customer's and the feature's ids, its times."""

    id: str
    customer_id: str
    feature_id: str
    feature_key: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    def active_at(self, t: datetime) -> bool:
        return self.created_at <= t and (self.deleted_at is None or t < self.deleted_at)

    def timeline(self, resets: Sequence[Reset] = ()) -> Timeline | None:
        """Its usage periods, from `measureUsageFrom` and each reset (None without a usage period)."""
        if self.usage_interval is None or self.usage_anchor is None:
            return None
        start = self.measure_usage_from or self.created_at
        segments = [(start, self.usage_anchor), *((r.at, r.anchor) for r in sorted(resets, key=lambda r: r.at))]
        return Timeline(self.usage_interval, tuple(segments))


@dataclass(frozen=True)
class StoredGrant:
    """A grant as stored (`grant` is what the burn-down reads)."""

    grant: Grant
    entitlement_id: str
    updated_at: datetime
    expiration: tuple[str, int] | None = None  # (duration, count)
    metadata: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None


@dataclass(frozen=True)
class GrantCreate:
    amount: Decimal
    effective_at: datetime
    priority: int = 0
    expiration: tuple[str, int] | None = None
    expires_at: datetime | None = None
    max_rollover: Decimal | None = None
    min_rollover: Decimal = Decimal(0)
    recurrence: tuple[Interval, datetime] | None = None
    metadata: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = field(default=None)


def _iso(interval: Interval | None) -> str | None:
    return None if interval is None else interval_iso(interval)


def _feature(r: FeatureRow) -> Feature:
    return Feature(r.id, r.key, r.name, r.meter_slug, r.group_by_filters, r.meta, aware(r.created_at),  # type: ignore[arg-type]
                   aware(r.updated_at), aware(r.archived_at))  # type: ignore[arg-type]  # fmt: skip


def _entitlement(r: EntitlementRow) -> Entitlement:
    return Entitlement(
        id=r.id, customer_id=r.customer_id, feature_id=r.feature_id, feature_key=r.feature_key, type=r.type,
        created_at=aware(r.created_at), updated_at=aware(r.updated_at), config=r.config,  # type: ignore[arg-type]
        usage_interval=parse_interval(r.usage_interval) if r.usage_interval else None,
        usage_anchor=aware(r.usage_anchor), is_soft_limit=bool(r.is_soft_limit),
        preserve_overage=bool(r.preserve_overage), measure_usage_from=aware(r.measure_usage_from),
        issue_amount=Decimal(r.issue_amount) if r.issue_amount is not None else None, issue_priority=r.issue_priority,
        metadata=r.meta, deleted_at=aware(r.deleted_at),
    )  # fmt: skip


def _grant(r: GrantRow) -> StoredGrant:
    recurrence = None
    if r.recurrence_interval:
        recurrence = (parse_interval(r.recurrence_interval), aware(r.recurrence_anchor))
    g = Grant(
        id=r.id, amount=Decimal(r.amount), effective_at=aware(r.effective_at), created_at=aware(r.created_at),  # type: ignore[arg-type]
        priority=r.priority, expires_at=aware(r.expires_at), voided_at=aware(r.voided_at),
        max_rollover=Decimal(r.max_rollover), min_rollover=Decimal(r.min_rollover), recurrence=recurrence,  # type: ignore[arg-type]
    )  # fmt: skip
    expiration = (r.expiration_duration, r.expiration_count) if r.expiration_duration else None
    return StoredGrant(g, r.entitlement_id, aware(r.updated_at), expiration, r.meta, r.annotations)  # type: ignore[arg-type]


class EntitlementRepository:
    """Features, entitlements and grants of every tenant; each call names its tenant."""

    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    # -- features
    def create_feature(
        self, tenant: str, key: str, name: str, meter_slug: str | None = None,
        group_by_filters: dict[str, str] | None = None, metadata: dict[str, Any] | None = None,
    ) -> Feature:  # fmt: skip
        now = datetime.now(UTC)
        with self._sessions.begin() as s:
            taken = s.scalar(select(FeatureRow.id).where(FeatureRow.tenant == tenant, FeatureRow.key == key,
                                                          FeatureRow.archived_at.is_(None)))  # fmt: skip
            if taken is not None:
                raise Conflict("key", f"feature {taken} with key {key} already exists")
            row = FeatureRow(
                id=new_ulid(), tenant=tenant, key=key, name=name, meter_slug=meter_slug,
                group_by_filters=group_by_filters, meta=metadata, created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _feature(row)

    def _feature_row(self, s: Session, tenant: str, id_or_key: str, archived: bool = False) -> FeatureRow:
        base = select(FeatureRow).where(FeatureRow.tenant == tenant)
        if not archived:
            base = base.where(FeatureRow.archived_at.is_(None))
        row = s.scalar(base.where(FeatureRow.id == id_or_key))
        row = row or s.scalar(base.where(FeatureRow.key == id_or_key).order_by(FeatureRow.created_at.desc()))
        if row is None:
            raise NotFound(f"feature {id_or_key!r} not found")
        return row

    def feature(self, tenant: str, id_or_key: str, archived: bool = False) -> Feature:
        with self._sessions() as s:
            return _feature(self._feature_row(s, tenant, id_or_key, archived))

    def features(self, tenant: str, include_archived: bool = False, meter_slugs: tuple[str, ...] = ()) -> list[Feature]:
        stmt = select(FeatureRow).where(FeatureRow.tenant == tenant)
        if not include_archived:
            stmt = stmt.where(FeatureRow.archived_at.is_(None))
        if meter_slugs:
            stmt = stmt.where(FeatureRow.meter_slug.in_(meter_slugs))
        with self._sessions() as s:
            return [_feature(r) for r in s.scalars(stmt.order_by(FeatureRow.key, FeatureRow.created_at))]

    def archive_feature(self, tenant: str, id_or_key: str) -> None:
        with self._sessions.begin() as s:
            row = self._feature_row(s, tenant, id_or_key)
            row.archived_at = row.updated_at = datetime.now(UTC)

    # -- entitlements
    def create_entitlement(
        self, tenant: str, customer_id: str, item: EntitlementCreate, feature: Feature, now: datetime,
        grants: list[GrantCreate] = (),  # type: ignore[assignment]
        replacing: str | None = None,
    ) -> Entitlement:  # fmt: skip
        """Store an entitlement (and the grants that come with it) in one transaction; EntitlementExists when the
        customer already has an active entitlement for the feature's key. `replacing` (an override: OpenMeter's)
        names the customer's active entitlement, by id or feature key, that this one replaces: it is deleted in the
        same transaction; NotFound when there is none, Invalid when it is of another feature."""
        if item.type not in TYPES:
            raise Invalid("type", f"must be one of {', '.join(TYPES)}")
        with self._sessions.begin() as s:
            if replacing is not None:
                old = self._entitlement_row(s, tenant, customer_id, replacing)
                if old.deleted_at is not None:
                    raise NotFound(f"entitlement {replacing!r} not found for customer {customer_id}")
                if old.feature_key != feature.key:
                    raise Invalid("featureKey", f"an override keeps the feature: {old.feature_key}, not {feature.key}")
                old.deleted_at = old.updated_at = now
                s.flush()
            taken = s.scalar(select(EntitlementRow.id).where(
                EntitlementRow.tenant == tenant, EntitlementRow.customer_id == customer_id,
                EntitlementRow.feature_key == feature.key, EntitlementRow.deleted_at.is_(None)))  # fmt: skip
            if taken is not None:
                raise EntitlementExists(taken, feature.key)
            row = EntitlementRow(
                id=new_ulid(), tenant=tenant, customer_id=customer_id, feature_id=feature.id, feature_key=feature.key,
                type=item.type, config=item.config, usage_interval=_iso(item.usage_interval),
                usage_anchor=item.usage_anchor, is_soft_limit=item.is_soft_limit,
                preserve_overage=item.preserve_overage, measure_usage_from=item.measure_usage_from,
                issue_amount=None if item.issue_amount is None else format(item.issue_amount, "f"),
                issue_priority=item.issue_priority, meta=item.metadata, created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(row)
            s.flush()
            for g in grants:
                self._add_grant(s, tenant, row.id, g, now)
            return _entitlement(row)

    def _entitlement_row(self, s: Session, tenant: str, customer_id: str, id_or_feature_key: str) -> EntitlementRow:
        base = select(EntitlementRow).where(EntitlementRow.tenant == tenant, EntitlementRow.customer_id == customer_id)
        row = s.scalar(base.where(EntitlementRow.id == id_or_feature_key))
        row = row or s.scalar(base.where(EntitlementRow.feature_key == id_or_feature_key,
                                         EntitlementRow.deleted_at.is_(None)))  # fmt: skip
        if row is None:
            raise NotFound(f"entitlement {id_or_feature_key!r} not found for customer {customer_id}")
        return row

    def entitlement(self, tenant: str, customer_id: str, id_or_feature_key: str) -> Entitlement:
        with self._sessions() as s:
            return _entitlement(self._entitlement_row(s, tenant, customer_id, id_or_feature_key))

    def entitlement_by_id(self, tenant: str, entitlement_id: str) -> Entitlement:
        with self._sessions() as s:
            row = s.scalar(select(EntitlementRow).where(EntitlementRow.tenant == tenant,
                                                        EntitlementRow.id == entitlement_id))  # fmt: skip
            if row is None:
                raise NotFound(f"entitlement {entitlement_id!r} not found")
            return _entitlement(row)

    def entitlements(
        self, tenant: str, customer_ids: tuple[str, ...] = (), feature_keys: tuple[str, ...] = (),
        types: tuple[str, ...] = (), include_deleted: bool = False,
    ) -> list[Entitlement]:  # fmt: skip
        stmt = select(EntitlementRow).where(EntitlementRow.tenant == tenant)
        if customer_ids:
            stmt = stmt.where(EntitlementRow.customer_id.in_(customer_ids))
        if feature_keys:
            stmt = stmt.where(EntitlementRow.feature_key.in_(feature_keys))
        if types:
            stmt = stmt.where(EntitlementRow.type.in_(types))
        if not include_deleted:
            stmt = stmt.where(EntitlementRow.deleted_at.is_(None))
        with self._sessions() as s:
            return [_entitlement(r) for r in s.scalars(stmt.order_by(EntitlementRow.created_at, EntitlementRow.id))]

    def delete_entitlement(self, tenant: str, customer_id: str, id_or_feature_key: str) -> None:
        with self._sessions.begin() as s:
            row = self._entitlement_row(s, tenant, customer_id, id_or_feature_key)
            if row.deleted_at is not None:
                raise NotFound(f"entitlement {id_or_feature_key!r} not found for customer {customer_id}")
            row.deleted_at = row.updated_at = datetime.now(UTC)

    # -- grants
    def _add_grant(self, s: Session, tenant: str, entitlement_id: str, g: GrantCreate, now: datetime) -> GrantRow:
        recurrence = g.recurrence
        row = GrantRow(
            id=new_ulid(), tenant=tenant, entitlement_id=entitlement_id, amount=format(g.amount, "f"),
            priority=g.priority, effective_at=g.effective_at,
            expiration_duration=g.expiration[0] if g.expiration else None,
            expiration_count=g.expiration[1] if g.expiration else None, expires_at=g.expires_at,
            max_rollover=format(g.amount if g.max_rollover is None else g.max_rollover, "f"),
            min_rollover=format(g.min_rollover, "f"),
            recurrence_interval=_iso(recurrence[0]) if recurrence else None,
            recurrence_anchor=recurrence[1] if recurrence else None, meta=g.metadata, annotations=g.annotations,
            created_at=now, updated_at=now,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row

    def create_grant(self, tenant: str, entitlement_id: str, g: GrantCreate, now: datetime) -> StoredGrant:
        with self._sessions.begin() as s:
            return _grant(self._add_grant(s, tenant, entitlement_id, g, now))

    def grants(self, tenant: str, entitlement_ids: tuple[str, ...] | None = None) -> list[StoredGrant]:
        stmt = select(GrantRow).where(GrantRow.tenant == tenant)
        if entitlement_ids is not None:
            stmt = stmt.where(GrantRow.entitlement_id.in_(entitlement_ids))
        with self._sessions() as s:
            return [_grant(r) for r in s.scalars(stmt.order_by(GrantRow.created_at, GrantRow.id))]

    def resets(self, tenant: str, entitlement_id: str) -> list[Reset]:
        stmt = select(ResetRow).where(ResetRow.tenant == tenant, ResetRow.entitlement_id == entitlement_id)
        with self._sessions() as s:
            return [Reset(aware(r.reset_at), aware(r.anchor), bool(r.preserve_overage))  # type: ignore[arg-type]
                    for r in s.scalars(stmt.order_by(ResetRow.reset_at))]  # fmt: skip

    def add_reset(self, tenant: str, entitlement_id: str, reset: Reset) -> None:
        """Record a usage reset; Invalid when another reset of the entitlement is at or after its minute."""
        with self._sessions.begin() as s:
            last = s.scalar(select(ResetRow.reset_at).where(ResetRow.tenant == tenant,
                                                            ResetRow.entitlement_id == entitlement_id)
                            .order_by(ResetRow.reset_at.desc()).limit(1))  # fmt: skip
            if last is not None and aware(last) >= reset.at:  # type: ignore[operator]
                raise Invalid("effectiveAt", "must be after the entitlement's last reset")
            s.add(ResetRow(id=new_ulid(), tenant=tenant, entitlement_id=entitlement_id, reset_at=reset.at,
                           anchor=reset.anchor, preserve_overage=reset.preserve_overage,
                           created_at=datetime.now(UTC)))  # fmt: skip

    def void_grant(self, tenant: str, grant_id: str, at: datetime) -> StoredGrant:
        with self._sessions.begin() as s:
            row = s.scalar(select(GrantRow).where(GrantRow.tenant == tenant, GrantRow.id == grant_id))
            if row is None:
                raise NotFound(f"grant {grant_id!r} not found")
            if row.voided_at is not None:
                raise Invalid("grantId", f"grant {grant_id} is already voided")
            row.voided_at = at
            row.updated_at = datetime.now(UTC)
            s.flush()
            return _grant(row)


__all__ = [
    "TYPES",
    "Entitlement",
    "EntitlementCreate",
    "EntitlementRepository",
    "Feature",
    "GrantCreate",
    "StoredGrant",
]  # fmt: skip
