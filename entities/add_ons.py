"""Add-ons in the entity store (Lago's `add_ons`, docs/add-ons.md).

An add-on is a tenant's catalog item billed once, on a one-off invoice (a setup fee, a consulting day): a code
(unique per tenant), a name, an optional name to show on invoices (`invoice_display_name`) and description, a
default unit amount in a currency (stored in the currency's minor units, `amount_minor`: 150.00 EUR -> 15000) and
optional tax codes (the tenant's taxes, entities/tax_objects.py: each code must be one of them when written).

Deleting an add-on removes it (a hard delete): an invoice that billed it keeps its own copy of the line, so nothing
refers to the row. A tax deleted or renamed later is not followed here: the add-on keeps the code it was given,
and the readers (the Lago `taxes` of an add-on) show only the codes that are still taxes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import check_currency, from_minor, text, to_minor
from meterstream.entities.tax_objects import TaxRow

__all__ = [
    "KEEP",
    "AddOn",
    "AddOnRow",
    "create_add_on",
    "delete_add_on",
    "get_add_on",
    "list_add_ons",
    "update_add_on",
]

KEEP: Any = object()  # `update_add_on`: leave this field as it is
MAX_TAX_CODES = 32


class AddOnRow(Base):
    __tablename__ = "add_ons"
    __table_args__ = (UniqueConstraint("tenant", "code", name="uq_add_ons_tenant_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    add_on_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    code: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    invoice_display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # >= 0, in the currency's minor units
    tax_codes: Mapped[list[str]] = mapped_column(JSON)  # the tenant's tax codes, in the order given
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class AddOn:
    tenant: str
    add_on_id: str
    code: str
    name: str
    invoice_display_name: str | None
    description: str | None
    currency: str
    amount_minor: int
    tax_codes: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def amount(self) -> Decimal:
        """The default unit amount with the currency's digits: 15000 EUR -> Decimal('150.00')."""
        return from_minor(self.amount_minor, self.currency)


# --- checks (Invalid naming the field; nothing is written before they pass) --------------------------------


def _code(field: str, value: object) -> str:
    if not isinstance(value, str) or not (0 < len(value) <= 128) or value != value.strip():
        raise Invalid(field, "1-128 characters, no leading or trailing spaces")
    return value


def _name(value: object) -> str:
    name = text("name", value, 256)
    if not name.strip():
        raise Invalid("name", "must not be blank")
    return name


def _optional(field: str, value: object, limit: int) -> str | None:
    return None if value is None else text(field, value, limit)


def _currency(value: object) -> str:
    return check_currency(value.upper() if isinstance(value, str) else value)


def _tax_codes(s: Session, tenant: str, value: object) -> list[str]:
    """The codes, each once in the order given; each must be one of the tenant's taxes."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise Invalid("tax_codes", f"a list of tax codes (got {value!r})")
    codes = list(value)
    for i, c in enumerate(codes):
        if not isinstance(c, str) or not (0 < len(c) <= 128):
            raise Invalid(f"tax_codes[{i}]", f"a tax code of 1-128 characters (got {c!r})")
    codes = list(dict.fromkeys(codes))
    if len(codes) > MAX_TAX_CODES:
        raise Invalid("tax_codes", f"at most {MAX_TAX_CODES} tax codes (got {len(codes)})")
    if codes:
        known = set(s.scalars(select(TaxRow.code).where(TaxRow.tenant == tenant, TaxRow.code.in_(codes))))
        missing = [c for c in codes if c not in known]
        if missing:
            raise Invalid("tax_codes", f"unknown tax code {missing[0]!r} (create it first: taxes)")
    return codes


def _of(row: AddOnRow) -> AddOn:
    return AddOn(
        tenant=row.tenant, add_on_id=row.add_on_id, code=row.code, name=row.name,
        invoice_display_name=row.invoice_display_name, description=row.description, currency=row.currency,
        amount_minor=int(row.amount_minor), tax_codes=tuple(row.tax_codes or ()),
        created_at=aware(row.created_at), updated_at=aware(row.updated_at),  # type: ignore[arg-type]
    )  # fmt: skip


def _find(s: Session, tenant: str, code: str, *, lock: bool = False) -> AddOnRow | None:
    stmt = select(AddOnRow).where(AddOnRow.tenant == tenant, AddOnRow.code == code)
    return s.scalar(stmt.with_for_update() if lock else stmt)


def _found(s: Session, tenant: str, code: str, *, lock: bool = False) -> AddOnRow:
    row = _find(s, tenant, code, lock=lock)
    if row is None:
        raise NotFound(f"add-on {code!r} not found")
    return row


def _flush(s: Session, code: str) -> None:
    """Write; a concurrent write that took the code first (the unique index) is the same `Conflict`."""
    try:
        s.flush()
    except IntegrityError:
        raise Conflict("code", f"an add-on with code {code!r} already exists") from None


# --- the repository ---------------------------------------------------------------------------------------


def create_add_on(
    sf: sessionmaker, tenant: str, *, code: str, name: str, amount: Decimal | int | str, currency: str,
    invoice_display_name: str | None = None, description: str | None = None, tax_codes: Iterable[str] = (),
) -> AddOn:  # fmt: skip
    """Store a new add-on. `amount` in major units (Decimal, int or decimal string, never a float), at most the
    currency's decimals, >= 0. `Invalid` naming the field; `Conflict` naming `code` when the tenant has it."""
    code = _code("code", code)
    name = _name(name)
    invoice_display_name = _optional("invoice_display_name", invoice_display_name, 256)
    description = _optional("description", description, 1024)
    currency = _currency(currency)
    minor = to_minor("amount", amount, currency)
    now = datetime.now(UTC)
    with sf.begin() as s:
        codes = _tax_codes(s, tenant, tax_codes)
        if _find(s, tenant, code) is not None:
            raise Conflict("code", f"an add-on with code {code!r} already exists")
        row = AddOnRow(tenant=tenant, add_on_id=new_ulid(), code=code, name=name,
                       invoice_display_name=invoice_display_name, description=description, currency=currency,
                       amount_minor=minor, tax_codes=codes, created_at=now, updated_at=now)  # fmt: skip
        s.add(row)
        _flush(s, code)
        return _of(row)


