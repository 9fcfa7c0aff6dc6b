"""Payments received, reconciled against finalized invoices (docs/invoice-lifecycle.md).

`record_payment` records an amount received on a date with the payer's reference (a bank transfer id, a
PSP charge id), for one invoice (`invoice_id`) or for a customer (`customer`: allocated to the customer's
open invoices in the payment's currency, oldest due date first, then issue date, then number). Each invoice
it reaches moves to `partially_paid` or `paid` (or stays `overdue` until nothing is due), in the same
transaction as the payment (entities/invoices.py `settled_status`).

Rules:
- **idempotent on (tenant, reference)**: recording the same reference again with the same amount, currency,
  date and target returns the stored payment and changes nothing; with other content it is
  `Conflict("reference")`. A retried API call or a re-imported bank statement therefore counts once.
- **overpayments are refused** (`Invalid("amount")`, naming the amount due): nothing is kept as customer
  credit, because a balance no invoice shows is a liability finance must track elsewhere; the payer's
  surplus is for finance to refund or to record against a later invoice once it is finalized.
- **another currency is refused** (`Invalid("currency")`): no conversion happens here.
- only finalized, not voided invoices take payments (`Conflict("status")` for a draft or a voided one);
  a payment is more than 0 in the currency's minor units (`Invalid("amount")`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, DateTime, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities import invoices, numbering
from meterstream.entities.common import Conflict, Invalid, NotFound, aware
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import OPEN, check_currency, from_minor, text, to_minor
from meterstream.entities.invoices import InvoiceRow, apply_money, locked
from meterstream.webhooks import events


class PaymentRow(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("tenant", "reference", name="uq_payments_tenant_reference"),
        Index("ix_payments_tenant_paid_on", "tenant", "paid_on"),
        Index("ix_payments_tenant_customer", "tenant", "customer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    reference: Mapped[str] = mapped_column(String(256))
    customer: Mapped[str] = mapped_column(String(256))
    invoice_id: Mapped[str | None] = mapped_column(String(256), nullable=True)  # the invoice named, if one was
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    paid_on: Mapped[date] = mapped_column(Date)
    allocations: Mapped[str] = mapped_column(Text)  # JSON: [{"invoice_id", "number", "amount_minor"}]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Allocation:
    """The part of a payment applied to one invoice."""

    invoice_id: str
    number: str
    amount_minor: int


@dataclass(frozen=True)
class Payment:
    tenant: str
    reference: str
    customer: str
    invoice_id: str | None
    currency: str
    amount_minor: int
    paid_on: date
    allocations: tuple[Allocation, ...]
    created_at: datetime

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)


def payment_record(row: PaymentRow) -> Payment:
    allocations = tuple(
        Allocation(str(a["invoice_id"]), str(a["number"]), int(a["amount_minor"])) for a in json.loads(row.allocations)
    )
    return Payment(
        tenant=row.tenant,
        reference=row.reference,
        customer=row.customer,
        invoice_id=row.invoice_id,
        currency=row.currency,
        amount_minor=int(row.amount_minor),
        paid_on=row.paid_on,
        allocations=allocations,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
    )


def allocate(amount: int, dues: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Spread `amount` over `dues` [(invoice_id, amount due)] in order, each up to its due (pure). The caller
    has checked that the dues cover the amount."""
    out = []
    left = amount
    for invoice_id, due in dues:
        if left == 0:
            break
        take = min(left, due)
        if take > 0:
            out.append((invoice_id, take))
            left -= take
    return out


