"""Plans as immutable, numbered versions (model + repository).

`publish_plan` validates a `PlanVersionDoc` (entities/plan_rules.py) and stores it as version N+1 of
its code, unless its content equals the newest version's, which is returned unchanged (so applying a
catalog twice changes nothing). A stored version is never updated: a change is a new version; the only
later write is the deletion mark. A plan version's rating id is `code@version`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import outbox, priceable
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.db import Base
from meterstream.entities.meters import MeterRow
from meterstream.entities.plan_rules import validate_plan
from meterstream.schemas.entities import PlanVersionDoc


class PlanVersionRow(Base):
    __tablename__ = "plan_versions"
    __table_args__ = (UniqueConstraint("tenant", "code", "version", name="uq_plan_versions_tenant_code_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(256))
    currency: Mapped[str] = mapped_column(String(3))
    addon: Mapped[bool] = mapped_column(Boolean, default=False)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the content (version/published_at left out)
    doc: Mapped[str] = mapped_column(Text)  # the document as JSON (schemas.entities encoding)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


_canonical = msgspec.json.Encoder(decimal_format="string", order="sorted")
_encoder = msgspec.json.Encoder(decimal_format="string")


def content_hash(doc: PlanVersionDoc) -> str:
    """What makes two versions the same plan: everything but version, published_at and deleted.
    Decimals compare as written ("10" and "10.00" differ), keys in any order."""
    content = msgspec.structs.replace(doc, version=0, published_at=None, deleted=False)
    return hashlib.sha256(_canonical.encode(content)).hexdigest()


def plan_doc(row: PlanVersionRow) -> PlanVersionDoc:
    doc = msgspec.json.decode(row.doc, type=PlanVersionDoc)
    if row.deleted_at is not None and not doc.deleted:
        doc = msgspec.structs.replace(doc, deleted=True)
    return doc


def _newest(s: Session, tenant: str, code: str) -> PlanVersionRow | None:
    stmt = (
        select(PlanVersionRow)
        .where(PlanVersionRow.tenant == tenant, PlanVersionRow.code == code)
        .order_by(PlanVersionRow.version.desc())
        .limit(1)
    )
    return s.scalar(stmt)


def publish_plan(sf: sessionmaker, doc: PlanVersionDoc) -> tuple[PlanVersionDoc, bool]:
    """Publish a plan version: (new version N+1, True), or (the newest version, False) when its content is
    identical. `doc.version` and `doc.published_at` are ignored. Bad input raises `Invalid`, and so does a
    usage price on a meter whose active definition for the tenant is not a sum (`usage.<meter>`,
    entities/priceable.py)."""
    validate_plan(doc)
    digest = content_hash(doc)
    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        check_usage_meters(s, doc.tenant, doc.usage)
        newest = _newest(s, doc.tenant, doc.code)
        if newest is not None and newest.deleted_at is None and newest.content_hash == digest:
            return plan_doc(newest), False
        version = newest.version + 1 if newest is not None else 1
        stored = msgspec.structs.replace(doc, version=version, published_at=now, deleted=False)
        s.add(
            PlanVersionRow(
                tenant=doc.tenant, code=doc.code, version=version, name=doc.name, currency=doc.currency,
                addon=doc.addon, content_hash=digest, doc=_encoder.encode(stored).decode(), published_at=now,
            )
        )  # fmt: skip
        s.flush()
        outbox.append(s, [stored])
        return stored, True


def check_usage_meters(s: Session, tenant: str, usage: dict[str, Any], field: str = "usage") -> None:
    """The tenant's active meter definitions of the meters `usage` prices must be sums (entities/priceable.py):
    else `Invalid("<field>.<meter>", why)`."""
    if not usage:
        return
    stmt = select(MeterRow.slug, MeterRow.aggregation).where(
        MeterRow.tenant == tenant, MeterRow.slug.in_(sorted(usage)), MeterRow.deleted_at.is_(None)
    )
    aggregations = {slug: aggregation for slug, aggregation in s.execute(stmt)}
    priceable.check_usage(usage, aggregations.get, field)


def priced_by(s: Session, tenant: str, meter: str) -> list[str]:
    """The active plan versions of the tenant (`code@version`) that price `meter` as usage with money."""
    stmt = select(PlanVersionRow).where(PlanVersionRow.tenant == tenant, PlanVersionRow.deleted_at.is_(None))
    out = []
    for row in s.scalars(stmt.order_by(PlanVersionRow.code, PlanVersionRow.version)):
        doc = plan_doc(row)
        if meter in doc.usage and priceable.charges(doc.usage[meter]):
            out.append(doc.rating_id)
    return out


def find_plan_row(
    s: Session, tenant: str, code: str, version: int | None = None, *, include_deleted: bool = False
) -> PlanVersionRow | None:
    """The active version `version` of plan `code` (None: the newest active one); with `include_deleted`,
    deleted versions too (history: a phase that ended may name a plan deleted since)."""
    stmt = select(PlanVersionRow).where(PlanVersionRow.tenant == tenant, PlanVersionRow.code == code)
    if not include_deleted:
        stmt = stmt.where(PlanVersionRow.deleted_at.is_(None))
    if version is not None:
        return s.scalar(stmt.where(PlanVersionRow.version == version))
    return s.scalar(stmt.order_by(PlanVersionRow.version.desc()).limit(1))


def get_plan(sf: sessionmaker, tenant: str, code: str, version: int | None = None) -> PlanVersionDoc:
    """Version `version` of plan `code` (None: the newest). `NotFound` for an unknown or deleted plan."""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise Invalid("version", f"a version number >= 1 (got {version!r})")
    with sf() as s:
        row = find_plan_row(s, tenant, code, version)
        if row is None:
            which = f"version {version} of plan" if version is not None else "plan"
            raise NotFound(f"{which} {code!r} not found")
        return plan_doc(row)


def list_plans(sf: sessionmaker, tenant: str) -> list[PlanVersionDoc]:
    """The newest version of each active plan of the tenant, by code."""
    stmt = (
        select(PlanVersionRow)
        .where(PlanVersionRow.tenant == tenant, PlanVersionRow.deleted_at.is_(None))
        .order_by(PlanVersionRow.code, PlanVersionRow.version)
    )
    with sf() as s:
        newest: dict[str, PlanVersionRow] = {}
        for row in s.scalars(stmt):
            newest[row.code] = row
        return [plan_doc(r) for r in newest.values()]


def plan_versions(sf: sessionmaker, tenant: str, code: str) -> list[PlanVersionDoc]:
    """Every version of plan `code`, oldest first; `NotFound` when it has none (or was deleted)."""
    stmt = (
        select(PlanVersionRow)
        .where(PlanVersionRow.tenant == tenant, PlanVersionRow.code == code, PlanVersionRow.deleted_at.is_(None))
        .order_by(PlanVersionRow.version)
    )
    with sf() as s:
        rows = list(s.scalars(stmt))
        if not rows:
            raise NotFound(f"plan {code!r} not found")
        return [plan_doc(r) for r in rows]


def delete_plan(sf: sessionmaker, tenant: str, code: str) -> list[PlanVersionDoc]:
    """Delete every version of plan `code` (each goes to the outbox with deleted=True); returns them.

    `Conflict` naming `code` while a subscription phase (or add-on) that has not ended uses it."""
    from meterstream.entities.subscriptions import subscriptions_in_use

    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        rows = list(
            s.scalars(
                select(PlanVersionRow)
                .where(
                    PlanVersionRow.tenant == tenant, PlanVersionRow.code == code, PlanVersionRow.deleted_at.is_(None)
                )
                .order_by(PlanVersionRow.version)
            )
        )
        if not rows:
            raise NotFound(f"plan {code!r} not found")
        using = subscriptions_in_use(s, tenant, now, plan_code=code)
        if using:
            raise Conflict("code", f"plan {code!r} is used by subscriptions that have not ended: {', '.join(using)}")
        docs = []
        for row in rows:
            row.deleted_at = now
            docs.append(msgspec.structs.replace(plan_doc(row), deleted=True))
        s.flush()
        outbox.append(s, docs)
        return docs
