"""Taxes a tenant defines (Lago's `taxes`) and the customers' own tax codes (Lago's customer `tax_codes`).

A tax is a code, a name and a rate in percent (Lago's: 20 = 20 %); `applied_to_organization` makes it one of
the tenant's default taxes. The close taxes a customer with explicit taxes instead of the automatic VAT and
sales-tax rules (billing/taxes.py, docs/taxes.md "Explicit taxes"): the customer's own tax codes when it has
some, else the tenant's default taxes when there are any, else the automatic rules — Lago's precedence
(customer taxes over organization taxes). Several taxes add up (Lago sums their rates per fee).

`tax_overrides(session)` loads every tenant's explicit taxes for a close in two queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, Integer, String, UniqueConstraint, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.billing.taxes import ExplicitTax, ExplicitTaxes
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.rating.money import EXACT, to_decimal

__all__ = [
    "CustomerTaxRow",
    "StoredTax",
    "TaxRow",
    "TaxSpec",
    "check_tax_codes",
    "create_tax",
    "customer_tax_codes",
    "delete_tax",
    "get_tax",
    "list_taxes",
    "set_customer_tax_codes",
    "tax_overrides",
    "update_tax",
]


class TaxRow(Base):
    __tablename__ = "taxes"
    __table_args__ = (UniqueConstraint("tenant", "code", name="uq_taxes_tenant_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tax_id: Mapped[str] = mapped_column(String(26), unique=True)
    tenant: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    rate: Mapped[str] = mapped_column(String(40))  # percent, decimal text: "7.25" is 7.25 %
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    applied_to_organization: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerTaxRow(Base):
    """A customer's own tax code (the customer by its external id), in the order given."""

    __tablename__ = "customer_taxes"
    __table_args__ = (UniqueConstraint("tenant", "customer", "code", name="uq_customer_taxes_tenant_customer_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))
    code: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class TaxSpec:
    tenant: str
    code: str
    name: str
    rate: Decimal  # percent: 20 = 20 %
    description: str | None = None
    applied_to_organization: bool = False


@dataclass(frozen=True)
class StoredTax:
    id: str
    spec: TaxSpec
    created_at: datetime
    updated_at: datetime

    @property
    def explicit(self) -> ExplicitTax:
        """The tax as the close applies it: its rate as a fraction (20 % -> 0.2)."""
        return _explicit(self.spec.code, self.spec.name, self.spec.rate)


def _explicit(code: str, name: str, percent: Decimal) -> ExplicitTax:
    return ExplicitTax(code, name, EXACT.divide(percent, Decimal(100)))


def check_tax(spec: TaxSpec) -> TaxSpec:
    if not isinstance(spec.code, str) or not (0 < len(spec.code) <= 128) or spec.code != spec.code.strip():
        raise Invalid("code", "1-128 characters, no leading or trailing spaces")
    if not isinstance(spec.name, str) or not (0 < len(spec.name.strip()) <= 256):
        raise Invalid("name", "1-256 characters")
    try:
        rate = to_decimal(spec.rate)
    except (TypeError, ValueError) as exc:
        raise Invalid("rate", f"a decimal percentage such as 20 or 7.25 ({exc})") from None
    if len(str(rate)) > 40:
        raise Invalid("rate", "at most 40 characters of decimal text")
    if not 0 <= rate <= 100:
        raise Invalid("rate", f"a percentage between 0 and 100 (20 is 20 %), got {rate}")
    if spec.description is not None and len(spec.description) > 1024:
        raise Invalid("description", "at most 1024 characters")
    return TaxSpec(spec.tenant, spec.code, spec.name, rate, spec.description, bool(spec.applied_to_organization))


def _stored(row: TaxRow) -> StoredTax:
    spec = TaxSpec(row.tenant, row.code, row.name, Decimal(row.rate), row.description,
                   bool(row.applied_to_organization))  # fmt: skip
    return StoredTax(row.tax_id, spec, aware(row.created_at), aware(row.updated_at))  # type: ignore[arg-type]


def _find(s: Session, tenant: str, code: str, *, lock: bool = False) -> TaxRow | None:
    stmt = select(TaxRow).where(TaxRow.tenant == tenant, TaxRow.code == code)
    return s.scalar(stmt.with_for_update() if lock else stmt)


def create_tax(sf: sessionmaker, spec: TaxSpec) -> StoredTax:
    spec = check_tax(spec)
    now = datetime.now(UTC)
    with sf.begin() as s:
        if _find(s, spec.tenant, spec.code) is not None:
            raise Conflict("code", f"a tax with code {spec.code!r} already exists")
        row = TaxRow(tax_id=new_ulid(), tenant=spec.tenant, code=spec.code, name=spec.name, rate=str(spec.rate),
                     description=spec.description, applied_to_organization=spec.applied_to_organization,
                     created_at=now, updated_at=now)  # fmt: skip
        s.add(row)
        s.flush()
        return _stored(row)


def update_tax(sf: sessionmaker, tenant: str, code: str, spec: TaxSpec) -> StoredTax:
    """Replace a tax (its code may change: the customers holding it follow). Invoices already issued keep
    the rate they were issued with; the next close uses the new one."""
    spec = check_tax(spec)
    with sf.begin() as s:
        row = _find(s, tenant, code, lock=True)
        if row is None:
            raise NotFound(f"tax {code!r} not found")
        if spec.code != code:
            if _find(s, tenant, spec.code) is not None:
                raise Conflict("code", f"a tax with code {spec.code!r} already exists")
            for held in s.scalars(select(CustomerTaxRow).where(CustomerTaxRow.tenant == tenant,
                                                               CustomerTaxRow.code == code)):  # fmt: skip
                held.code = spec.code
        row.code, row.name, row.rate, row.description = spec.code, spec.name, str(spec.rate), spec.description
        row.applied_to_organization, row.updated_at = spec.applied_to_organization, datetime.now(UTC)
        s.flush()
        return _stored(row)


def get_tax(sf: sessionmaker, tenant: str, code: str) -> StoredTax:
    with sf() as s:
        row = _find(s, tenant, code)
        if row is None:
            raise NotFound(f"tax {code!r} not found")
        return _stored(row)


def list_taxes(sf: sessionmaker, tenant: str, *, page: int = 1, per_page: int = 100) -> tuple[list[StoredTax], int]:
    with sf() as s:
        total = s.scalar(select(func.count()).select_from(TaxRow).where(TaxRow.tenant == tenant)) or 0
        rows = s.scalars(select(TaxRow).where(TaxRow.tenant == tenant).order_by(TaxRow.created_at, TaxRow.id)
                         .offset((page - 1) * per_page).limit(per_page))  # fmt: skip
        return [_stored(r) for r in rows], total


def delete_tax(sf: sessionmaker, tenant: str, code: str) -> StoredTax:
    """Delete a tax; the customers holding it lose it (as in Lago). Issued invoices keep their taxes."""
    with sf.begin() as s:
        row = _find(s, tenant, code, lock=True)
        if row is None:
            raise NotFound(f"tax {code!r} not found")
        stored = _stored(row)
        s.execute(delete(CustomerTaxRow).where(CustomerTaxRow.tenant == tenant, CustomerTaxRow.code == code))
        s.delete(row)
        return stored


def check_tax_codes(sf: sessionmaker, tenant: str, codes: Sequence[str]) -> None:
    """`Invalid` naming `tax_codes` when one of `codes` is not a tax of the tenant."""
    with sf() as s:
        known = set(s.scalars(select(TaxRow.code).where(TaxRow.tenant == tenant, TaxRow.code.in_(list(codes)))))
    missing = [c for c in codes if c not in known]
    if missing:
        raise Invalid("tax_codes", f"unknown tax code {missing[0]!r} (create it first: taxes)")


def set_customer_tax_codes(sf: sessionmaker, tenant: str, customer: str, codes: Sequence[str]) -> list[StoredTax]:
    """Make `codes` exactly the customer's own taxes (an empty list: none, the defaults apply again).
    `Invalid` naming `tax_codes` for an unknown code; nothing is written then."""
    wanted = list(dict.fromkeys(codes))
    with sf.begin() as s:
        found = {r.code: r for r in s.scalars(select(TaxRow).where(TaxRow.tenant == tenant, TaxRow.code.in_(wanted)))}
        missing = [c for c in wanted if c not in found]
        if missing:
            raise Invalid("tax_codes", f"unknown tax code {missing[0]!r} (create it first: taxes)")
        s.execute(delete(CustomerTaxRow).where(CustomerTaxRow.tenant == tenant, CustomerTaxRow.customer == customer))
        for i, code in enumerate(wanted):
            s.add(CustomerTaxRow(tenant=tenant, customer=customer, code=code, position=i))
        s.flush()
        return [_stored(found[c]) for c in wanted]


def customer_tax_codes(sf: sessionmaker, tenant: str, customers: Iterable[str]) -> dict[str, list[StoredTax]]:
    """customer -> its own taxes (customers without any are left out)."""
    wanted = sorted(set(customers))
    if not wanted:
        return {}
    stmt = (
        select(CustomerTaxRow.customer, TaxRow)
        .join(TaxRow, (TaxRow.tenant == CustomerTaxRow.tenant) & (TaxRow.code == CustomerTaxRow.code))
        .where(CustomerTaxRow.tenant == tenant, CustomerTaxRow.customer.in_(wanted))
        .order_by(CustomerTaxRow.customer, CustomerTaxRow.position)
    )
    out: dict[str, list[StoredTax]] = defaultdict(list)
    with sf() as s:
        for customer, row in s.execute(stmt):
            out[customer].append(_stored(row))
    return dict(out)


def tax_overrides(session: Session) -> ExplicitTaxes:
    """Every customer's own taxes and every tenant's default taxes, for a close (two queries)."""
    customers: dict[tuple[str, str], list[ExplicitTax]] = defaultdict(list)
    stmt = (
        select(CustomerTaxRow.tenant, CustomerTaxRow.customer, TaxRow.code, TaxRow.name, TaxRow.rate)
        .join(TaxRow, (TaxRow.tenant == CustomerTaxRow.tenant) & (TaxRow.code == CustomerTaxRow.code))
        .order_by(CustomerTaxRow.tenant, CustomerTaxRow.customer, CustomerTaxRow.position)
    )
    for tenant, customer, code, name, rate in session.execute(stmt):
        customers[(tenant, customer)].append(_explicit(code, name, Decimal(rate)))
    organizations: dict[str, list[ExplicitTax]] = defaultdict(list)
    stmt2 = select(TaxRow.tenant, TaxRow.code, TaxRow.name, TaxRow.rate).where(
        TaxRow.applied_to_organization.is_(True)).order_by(TaxRow.tenant, TaxRow.created_at, TaxRow.id)  # fmt: skip
    for tenant, code, name, rate in session.execute(stmt2):
        organizations[tenant].append(_explicit(code, name, Decimal(rate)))
    return ExplicitTaxes(
        customers={k: tuple(v) for k, v in customers.items()},
        organizations={k: tuple(v) for k, v in organizations.items()},
    )
