"""Credit notes: corrections of a finalized invoice, full or partial, numbered in their own series (`CN`).

A credit note has a reason and lines (description, amount > 0); its total is the sum of its lines. It is
issued against an invoice that is finalized and not voided (`Conflict("status")` otherwise), in the
invoice's currency, and numbered in the same transaction (entities/numbering.py) in series `CN` of the
invoice's issuer: `ACME-CN-2026-000001`, year of the credit note's issue date.

**Creditable amount.** What an invoice bills (its amount due at finalization, `billed`) can be credited once:
a credit note's total may not exceed `billed - credited` (credit notes already issued), else
`Invalid("amount", ...)`. `lines=None` is a full credit note of that remainder.

**Effect on the invoice** (entities/invoices.py): `credited` grows by the total, and
amount due = max(0, billed - credited - paid). The part of the total that the amount due absorbed is
`credit` (status `applied` when that is all of it); the rest — money the customer has already paid and is
now owed back — is `refund` (status `refund_due`: paying it back happens outside Meterstream and is listed
in the export). Example: billed 100.00, paid 70.00, credit note 50.00 -> credit 30.00 (due 30.00 -> 0,
the invoice is `paid`), refund 20.00.

**Issue date** (default: today, UTC): on or after the invoice's issue date, and not later than today —
`Invalid("issue_date", ...)` naming the dates otherwise (the API answers 422).

`credit_note_id` makes creation idempotent: the same id again returns the stored note when it names the same
invoice and total (or is a full credit note again, `lines=None`), else `Conflict("credit_note_id")`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, DateTime, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities import numbering
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import ISSUED, from_minor, text, to_minor
from meterstream.entities.invoices import InvoiceRow, apply_money, locked
from meterstream.webhooks import events

APPLIED = "applied"
REFUND_DUE = "refund_due"
REFUNDED = "refunded"


class CreditNoteRow(Base):
    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("tenant", "credit_note_id", name="uq_credit_notes_tenant_credit_note_id"),
        UniqueConstraint("tenant", "number", name="uq_credit_notes_tenant_number"),
        Index("ix_credit_notes_tenant_invoice", "tenant", "invoice_id"),
        Index("ix_credit_notes_tenant_issue_date", "tenant", "issue_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    credit_note_id: Mapped[str] = mapped_column(String(256))
    invoice_id: Mapped[str] = mapped_column(String(256))
    invoice_number: Mapped[str] = mapped_column(String(64))
    customer: Mapped[str] = mapped_column(String(256))
    currency: Mapped[str] = mapped_column(String(3))
    number: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1024))
    lines: Mapped[str] = mapped_column(Text)  # JSON: [{"description": str, "amount_minor": int}]
    total_minor: Mapped[int] = mapped_column(BigInteger)
    credit_minor: Mapped[int] = mapped_column(BigInteger)
    refund_minor: Mapped[int] = mapped_column(BigInteger)
    issue_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refunded_on: Mapped[date | None] = mapped_column(Date, nullable=True)  # `mark_refunded`
    refund_reference: Mapped[str | None] = mapped_column(String(256), nullable=True)


@dataclass(frozen=True)
class CreditLine:
    description: str
    amount_minor: int


@dataclass(frozen=True)
class CreditNote:
    tenant: str
    credit_note_id: str
    invoice_id: str
    invoice_number: str
    customer: str
    currency: str
    number: str
    status: str
    reason: str
    lines: tuple[CreditLine, ...]
    total_minor: int
    credit_minor: int
    refund_minor: int
    issue_date: date
    created_at: datetime
    refunded_on: date | None = None  # the day the refund was paid back (status `refunded`)
    refund_reference: str | None = None  # the bank transfer or PSP refund that paid it

    @property
    def total(self) -> Decimal:
        return from_minor(self.total_minor, self.currency)

    @property
    def credit(self) -> Decimal:
        return from_minor(self.credit_minor, self.currency)

    @property
    def refund(self) -> Decimal:
        return from_minor(self.refund_minor, self.currency)

    @property
    def amounts(self) -> tuple[tuple[str, Decimal], ...]:
        """The lines as (description, amount), what the documents print (documents/credit_note.py, ubl.py)."""
        return tuple((x.description, from_minor(x.amount_minor, self.currency)) for x in self.lines)


def note_record(row: CreditNoteRow) -> CreditNote:
    lines = tuple(CreditLine(str(x["description"]), int(x["amount_minor"])) for x in json.loads(row.lines))
    return CreditNote(
        tenant=row.tenant,
        credit_note_id=row.credit_note_id,
        invoice_id=row.invoice_id,
        invoice_number=row.invoice_number,
        customer=row.customer,
        currency=row.currency,
        number=row.number,
        status=row.status,
        reason=row.reason,
        lines=lines,
        total_minor=int(row.total_minor),
        credit_minor=int(row.credit_minor),
        refund_minor=int(row.refund_minor),
        issue_date=row.issue_date,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        refunded_on=row.refunded_on,
        refund_reference=row.refund_reference,
    )


def _lines(lines: Sequence[Mapping[str, object]], currency: str) -> list[CreditLine]:
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence) or not lines:
        raise Invalid("lines", "a non-empty list of {description, amount} (or None for a full credit note)")
    out = []
    for i, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise Invalid(f"lines[{i}]", f"an object with description and amount (got {line!r})")
        description = text(f"lines[{i}].description", line.get("description"), 1024)
        minor = to_minor(f"lines[{i}].amount", line.get("amount"), currency)
        if minor == 0:
            raise Invalid(f"lines[{i}].amount", "must be more than 0")
        out.append(CreditLine(description, minor))
    return out


def _check_not_ahead(day: date, today: date) -> None:
    """A credit note is dated no later than the day it is issued (today, UTC; the issuer has no time zone of its
    own): a date ahead would put a correction already in force, and a refund owed, into a month not yet come,
    number it in a series (year) not yet open, and leave it out of the exports of the months until then."""
    if day > today:
        raise Invalid("issue_date", f"{day.isoformat()} is later than today ({today.isoformat()}, UTC): a credit note "
                                    "is dated the day it is issued or before, never ahead")  # fmt: skip


def _check_issue_date(day: date, invoice_day: date) -> None:
    """A credit note is dated on or after the invoice it corrects: an earlier date would precede it, open a number
    series for a past year and change a month already exported. (With `_check_not_ahead`: between the invoice's
    issue date and today.)"""
    if day < invoice_day:
        raise Invalid("issue_date", f"{day.isoformat()} is before the invoice's issue date {invoice_day.isoformat()}")


def create_credit_note(
    sf: sessionmaker,
    tenant: str,
    invoice_id: str,
    reason: str,
    lines: Sequence[Mapping[str, object]] | None = None,
    *,
    issue_date: date | None = None,
    credit_note_id: str | None = None,
    series: str = numbering.CREDIT_NOTE_SERIES,
    template: str | None = None,
    today: date | None = None,
) -> CreditNote:
    """Issue a credit note against a finalized invoice (module docstring), in one transaction with its number
    and the invoice's new amount due. `lines`: [{"description": ..., "amount": Decimal | str | int}].
    `today`: the day it is issued on (default: the UTC clock's; a replay of a dated timeline names its own)."""
    text("reason", reason, 1024)
    note_id = text("credit_note_id", credit_note_id, 256) if credit_note_id is not None else new_ulid()
    now = datetime.now(UTC)
    today = today or now.date()
    day = issue_date or today
    if not isinstance(day, date) or isinstance(day, datetime):
        raise Invalid("issue_date", f"a date (got {day!r})")
    _check_not_ahead(day, today)
    with sf.begin() as s:
        numbering.lock_for_write(s)
        invoice = locked(s, tenant, invoice_id)
        existing = s.scalar(
            select(CreditNoteRow).where(CreditNoteRow.tenant == tenant, CreditNoteRow.credit_note_id == note_id)
        )
        creditable = int(invoice.billed_minor) - int(invoice.credited_minor)
        parsed = (
            _lines(lines, invoice.currency)
            if lines is not None
            else [CreditLine(f"Full credit of invoice {invoice.number}", creditable)]
        )
        total = sum(line.amount_minor for line in parsed)
        if existing is not None:  # a retry: a full credit note (lines=None) matches whatever total it had
            if existing.invoice_id != invoice_id or (lines is not None and int(existing.total_minor) != total):
                why = f"credit note {note_id!r} exists with other content ({existing.number})"
                raise Conflict("credit_note_id", why)
            return note_record(existing)
        _check_status(invoice)
        _check_issue_date(day, invoice.issue_date)
        credit = _split(invoice, total).credit_minor
        given = numbering.allocate(s, tenant, invoice.issuer or "", series, day.year, template)
        row = CreditNoteRow(
            tenant=tenant,
            credit_note_id=note_id,
            invoice_id=invoice_id,
            invoice_number=invoice.number,
            customer=invoice.customer,
            currency=invoice.currency,
            number=given.number,
            status=APPLIED if credit == total else REFUND_DUE,
            reason=reason,
            lines=json.dumps([{"description": x.description, "amount_minor": x.amount_minor} for x in parsed]),
            total_minor=total,
            credit_minor=credit,
            refund_minor=total - credit,
            issue_date=day,
            created_at=now,
        )
        s.add(row)
        events.credit_note_event(s, row)  # the lifecycle event, in this transaction (webhooks/events.py)
        apply_money(invoice, int(invoice.credited_minor) + total, int(invoice.paid_minor), now)
        s.flush()
        return note_record(row)


@dataclass(frozen=True)
class CreditSplit:
    """How a credit note of `total_minor` would settle on its invoice now: `credit_minor` cancels what is due,
    `refund_minor` is owed back (module docstring); `creditable_minor`: what the invoice had left to credit."""

    total_minor: int
    credit_minor: int
    refund_minor: int
    creditable_minor: int


def _check_status(invoice: InvoiceRow) -> None:
    if invoice.status not in ISSUED:
        why = f"invoice {invoice.invoice_id!r} is {invoice.status}: only a finalized invoice is credited"
        raise Conflict("status", why)


def _split(invoice: InvoiceRow, total: int) -> CreditSplit:
    """The checks of a credit note of `total` minor units against `invoice` (finalized, not voided: `_check_status`
    first; within what is left to credit) and its split; Invalid("amount") naming the figures otherwise."""
    _check_status(invoice)
    creditable = int(invoice.billed_minor) - int(invoice.credited_minor)
    if total <= 0 or total > creditable:
        left = from_minor(creditable, invoice.currency)
        raise Invalid(
            "amount",
            f"{from_minor(total, invoice.currency)} {invoice.currency} is more than the invoice's remaining "
            f"creditable amount {left} {invoice.currency}"
            if total > 0
            else "nothing left to credit",
        )
    credit = min(total, int(invoice.amount_due_minor))
    return CreditSplit(total, credit, total - credit, creditable)


def estimate_credit_note(
    sf: sessionmaker, tenant: str, invoice_id: str, lines: Sequence[Mapping[str, object]] | None = None
) -> CreditSplit:
    """What `create_credit_note` with these lines would do now, checked as it checks them, writing nothing."""
    with sf() as s:
        invoice = s.scalar(select(InvoiceRow).where(InvoiceRow.tenant == tenant, InvoiceRow.invoice_id == invoice_id))
        if invoice is None:
            raise NotFound(f"no invoice {invoice_id!r} for tenant {tenant!r}")
        creditable = int(invoice.billed_minor) - int(invoice.credited_minor)
        total = sum(x.amount_minor for x in _lines(lines, invoice.currency)) if lines is not None else creditable
        return _split(invoice, total)


def get_credit_note(sf: sessionmaker, tenant: str, credit_note_id: str) -> CreditNote:
    with sf() as s:
        row = s.scalar(
            select(CreditNoteRow).where(CreditNoteRow.tenant == tenant, CreditNoteRow.credit_note_id == credit_note_id)
        )
        if row is None:
            raise NotFound(f"no credit note {credit_note_id!r} for tenant {tenant!r}")
        return note_record(row)


def mark_refunded(
    sf: sessionmaker,
    tenant: str,
    credit_note_id: str,
    refunded_on: date | None = None,
    reference: str | None = None,
    *,
    today: date | None = None,
) -> CreditNote:
    """Record that the refund of a credit note was paid back on `refunded_on` (default: today, UTC), with the
    transfer's `reference`: status `refund_due` -> `refunded`. The same call again returns the stored note;
    Conflict("status") for a note that owes nothing back (`applied`), Conflict("refunded_on") for one refunded
    with another date or reference; Invalid("refunded_on") before the note's issue date or after today."""
    today = today or datetime.now(UTC).date()
    day = refunded_on or today
    if not isinstance(day, date) or isinstance(day, datetime):
        raise Invalid("refunded_on", f"a date (got {day!r})")
    if reference is not None:
        text("reference", reference, 256)
    with sf.begin() as s:
        row = s.scalar(
            select(CreditNoteRow)
            .where(CreditNoteRow.tenant == tenant, CreditNoteRow.credit_note_id == credit_note_id)
            .with_for_update()
        )
        if row is None:
            raise NotFound(f"no credit note {credit_note_id!r} for tenant {tenant!r}")
        if row.status == REFUNDED:
            if row.refunded_on == day and row.refund_reference == reference:
                return note_record(row)
            raise Conflict("refunded_on", f"credit note {row.number} was refunded on {row.refunded_on}"
                           + (f" ({row.refund_reference})" if row.refund_reference else ""))  # fmt: skip
        if row.status != REFUND_DUE or not row.refund_minor:
            raise Conflict("status", f"credit note {row.number} owes nothing back: it was deducted from the amount due")
        if day < row.issue_date or day > today:
            raise Invalid("refunded_on", f"from the note's issue date {row.issue_date} to today {today} (got {day})")
        row.status, row.refunded_on, row.refund_reference = REFUNDED, day, reference
        s.flush()
        events.credit_note_event(s, row, events.CREDIT_NOTE_REFUNDED)
        return note_record(row)


def list_credit_notes(
    sf: sessionmaker, tenant: str, invoice_id: str | None = None, customer: str | None = None
) -> list[CreditNote]:
    """The tenant's credit notes (optionally of one invoice or customer), in number order of issue."""
    stmt = select(CreditNoteRow).where(CreditNoteRow.tenant == tenant)
    if invoice_id is not None:
        stmt = stmt.where(CreditNoteRow.invoice_id == invoice_id)
    if customer is not None:
        stmt = stmt.where(CreditNoteRow.customer == customer)
    with sf() as s:
        return [note_record(r) for r in s.scalars(stmt.order_by(CreditNoteRow.id)).all()]


__all__ = [
    "APPLIED",
    "REFUNDED",
    "REFUND_DUE",
    "CreditLine",
    "CreditNote",
    "CreditNoteRow",
    "create_credit_note",
    "get_credit_note",
    "list_credit_notes",
    "mark_refunded",
]