def _open_invoices(s, tenant: str, customer: str) -> list[InvoiceRow]:  # type: ignore[no-untyped-def]
    stmt = (
        select(InvoiceRow)
        .where(InvoiceRow.tenant == tenant, InvoiceRow.customer == customer, InvoiceRow.status.in_(OPEN))
        .order_by(*invoices.LOCK_ORDER)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(s.scalars(stmt).all())


def record_payment(
    sf: sessionmaker,
    tenant: str,
    *,
    amount: Decimal | int | str,
    currency: str,
    paid_on: date,
    reference: str,
    invoice_id: str | None = None,
    customer: str | None = None,
) -> Payment:
    """Record a payment for `invoice_id` or for `customer`'s open invoices (module docstring for the rules)."""
    text("tenant", tenant, 128)
    text("reference", reference, 256)
    check_currency(currency)
    minor = to_minor("amount", amount, currency)
    if minor == 0:
        raise Invalid("amount", "must be more than 0")
    if not isinstance(paid_on, date) or isinstance(paid_on, datetime):
        raise Invalid("paid_on", f"a date (got {paid_on!r})")
    if invoice_id is None and customer is None:
        raise Invalid("invoice_id", "name the invoice paid (invoice_id) or the customer who paid (customer)")
    if customer is not None:
        text("customer", customer, 256)
    now = datetime.now(UTC)
    with sf.begin() as s:
        numbering.lock_for_write(s)
        if invoice_id is not None:
            rows = [locked(s, tenant, invoice_id)]
            if customer is not None and rows[0].customer != customer:
                raise Invalid("customer", f"invoice {invoice_id!r} belongs to {rows[0].customer!r}, not {customer!r}")
        else:
            rows = _open_invoices(s, tenant, customer)  # type: ignore[arg-type]
        existing = s.scalar(select(PaymentRow).where(PaymentRow.tenant == tenant, PaymentRow.reference == reference))
        if existing is not None:
            same = (
                int(existing.amount_minor) == minor
                and existing.currency == currency
                and existing.paid_on == paid_on
                and existing.invoice_id == invoice_id
                and (customer is None or existing.customer == customer)
            )
            if not same:
                raise Conflict("reference", f"payment {reference!r} was recorded with other content")
            return payment_record(existing)
        if invoice_id is not None:
            row = rows[0]
            if row.status not in OPEN and row.status != "paid":
                raise Conflict("status", f"invoice {invoice_id!r} is {row.status}: only a finalized invoice is paid")
            if row.currency != currency:
                raise Invalid("currency", f"invoice {invoice_id!r} is in {row.currency}, the payment in {currency}")
        else:
            others = {r.currency for r in rows if r.currency != currency}
            rows = [r for r in rows if r.currency == currency]
            if not rows and others:
                owed = ", ".join(sorted(others))
                raise Invalid("currency", f"customer {customer!r} owes only in {owed}, the payment is in {currency}")
        due = sum(int(r.amount_due_minor) for r in rows)
        if minor > due:
            raise Invalid(
                "amount",
                f"{from_minor(minor, currency)} {currency} is more than the amount due "
                f"{from_minor(due, currency)} {currency}: overpayments are refused",
            )
        by_id = {r.invoice_id: r for r in rows}
        parts = allocate(minor, [(r.invoice_id, int(r.amount_due_minor)) for r in rows])
        for inv_id, part in parts:
            row = by_id[inv_id]
            apply_money(row, int(row.credited_minor), int(row.paid_minor) + part, now)
        payment = PaymentRow(
            tenant=tenant,
            reference=reference,
            customer=rows[0].customer if rows else customer,
            invoice_id=invoice_id,
            currency=currency,
            amount_minor=minor,
            paid_on=paid_on,
            allocations=json.dumps(
                [{"invoice_id": i, "number": by_id[i].number, "amount_minor": part} for i, part in parts]
            ),
            created_at=now,
        )
        s.add(payment)
        events.payment_event(s, payment)  # the lifecycle event, in this transaction (webhooks/events.py)
        return payment_record(payment)


def get_payment(sf: sessionmaker, tenant: str, reference: str) -> Payment:
    with sf() as s:
        row = s.scalar(select(PaymentRow).where(PaymentRow.tenant == tenant, PaymentRow.reference == reference))
        if row is None:
            raise NotFound(f"no payment {reference!r} for tenant {tenant!r}")
        return payment_record(row)


def list_payments(sf: sessionmaker, tenant: str, customer: str | None = None) -> list[Payment]:
    """The tenant's payments (optionally one customer's), by date then the order recorded."""
    stmt = select(PaymentRow).where(PaymentRow.tenant == tenant)
    if customer is not None:
        stmt = stmt.where(PaymentRow.customer == customer)
    with sf() as s:
        return [payment_record(r) for r in s.scalars(stmt.order_by(PaymentRow.paid_on, PaymentRow.id)).all()]


__all__ = ["Allocation", "Payment", "PaymentRow", "allocate", "get_payment", "list_payments", "record_payment"]