def update_add_on(
    sf: sessionmaker, tenant: str, code: str, *, name: str = KEEP, amount: Decimal | int | str = KEEP,
    currency: str = KEEP, invoice_display_name: str | None = KEEP, description: str | None = KEEP,
    tax_codes: Iterable[str] = KEEP, new_code: str = KEEP,
) -> AddOn:  # fmt: skip
    """Change what is passed (KEEP: as it is; None clears `invoice_display_name` and `description`); `new_code`
    renames it (to a code the tenant does not use: `Conflict` naming `code`). A new `currency` without an
    `amount` keeps the amount in major units (150.00 EUR -> 150.00 USD; refused naming `amount` when the new
    currency has fewer decimals than it needs). `NotFound` for an unknown code. Invoices already issued keep
    their lines."""
    with sf.begin() as s:
        row = _found(s, tenant, code, lock=True)
        if new_code is not KEEP and new_code != row.code:
            new_code = _code("code", new_code)
            if _find(s, tenant, new_code) is not None:
                raise Conflict("code", f"an add-on with code {new_code!r} already exists")
            row.code = new_code
        if name is not KEEP:
            row.name = _name(name)
        if invoice_display_name is not KEEP:
            row.invoice_display_name = _optional("invoice_display_name", invoice_display_name, 256)
        if description is not KEEP:
            row.description = _optional("description", description, 1024)
        target = row.currency if currency is KEEP else _currency(currency)
        if amount is not KEEP:
            row.amount_minor = to_minor("amount", amount, target)
        elif target != row.currency:
            row.amount_minor = to_minor("amount", from_minor(int(row.amount_minor), row.currency), target)
        row.currency = target
        if tax_codes is not KEEP:
            row.tax_codes = _tax_codes(s, tenant, tax_codes)
        row.updated_at = datetime.now(UTC)
        _flush(s, row.code)
        return _of(row)


def get_add_on(sf: sessionmaker, tenant: str, code: str) -> AddOn:
    with sf() as s:
        return _of(_found(s, tenant, code))


def list_add_ons(sf: sessionmaker, tenant: str, *, page: int = 1, per_page: int = 100) -> tuple[list[AddOn], int]:
    """One page (1-based) of the tenant's add-ons, oldest first, and their total."""
    if page < 1:
        raise Invalid("page", f"1 or more (got {page})")
    if per_page < 1:
        raise Invalid("per_page", f"1 or more (got {per_page})")
    where = AddOnRow.tenant == tenant
    with sf() as s:
        total = s.scalar(select(func.count()).select_from(AddOnRow).where(where)) or 0
        rows = s.scalars(select(AddOnRow).where(where).order_by(AddOnRow.created_at, AddOnRow.add_on_id)
                         .offset((page - 1) * per_page).limit(per_page))  # fmt: skip
        return [_of(r) for r in rows], total


def delete_add_on(sf: sessionmaker, tenant: str, code: str) -> AddOn:
    """Delete an add-on (hard: issued invoices keep their own lines); returns what was deleted."""
    with sf.begin() as s:
        row = _found(s, tenant, code, lock=True)
        gone = _of(row)
        s.delete(row)
        return gone
