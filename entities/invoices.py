"""Invoices as records with a lifecycle, in the entity store (docs/invoice-lifecycle.md).

Statuses: `draft` (replaced by `upsert_draft` as usage arrives) -> `finalize` (number allocated in the same
transaction) -> `finalized` -> `partially_paid` / `paid` by payments and credit notes, `overdue` by
`mark_overdue` past the due date; `finalized` or `overdue` with nothing paid or credited -> `void` -> `voided`.
The full transition table is in docs/invoice-lifecycle.md.

The record holds the document itself (JSON text: the typed `schemas/invoice.py` InvoiceDoc, taken here as
bytes so this module does not depend on it) and the summary fields a list, a payment or an export needs:
tenant, invoice id (the close's id), customer, period label, currency, issue and due dates, and the money.

Money is stored in **integer minor units** of the invoice's currency (cents for EUR/USD, yen for JPY, fils
for KWD: `rating.money.minor_units`): integers are exact, portable (BIGINT on both databases), comparable
in SQL (`amount_due_minor > 0` for overdue) and what Lago's API shows (`*_amount_cents`). Functions take
amounts as Decimal, int or decimal string; an amount with more decimals than the currency has is refused
(Invalid naming the field): nothing is rounded here, the document's amounts are already rounded. Records
expose both the minor units (`total_minor`) and Decimal properties (`total`).

Amounts on the record:
- `total`: the document's total; `billed`: the document's amount due (total minus prepaid credits applied);
- `credited`: the sum of credit notes issued against the invoice (entities/credit_notes.py);
- `paid`: the sum of payments allocated to it (entities/payments.py);
- `amount_due` = max(0, billed - credited - paid), maintained on every write.

`status` after finalization follows from the money (`settled_status`): nothing due -> `paid` (like Stripe,
an invoice whose remainder a credit note cancels is paid: there is nothing left to collect); else
`overdue` once `mark_overdue` found it past its due date, and it stays overdue until nothing is due; else
`partially_paid` when a payment was received; else `finalized`. Every refused transition raises
`Conflict("status", ...)`. Writes lock the invoice row (`SELECT ... FOR UPDATE`; on SQLite the database
write lock first, entities/numbering.py `lock_for_write`), so concurrent writes of one invoice serialize.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, DateTime, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import numbering
from meterstream.entities.common import Conflict, Invalid, NotFound, aware
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import (
    DRAFT,
    FINALIZED,
    ISSUED,
    OPEN,
    OVERDUE,
    PAID,
    PARTIALLY_PAID,
    STATUSES,
    VOIDED,
    amount_due,
    check_currency,
    check_day,
    check_document,
    from_minor,
    settled_status,
    text,
    to_minor,
)
from meterstream.webhooks import events


class InvoiceRow(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant", "invoice_id", name="uq_invoices_tenant_invoice_id"),
        Index("uq_invoices_tenant_number", "tenant", "number", unique=True),  # drafts: NULL, never equal
        Index("ix_invoices_tenant_customer", "tenant", "customer"),
        Index("ix_invoices_status_due_date", "status", "due_date"),
        Index("ix_invoices_tenant_issue_date", "tenant", "issue_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    invoice_id: Mapped[str] = mapped_column(String(256))
    customer: Mapped[str] = mapped_column(String(256))
    period: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    billed_minor: Mapped[int] = mapped_column(BigInteger)
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_due_minor: Mapped[int] = mapped_column(BigInteger)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    document: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    series: Mapped[str | None] = mapped_column(String(32), nullable=True)
    number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Writes that lock several invoices lock them in this one total order (oldest due first, as payments are
# allocated), so two such writes on PostgreSQL can never wait for each other in a cycle (a deadlock).
LOCK_ORDER = (InvoiceRow.due_date, InvoiceRow.issue_date, InvoiceRow.number, InvoiceRow.id)


@dataclass(frozen=True)
class Invoice:
    """An invoice record (money in minor units of `currency`; Decimal properties alongside)."""

    tenant: str
    invoice_id: str
    customer: str
    period: str
    currency: str
    status: str
    total_minor: int
    billed_minor: int
    credited_minor: int
    paid_minor: int
    amount_due_minor: int
    issue_date: date
    due_date: date
    document: str
    issuer: str | None
    series: str | None
    number: str | None
    finalized_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def total(self) -> Decimal:
        return from_minor(self.total_minor, self.currency)

    @property
    def billed(self) -> Decimal:
        return from_minor(self.billed_minor, self.currency)

    @property
    def credited(self) -> Decimal:
        return from_minor(self.credited_minor, self.currency)

    @property
    def paid(self) -> Decimal:
        return from_minor(self.paid_minor, self.currency)

    @property
    def amount_due(self) -> Decimal:
        return from_minor(self.amount_due_minor, self.currency)


def to_record(row: InvoiceRow) -> Invoice:
    return Invoice(
        tenant=row.tenant,
        invoice_id=row.invoice_id,
        customer=row.customer,
        period=row.period,
        currency=row.currency,
        status=row.status,
        total_minor=int(row.total_minor),
        billed_minor=int(row.billed_minor),
        credited_minor=int(row.credited_minor),
        paid_minor=int(row.paid_minor),
        amount_due_minor=int(row.amount_due_minor),
        issue_date=row.issue_date,
        due_date=row.due_date,
        document=row.document,
        issuer=row.issuer,
        series=row.series,
        number=row.number,
        finalized_at=aware(row.finalized_at),
        voided_at=aware(row.voided_at),
        void_reason=row.void_reason,
        version=int(row.version),
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        updated_at=aware(row.updated_at),  # type: ignore[arg-type]
    )


def apply_money(row: InvoiceRow, credited: int, paid: int, now: datetime) -> None:
    """Set an issued invoice's credited and paid sums; recompute amount due and status (caller holds the lock).
    A new status is announced by its lifecycle event in the same transaction (webhooks/events.py)."""
    previous = row.status
    row.credited_minor, row.paid_minor = credited, paid
    row.amount_due_minor = amount_due(int(row.billed_minor), credited, paid)
    row.status = settled_status(row.status, int(row.billed_minor), credited, paid)
    row.version, row.updated_at = int(row.version) + 1, now
    events.status_changed(row, previous)


def locked(s: Session, tenant: str, invoice_id: str) -> InvoiceRow:
    """The invoice row, locked until the transaction ends (FOR UPDATE; a no-op on SQLite, which holds the
    database write lock already). NotFound when the tenant has no such invoice."""
    row = s.scalar(
        select(InvoiceRow)
        .where(InvoiceRow.tenant == tenant, InvoiceRow.invoice_id == invoice_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # the caller's session may hold an older copy
    )
    if row is None:
        raise NotFound(f"no invoice {invoice_id!r} for tenant {tenant!r}")
    return row


def upsert_draft(
    sf: sessionmaker,
    *,
    tenant: str,
    invoice_id: str,
    customer: str,
    period: str,
    currency: str,
    total: Decimal | int | str,
    issue_date: date,
    due_date: date,
    document: bytes | str,
    amount_due: Decimal | int | str | None = None,
) -> Invoice:
    """`upsert_draft_in` in a transaction of its own."""
    with sf.begin() as s:
        return upsert_draft_in(
            s, tenant=tenant, invoice_id=invoice_id, customer=customer, period=period, currency=currency,
            total=total, issue_date=issue_date, due_date=due_date, document=document, amount_due=amount_due,
        )  # fmt: skip


def upsert_draft_in(
    s: Session,
    *,
    tenant: str,
    invoice_id: str,
    customer: str,
    period: str,
    currency: str,
    total: Decimal | int | str,
    issue_date: date,
    due_date: date,
    document: bytes | str,
    amount_due: Decimal | int | str | None = None,
) -> Invoice:
    """Create the draft, or replace it as usage arrives (same `invoice_id`). `amount_due` defaults to `total`
    (less when prepaid credits were applied in the document). A finalized (or voided) invoice is never changed:
    `Conflict("status")`. The customer and currency of an existing draft may not change (`Conflict` naming
    them): a draft id belongs to one customer's invoice. Runs in the caller's transaction (`s`); two concurrent
    first upserts of one id both succeed, one after the other (INSERT ... ON CONFLICT DO NOTHING, then the
    row is locked)."""
    text("tenant", tenant, 128)
    text("invoice_id", invoice_id, 256)
    text("customer", customer, 256)
    text("period", period, 64)
    check_currency(currency)
    total_minor = to_minor("total", total, currency)
    billed_minor = total_minor if amount_due is None else to_minor("amount_due", amount_due, currency)
    if billed_minor > total_minor:
        raise Invalid("amount_due", f"more than the total ({amount_due} > {total})")
    check_day("issue_date", issue_date)
    check_day("due_date", due_date)
    if due_date < issue_date:
        raise Invalid("due_date", f"{due_date} is before issue_date {issue_date}")
    doc = check_document(document)
    now = datetime.now(UTC)
    numbering.lock_for_write(s)
    numbering.insert_ignore(
        s, InvoiceRow, tenant=tenant, invoice_id=invoice_id, customer=customer, period=period, currency=currency,
        status=DRAFT, total_minor=total_minor, billed_minor=billed_minor, credited_minor=0, paid_minor=0,
        amount_due_minor=billed_minor, issue_date=issue_date, due_date=due_date, document=doc, version=0,
        created_at=now, updated_at=now,
    )  # fmt: skip
    row = locked(s, tenant, invoice_id)
    if row.status != DRAFT:
        raise Conflict("status", f"invoice {invoice_id!r} is {row.status}: only a draft can be replaced")
    if row.customer != customer:
        raise Conflict("customer", f"draft {invoice_id!r} belongs to customer {row.customer!r}, not {customer!r}")
    if row.currency != currency:
        raise Conflict("currency", f"draft {invoice_id!r} is in {row.currency}, not {currency}")
    row.period = period
    row.total_minor, row.billed_minor, row.amount_due_minor = total_minor, billed_minor, billed_minor
    row.issue_date, row.due_date, row.document = issue_date, due_date, doc
    created = int(row.version) == 0  # just inserted: the first draft (a replacement is no event)
    row.version, row.updated_at = int(row.version) + 1, now
    s.flush()
    if created:
        events.invoice_event(s, row, events.INVOICE_CREATED)
    return to_record(row)


def stamp_document(document: str, number: str) -> str:
    """The default stamp at finalization: a JSON object document gets `number` and `status: "finalized"`
    (InvoiceDoc's fields); any other JSON is kept as is."""
    doc = json.loads(document)
    if not isinstance(doc, dict):
        return document
    doc["number"], doc["status"] = number, FINALIZED
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def finalize_in(
    s: Session,
    tenant: str,
    invoice_id: str,
    issuer: str,
    series: str,
    at: datetime,
    template: str | None = None,
    stamp: Callable[[str, str], str] | None = None,
) -> Invoice:
    """Finalize inside the caller's transaction (the close's): lock the draft, allocate the next number of
    (tenant, issuer, series, year of the issue date) and store the stamped document, all committed together
    or not at all. Already finalized: returns the record with its number (no new number). Voided:
    `Conflict("status")`. `stamp(document, number)` returns the final document (default `stamp_document`)."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise Invalid("at", f"a time with a time zone offset (got {at!r})")
    numbering.check_code("issuer", issuer)
    numbering.check_code("series", series)
    numbering.lock_for_write(s)
    row = locked(s, tenant, invoice_id)
    if row.status == VOIDED:
        raise Conflict("status", f"invoice {invoice_id!r} ({row.number}) is voided: it cannot be finalized again")
    if row.status != DRAFT:
        return to_record(row)  # finalizing twice: the same number
    given = numbering.allocate(s, tenant, issuer, series, row.issue_date.year, template)
    row.document = (stamp or stamp_document)(row.document, given.number)
    check_document(row.document)
    row.issuer, row.series, row.number = issuer, series, given.number
    row.finalized_at, row.status = at.astimezone(UTC), FINALIZED
    events.invoice_event(s, row, events.INVOICE_FINALIZED, DRAFT)
    apply_money(row, 0, 0, datetime.now(UTC))  # a zero invoice is paid at once
    s.flush()
    return to_record(row)


def finalize(
    sf: sessionmaker,
    tenant: str,
    invoice_id: str,
    issuer: str,
    series: str = numbering.INVOICE_SERIES,
    at: datetime | None = None,
    template: str | None = None,
    stamp: Callable[[str, str], str] | None = None,
) -> Invoice:
    """`finalize_in` in a transaction of its own (`at` defaults to now)."""
    with sf.begin() as s:
        return finalize_in(s, tenant, invoice_id, issuer, series, at or datetime.now(UTC), template, stamp)


def void(sf: sessionmaker, tenant: str, invoice_id: str, reason: str, at: datetime | None = None) -> Invoice:
    """Void a finalized invoice that nothing was paid or credited on (it keeps its number: numbers stay
    gapless, and the export lists it as voided). Otherwise `Conflict("status")`: a draft has nothing to
    void (replace it), a paid or credited invoice is corrected with a credit note."""
    text("reason", reason, 1024)
    with sf.begin() as s:
        numbering.lock_for_write(s)
        row = locked(s, tenant, invoice_id)
        if row.status not in (FINALIZED, OVERDUE) or row.paid_minor or row.credited_minor:
            why = "payments or credit notes: correct it with a credit note" if row.status in ISSUED else "status"
            raise Conflict("status", f"invoice {invoice_id!r} is {row.status} and cannot be voided ({why})")
        now = datetime.now(UTC)
        previous = row.status
        row.status, row.void_reason, row.voided_at = VOIDED, reason, (at or now).astimezone(UTC)
        row.amount_due_minor, row.version, row.updated_at = 0, int(row.version) + 1, now
        s.flush()
        events.invoice_event(s, row, events.INVOICE_VOIDED, previous)
        return to_record(row)


def get(sf: sessionmaker, tenant: str, invoice_id: str) -> Invoice:
    with sf() as s:
        row = s.scalar(select(InvoiceRow).where(InvoiceRow.tenant == tenant, InvoiceRow.invoice_id == invoice_id))
        if row is None:
            raise NotFound(f"no invoice {invoice_id!r} for tenant {tenant!r}")
        return to_record(row)


def list_invoices(
    sf: sessionmaker, tenant: str, customer: str | None = None, status: str | None = None
) -> list[Invoice]:
    """The tenant's invoices (optionally one customer's, one status), by issue date, number (drafts last), id."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)} (got {status!r})")
    stmt = select(InvoiceRow).where(InvoiceRow.tenant == tenant)
    if customer is not None:
        stmt = stmt.where(InvoiceRow.customer == customer)
    if status is not None:
        stmt = stmt.where(InvoiceRow.status == status)
    with sf() as s:
        rows = s.scalars(
            stmt.order_by(InvoiceRow.issue_date, InvoiceRow.number.asc().nulls_last(), InvoiceRow.invoice_id)
        ).all()
        return [to_record(r) for r in rows]


