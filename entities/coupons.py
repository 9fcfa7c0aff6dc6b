"""Coupons and the coupons applied to customers, in the entity store (docs/coupons.md).

A coupon (`CouponRow`) is a tenant's discount definition: code, name, percentage (`percent_off`, 10 = 10 %) or
fixed (`amount_off` + `currency`), duration `once` / `repeating` (`duration_periods` billing periods) /
`forever`, the line codes it is limited to (`applies_to`; none: the whole invoice), an optional expiry
(`expires_at`: it cannot be applied to a customer after it; a customer who got it before keeps it, as Lago's
expiration is "the date after which the coupon can no longer be redeemed"), whether
a customer may get it again after it ended (`reusable`), and `terminated_at` (Lago's `DELETE /coupons/{code}`:
it can no longer be applied; customers who have it keep it, as in Lago). An applied coupon
(`AppliedCouponRow`) is a coupon given to one customer (its external id) at `applied_at`, `active` until it
is terminated (removed by hand) or used up, with optional overrides of the amount, percentage and duration,
as Lago's `applied_coupons` allows.

The usage state the close needs (`billing.discounts.CouponUse`: `periods_used`, `amount_remaining`) is never
stored: it is DERIVED from the customer's issued invoices, so a re-run, a crash between two customers or a
close repeated after a failure can never count a period or an amount twice. The rule (`derive_use`):
- the invoices that count are the customer's invoices that were issued (finalized, paid, partially paid,
  overdue: not drafts, not voided) for periods BEFORE the period being closed, and finalized at or after the
  coupon was applied to the customer;
- each such invoice whose document's `discounts` names the coupon's code counts as one period used (the close
  writes an entry for every active coupon, also when it took 0.00: a billing period counts as used whenever
  the coupon was active);
- a fixed coupon used once (its rest carries over) has `amount_remaining` = its amount - the sum of those
  entries' amounts.
A voided invoice gives its periods and amounts back. One customer holds at most one ACTIVE application of a
coupon code at a time (a second one is refused), so an invoice's entry names exactly one application.

`coupon_uses(session, tenant_customers, period)` loads the uses of every customer of a close in two queries
(active applied coupons with their coupons; the issued invoices of the customers that hold one), whatever
the number of customers.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, exists, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.billing.allocation import from_units, to_units
from meterstream.billing.discounts import Coupon, CouponUse, is_active
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.customers import find_customer_row
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import ISSUED
from meterstream.entities.invoices import InvoiceRow
from meterstream.rating.money import EXACT, minor_units

__all__ = [
    "ACTIVE",
    "TERMINATED",
    "AppliedCoupon",
    "AppliedCouponRow",
    "CouponOverrides",
    "CouponRow",
    "CouponSpec",
    "StoredCoupon",
    "apply_coupon",
    "coupon_uses",
    "create_coupon",
    "derive_use",
    "get_coupon",
    "list_applied",
    "list_coupons",
    "terminate_applied",
    "terminate_coupon",
    "update_coupon",
]

MAX_PERIODS = 1200  # a repeating coupon lasts at most 100 years of months
ACTIVE = "active"
TERMINATED = "terminated"
Kind = Literal["percentage", "fixed"]
Duration = Literal["once", "repeating", "forever"]


class CouponRow(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        Index(
            "uq_coupons_tenant_code_live",
            "tenant",
            "code",
            unique=True,
            sqlite_where=text("terminated_at IS NULL"),
            postgresql_where=text("terminated_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coupon_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    tenant: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    percent_off: Mapped[str | None] = mapped_column(String(40), nullable=True)  # decimal text, 10 = 10 %
    amount_off: Mapped[str | None] = mapped_column(String(40), nullable=True)  # decimal text, in `currency`
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    duration: Mapped[str] = mapped_column(String(16))
    duration_periods: Mapped[int | None] = mapped_column(Integer, nullable=True)
    applies_to: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # line codes; NULL: whole invoice
    reusable: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AppliedCouponRow(Base):
    __tablename__ = "applied_coupons"
    __table_args__ = (Index("ix_applied_coupons_tenant_customer", "tenant", "customer", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    applied_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))  # the customer's external id
    coupon_ref: Mapped[int] = mapped_column(Integer, ForeignKey("coupons.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # overrides of the coupon's terms for this customer (NULL: the coupon's)
    percent_off: Mapped[str | None] = mapped_column(String(40), nullable=True)
    amount_off: Mapped[str | None] = mapped_column(String(40), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    duration: Mapped[str | None] = mapped_column(String(16), nullable=True)
    duration_periods: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --- the definitions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponSpec:
    """A coupon as written by the APIs (validated by `check_spec`)."""

    tenant: str
    code: str
    name: str
    kind: Kind
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    currency: str | None = None
    duration: Duration = "once"
    duration_periods: int | None = None
    applies_to: tuple[str, ...] | None = None
    reusable: bool = True
    expires_at: datetime | None = None
    description: str | None = None


@dataclass(frozen=True)
class StoredCoupon:
    id: str
    spec: CouponSpec
    created_at: datetime
    updated_at: datetime
    terminated_at: datetime | None

    @property
    def status(self) -> str:
        return TERMINATED if self.terminated_at is not None else ACTIVE


def _coupon_of(spec: CouponSpec, *, code: str | None = None, description: str | None = None) -> Coupon:
    """The pure engine's coupon (billing.discounts) of a definition; ValueError naming the field."""
    return Coupon(
        code=code or spec.code, kind=spec.kind, percent_off=spec.percent_off, amount_off=spec.amount_off,
        currency=spec.currency, duration=spec.duration, duration_periods=spec.duration_periods,
        applies_to=frozenset(spec.applies_to) if spec.applies_to is not None else None,
        description=description if description is not None else spec.name,
    )  # fmt: skip