def mark_overdue(sf: sessionmaker, today: date, tenant: str | None = None) -> list[Invoice]:
    """Every finalized or partially paid invoice (of every tenant, or of `tenant`) whose due date is before
    `today` and which still has an amount due becomes `overdue` (on the due date itself it is not overdue yet).
    Returns those changed."""
    check_day("today", today)
    now = datetime.now(UTC)
    stmt = select(InvoiceRow).where(
        InvoiceRow.status.in_((FINALIZED, PARTIALLY_PAID)),
        InvoiceRow.due_date < today,
        InvoiceRow.amount_due_minor > 0,
    )
    if tenant is not None:
        stmt = stmt.where(InvoiceRow.tenant == tenant)
    with sf.begin() as s:
        numbering.lock_for_write(s)
        rows = s.scalars(stmt.order_by(*LOCK_ORDER).with_for_update()).all()
        for row in rows:
            previous = row.status
            row.status, row.version, row.updated_at = OVERDUE, int(row.version) + 1, now
            events.invoice_event(s, row, events.INVOICE_OVERDUE, previous)
        s.flush()
        return [to_record(r) for r in rows]


__all__ = [
    "DRAFT",
    "FINALIZED",
    "ISSUED",
    "LOCK_ORDER",
    "OPEN",
    "OVERDUE",
    "PAID",
    "PARTIALLY_PAID",
    "STATUSES",
    "VOIDED",
    "Invoice",
    "InvoiceRow",
    "amount_due",
    "finalize",
    "finalize_in",
    "from_minor",
    "get",
    "list_invoices",
    "mark_overdue",
    "settled_status",
    "stamp_document",
    "to_minor",
    "upsert_draft",
    "upsert_draft_in",
    "void",
]