def check_spec(spec: CouponSpec) -> CouponSpec:
    """`spec` normalised (currency upper case, decimals exact), or `Invalid` naming the field."""
    if not isinstance(spec.code, str) or not (0 < len(spec.code) <= 128) or spec.code != spec.code.strip():
        raise Invalid("code", "1-128 characters, no leading or trailing spaces")
    if not isinstance(spec.name, str) or not (0 < len(spec.name.strip()) <= 256):
        raise Invalid("name", "1-256 characters")
    if spec.description is not None and len(spec.description) > 1024:
        raise Invalid("description", "at most 1024 characters")
    if spec.expires_at is not None and spec.expires_at.tzinfo is None:
        raise Invalid("expires_at", "a time with its UTC offset (2026-12-31T23:59:59Z)")
    if spec.applies_to is not None:
        if not spec.applies_to:
            raise Invalid("applies_to", "name at least one line code (meter or charge code), or leave it out")
        for i, c in enumerate(spec.applies_to):
            if not isinstance(c, str) or not (0 < len(c) <= 128):
                raise Invalid(f"applies_to[{i}]", "a line code of 1-128 characters")
    if spec.duration_periods is not None and not 1 <= spec.duration_periods <= MAX_PERIODS:
        raise Invalid("duration_periods", f"from 1 to {MAX_PERIODS} billing periods (got {spec.duration_periods})")
    for name in ("percent_off", "amount_off"):
        value = getattr(spec, name)
        if value is not None and isinstance(value, Decimal) and len(str(value)) > 40:
            raise Invalid(name, "at most 40 characters of decimal text")
    currency = spec.currency.upper() if isinstance(spec.currency, str) else spec.currency
    if currency is not None:
        try:
            minor_units(currency)
        except ValueError as exc:
            raise Invalid("currency", str(exc)) from None
    spec = replace(spec, currency=currency, applies_to=tuple(dict.fromkeys(spec.applies_to))
                   if spec.applies_to is not None else None)  # fmt: skip
    try:
        _coupon_of(spec)
    except (ValueError, TypeError) as exc:
        field, _, reason = str(exc).partition(": ")
        raise Invalid(field if reason else "coupon", reason or str(exc)) from None
    return spec


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _text(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def _spec(row: CouponRow) -> CouponSpec:
    return CouponSpec(
        tenant=row.tenant, code=row.code, name=row.name, kind=row.kind, percent_off=_dec(row.percent_off),  # type: ignore[arg-type]
        amount_off=_dec(row.amount_off), currency=row.currency, duration=row.duration,  # type: ignore[arg-type]
        duration_periods=row.duration_periods, applies_to=tuple(row.applies_to) if row.applies_to else None,
        reusable=bool(row.reusable), expires_at=aware(row.expires_at), description=row.description,
    )  # fmt: skip


def _stored(row: CouponRow) -> StoredCoupon:
    return StoredCoupon(row.coupon_id, _spec(row), aware(row.created_at), aware(row.updated_at),  # type: ignore[arg-type]
                        aware(row.terminated_at))  # fmt: skip


def _write(row: CouponRow, spec: CouponSpec, now: datetime) -> None:
    row.code, row.name, row.description, row.kind = spec.code, spec.name, spec.description, spec.kind
    row.percent_off, row.amount_off, row.currency = _text(spec.percent_off), _text(spec.amount_off), spec.currency
    row.duration, row.duration_periods = spec.duration, spec.duration_periods
    row.applies_to = list(spec.applies_to) if spec.applies_to is not None else None
    row.reusable, row.expires_at, row.updated_at = spec.reusable, spec.expires_at, now


def _live(s: Session, tenant: str, code: str, *, lock: bool = False) -> CouponRow | None:
    stmt = select(CouponRow).where(CouponRow.tenant == tenant, CouponRow.code == code,
                                   CouponRow.terminated_at.is_(None))  # fmt: skip
    return s.scalar(stmt.with_for_update() if lock else stmt)


def create_coupon(sf: sessionmaker, spec: CouponSpec) -> StoredCoupon:
    """Store a new coupon; `Invalid` naming the field, `Conflict` naming `code` when a live one has it."""
    spec = check_spec(spec)
    now = datetime.now(UTC)
    with sf.begin() as s:
        if _live(s, spec.tenant, spec.code) is not None:
            raise Conflict("code", f"a coupon with code {spec.code!r} already exists")
        row = CouponRow(coupon_id=new_ulid(), tenant=spec.tenant, created_at=now, terminated_at=None)
        _write(row, spec, now)
        s.add(row)
        s.flush()
        return _stored(row)


_TERMS = ("kind", "percent_off", "amount_off", "currency", "duration", "duration_periods", "applies_to")


def update_coupon(sf: sessionmaker, tenant: str, code: str, spec: CouponSpec) -> StoredCoupon:
    """Replace a live coupon's definition (its code may change to a free one). Once it was applied to a
    customer, its terms (kind, amounts, duration, applies_to) are fixed: `Conflict` naming the field; name,
    description, expiry and reusable may change. `NotFound` for an unknown or terminated coupon."""
    spec = check_spec(spec)
    with sf.begin() as s:
        row = _live(s, tenant, code, lock=True)
        if row is None:
            raise NotFound(f"coupon {code!r} not found")
        if spec.code != row.code and _live(s, tenant, spec.code) is not None:
            raise Conflict("code", f"a coupon with code {spec.code!r} already exists")
        current = _spec(row)
        used = s.scalar(select(func.count()).select_from(AppliedCouponRow).where(AppliedCouponRow.coupon_ref == row.id))
        if used:
            for name in (*_TERMS, "code"):
                if getattr(spec, name) != getattr(current, name):
                    raise Conflict(name, f"coupon {code!r} was applied to customers: its {name} cannot change "
                                         "(create a new coupon)")  # fmt: skip
        _write(row, spec, datetime.now(UTC))
        s.flush()
        return _stored(row)


def get_coupon(sf: sessionmaker, tenant: str, code: str) -> StoredCoupon:
    with sf() as s:
        row = _live(s, tenant, code)
        if row is None:
            raise NotFound(f"coupon {code!r} not found")
        return _stored(row)


def list_coupons(sf: sessionmaker, tenant: str, *, page: int = 1, per_page: int = 100,
                 include_terminated: bool = False) -> tuple[list[StoredCoupon], int]:  # fmt: skip
    """One page (1-based) of the tenant's coupons, oldest first, and the total."""
    where: list[Any] = [CouponRow.tenant == tenant]
    if not include_terminated:
        where.append(CouponRow.terminated_at.is_(None))
    with sf() as s:
        total = s.scalar(select(func.count()).select_from(CouponRow).where(*where)) or 0
        rows = s.scalars(select(CouponRow).where(*where).order_by(CouponRow.created_at, CouponRow.id)
                         .offset((page - 1) * per_page).limit(per_page))  # fmt: skip
        return [_stored(r) for r in rows], total


def terminate_coupon(sf: sessionmaker, tenant: str, code: str) -> StoredCoupon:
    """Terminate a coupon: it can no longer be applied (its code is free again); customers who have it keep it."""
    with sf.begin() as s:
        row = _live(s, tenant, code, lock=True)
        if row is None:
            raise NotFound(f"coupon {code!r} not found")
        now = datetime.now(UTC)
        row.terminated_at, row.updated_at = now, now
        s.flush()
        return _stored(row)


# --- applied coupons ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponOverrides:
    """What an application may change of the coupon's terms for one customer (None: the coupon's)."""

    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    currency: str | None = None
    duration: Duration | None = None
    duration_periods: int | None = None


@dataclass(frozen=True)
class AppliedCoupon:
    """A coupon applied to a customer, with its state derived from the issued invoices (module docstring)."""

    id: str
    tenant: str
    customer: str
    coupon: StoredCoupon
    terms: Coupon  # the coupon as it applies to this customer (overrides included)
    applied_at: datetime
    status: str  # active, or terminated (removed, or used up: `exhausted`)
    terminated_at: datetime | None
    periods_used: int
    amount_remaining: Decimal | None  # fixed coupons used once: what is left
    exhausted: bool

    @property
    def periods_remaining(self) -> int | None:
        if self.terms.duration != "repeating":
            return None
        assert self.terms.duration_periods is not None
        return max(0, self.terms.duration_periods - self.periods_used)


def _terms(coupon: CouponSpec, row: AppliedCouponRow) -> Coupon:
    """The coupon as it applies to this customer: its terms with the application's overrides."""
    duration = row.duration or coupon.duration
    periods = row.duration_periods if row.duration is not None else coupon.duration_periods
    spec = replace(
        coupon,
        percent_off=_dec(row.percent_off) if row.percent_off is not None else coupon.percent_off,
        amount_off=_dec(row.amount_off) if row.amount_off is not None else coupon.amount_off,
        currency=row.currency or coupon.currency,
        duration=duration,  # type: ignore[arg-type]
        duration_periods=periods if duration == "repeating" else None,
    )
    return _coupon_of(spec)


def derive_use(terms: Coupon, applied_at: datetime, invoices: Iterable[tuple[datetime, Sequence[Any]]]) -> CouponUse:
    """The coupon's use so far (the rule: module docstring) from the customer's issued invoices of earlier
    periods: (finalized_at, the document's discounts, each with `code` and `amount`)."""
    used = 0
    taken = Decimal(0)
    for finalized_at, discounts in invoices:
        if finalized_at < applied_at:
            continue
        mine = [d for d in discounts if d.code == terms.code]
        if mine:
            used += 1
            for d in mine:
                taken = EXACT.add(taken, d.amount)
    remaining = None
    if terms.carries_over:
        assert terms.amount_off is not None and terms.currency is not None
        left = to_units(terms.amount_off, terms.currency) - to_units(taken, terms.currency)
        remaining = from_units(max(left, 0), terms.currency)
    return CouponUse(terms, periods_used=used, amount_remaining=remaining)


class _Discount(msgspec.Struct):
    code: str
    amount: Decimal


class _Discounts(msgspec.Struct):
    discounts: list[_Discount] = []


_decode_discounts = msgspec.json.Decoder(_Discounts).decode


def _issued_invoices(s: Session, where: Sequence[Any]) -> dict[tuple[str, str], list[tuple[datetime, list[Any]]]]:
    """(tenant, customer) -> [(finalized_at, discounts)] of the issued invoices matching `where`, for the
    customers holding an active applied coupon (one query)."""
    holder = exists().where(
        AppliedCouponRow.tenant == InvoiceRow.tenant,
        AppliedCouponRow.customer == InvoiceRow.customer,
        AppliedCouponRow.status == ACTIVE,
    )
    stmt = select(InvoiceRow.tenant, InvoiceRow.customer, InvoiceRow.finalized_at, InvoiceRow.document).where(
        InvoiceRow.status.in_(ISSUED), holder, *where
    )
    out: dict[tuple[str, str], list[tuple[datetime, list[Any]]]] = defaultdict(list)
    for tenant, customer, finalized_at, document in s.execute(stmt):
        discounts = _decode_discounts(document).discounts
        out[(tenant, customer)].append((aware(finalized_at), discounts))  # type: ignore[arg-type]
    return out


def _active_applied(s: Session, where: Sequence[Any]) -> list[tuple[AppliedCouponRow, CouponRow]]:
    stmt = (
        select(AppliedCouponRow, CouponRow)
        .join(CouponRow, CouponRow.id == AppliedCouponRow.coupon_ref)
        .where(AppliedCouponRow.status == ACTIVE, *where)
        .order_by(AppliedCouponRow.applied_at, AppliedCouponRow.id)
    )
    return [(a, c) for a, c in s.execute(stmt)]


def period_end(period: str) -> datetime:
    """The first instant after the UTC month `period` (YYYY-MM)."""
    try:
        year, month = (int(p) for p in period.split("-"))
        calendar.monthrange(year, month)
    except ValueError:
        raise Invalid("period", f"must be YYYY-MM, got {period!r}") from None
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def coupon_uses(
    session: Session, tenant_customers: Iterable[tuple[str, str]] | None, period: str
) -> dict[tuple[str, str], list[CouponUse]]:
    """(tenant, customer) -> the uses of the coupons to apply to its invoice for `period` (YYYY-MM), in the
    order they were applied; only customers holding an active applied coupon appear (whether it still applies,
    `billing.discounts.is_active`, is the engine's decision on the use). The coupon's expiry does not stop it:
    expiry is about applying it to customers. `tenant_customers`: only these (None: all). Two queries whatever
    the number of customers."""
    period_end(period)  # YYYY-MM or Invalid naming `period`
    wanted = set(tenant_customers) if tenant_customers is not None else None
    applied = [(a, c) for a, c in _active_applied(session, ()) if wanted is None or (a.tenant, a.customer) in wanted]
    if not applied:
        return {}
    invoices = _issued_invoices(session, (InvoiceRow.period < period,))
    out: dict[tuple[str, str], list[CouponUse]] = {}
    for a, c in applied:
        key = (a.tenant, a.customer)
        use = derive_use(_terms(_spec(c), a), aware(a.applied_at), invoices.get(key, ()))  # type: ignore[arg-type]
        out.setdefault(key, []).append(use)
    return out


def _applied(a: AppliedCouponRow, c: CouponRow, invoices: Sequence[tuple[datetime, list[Any]]]) -> AppliedCoupon:
    terms = _terms(_spec(c), a)
    use = derive_use(terms, aware(a.applied_at), invoices)  # type: ignore[arg-type]
    exhausted = not is_active(use)
    status = TERMINATED if a.status == TERMINATED or exhausted else ACTIVE
    return AppliedCoupon(
        id=a.applied_id, tenant=a.tenant, customer=a.customer, coupon=_stored(c), terms=terms,
        applied_at=aware(a.applied_at), status=status, terminated_at=aware(a.terminated_at),  # type: ignore[arg-type]
        periods_used=use.periods_used, amount_remaining=use.amount_remaining, exhausted=exhausted,
    )  # fmt: skip


def _check_overrides(coupon: CouponSpec, o: CouponOverrides) -> CouponOverrides:
    if coupon.kind == "percentage" and (o.amount_off is not None or o.currency is not None):
        raise Invalid("amount_off", f"coupon {coupon.code!r} is a percentage coupon: override percent_off")
    if coupon.kind == "fixed" and o.percent_off is not None:
        raise Invalid("percent_off", f"coupon {coupon.code!r} is a fixed coupon: override amount_off")
    if o.duration_periods is not None and not 1 <= o.duration_periods <= MAX_PERIODS:
        raise Invalid("duration_periods", f"from 1 to {MAX_PERIODS} billing periods (got {o.duration_periods})")
    for name in ("percent_off", "amount_off"):
        value = getattr(o, name)
        if value is not None and len(str(value)) > 40:
            raise Invalid(name, "at most 40 characters of decimal text")
    if o.currency is not None and (not isinstance(o.currency, str) or len(o.currency) != 3):
        raise Invalid("currency", "an ISO 4217 code such as EUR")
    if o.duration_periods is not None and o.duration is None:
        o = replace(o, duration=coupon.duration)
    return replace(o, currency=o.currency.upper() if o.currency else None)


def apply_coupon(
    sf: sessionmaker, tenant: str, customer: str, code: str, overrides: CouponOverrides | None = None,
    *, at: datetime | None = None,
) -> AppliedCoupon:  # fmt: skip
    """Apply the live coupon `code` to the customer (its external id), from now (`at`) on. `NotFound` for an
    unknown customer or coupon; `Invalid` for an expired coupon, a fixed coupon in another currency than the
    customer's, bad overrides; `Conflict` naming `coupon_code` when the customer has it active already or had
    it before and it is not reusable."""
    overrides = overrides or CouponOverrides()
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        row = find_customer_row(s, tenant, customer)
        if row is None:
            raise NotFound(f"customer {customer!r} not found")
        coupon = _live(s, tenant, code)
        if coupon is None:
            raise NotFound(f"coupon {code!r} not found")
        spec = _spec(coupon)
        if spec.expires_at is not None and spec.expires_at <= now:
            raise Invalid("coupon_code", f"coupon {code!r} expired at {spec.expires_at.isoformat()}")
        overrides = _check_overrides(spec, overrides)
        applied = AppliedCouponRow(
            applied_id=new_ulid(), tenant=tenant, customer=customer, coupon_ref=coupon.id, status=ACTIVE,
            applied_at=now, terminated_at=None, percent_off=_text(overrides.percent_off),
            amount_off=_text(overrides.amount_off), currency=overrides.currency, duration=overrides.duration,
            duration_periods=overrides.duration_periods,
        )  # fmt: skip
        try:
            terms = _terms(spec, applied)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise Invalid(field if reason else "coupon", reason or str(exc)) from None
        if terms.currency is not None and row.currency is not None and terms.currency != row.currency:
            raise Invalid("currency", f"coupon {code!r} is in {terms.currency}, customer {customer!r} is billed "
                                      f"in {row.currency}")  # fmt: skip
        before = [a for a in _state(s, tenant, customer).values() if a.terms.code == code]
        if any(a.status == ACTIVE for a in before):
            raise Conflict("coupon_code", f"customer {customer!r} already has coupon {code!r} active")
        if before and not spec.reusable:
            raise Conflict("coupon_code", f"coupon {code!r} is not reusable and customer {customer!r} had it")
        s.add(applied)
        s.flush()
        return _applied(applied, coupon, ())


def _state(s: Session, tenant: str, customer: str | None) -> dict[str, AppliedCoupon]:
    """applied id -> the applied coupon with its derived state, for one customer or the whole tenant."""
    where: list[Any] = [AppliedCouponRow.tenant == tenant]
    if customer is not None:
        where.append(AppliedCouponRow.customer == customer)
    stmt = (
        select(AppliedCouponRow, CouponRow)
        .join(CouponRow, CouponRow.id == AppliedCouponRow.coupon_ref)
        .where(*where)
        .order_by(AppliedCouponRow.applied_at, AppliedCouponRow.id)
    )
    rows = list(s.execute(stmt))
    inv_where: list[Any] = [InvoiceRow.tenant == tenant]
    if customer is not None:
        inv_where.append(InvoiceRow.customer == customer)
    invoices = _issued_invoices(s, inv_where) if any(a.status == ACTIVE for a, _ in rows) else {}
    return {a.applied_id: _applied(a, c, invoices.get((a.tenant, a.customer), ())) for a, c in rows}


def list_applied(sf: sessionmaker, tenant: str, customer: str | None = None,
                 status: str | None = None) -> list[AppliedCoupon]:  # fmt: skip
    """The tenant's applied coupons (one customer's, one status), oldest first, with their derived state."""
    if status is not None and status not in (ACTIVE, TERMINATED):
        raise Invalid("status", f"active or terminated (got {status!r})")
    with sf() as s:
        found = list(_state(s, tenant, customer).values())
    return [a for a in found if status is None or a.status == status]


def terminate_applied(sf: sessionmaker, tenant: str, customer: str, applied_id: str) -> AppliedCoupon:
    """Remove a coupon from a customer: no later close applies it (issued invoices keep their discounts)."""
    with sf.begin() as s:
        row = s.scalar(select(AppliedCouponRow).where(
            AppliedCouponRow.tenant == tenant, AppliedCouponRow.customer == customer,
            AppliedCouponRow.applied_id == applied_id).with_for_update())  # fmt: skip
        if row is None:
            raise NotFound(f"applied coupon {applied_id!r} of customer {customer!r} not found")
        state = _state(s, tenant, customer)[applied_id]  # the state it ended with
        if row.status == ACTIVE:
            row.status, row.terminated_at = TERMINATED, datetime.now(UTC)
            s.flush()
        return replace(state, status=TERMINATED, terminated_at=aware(row.terminated_at))
