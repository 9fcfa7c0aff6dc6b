"""Export of a month's finalized invoices, credit notes and payments for an ERP, as CSV and JSON.

`read_month(sf, tenant, "2026-11")` reads the records; `to_csv(data)` and `to_json(data)` are pure functions
over them (tested by hand). The month is the accounting month of each record's own date: invoices by
**issue date** (every numbered invoice, voided ones included, so the ERP sees every number of the
sequence: gapless), credit notes by issue date, payments by the date paid. Drafts are never exported.
Statuses and paid/credited sums are as of the export.

Amounts are decimal strings with the currency's digits (`120.00`, JPY `1500`), never floats; dates ISO 8601.
CSV: one file per kind, header first, `\\r\\n` line ends (RFC 4180, Python's csv module); payments have one
row per invoice a payment reached (`allocated` is that invoice's part, `amount` the whole payment).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.common import Invalid
from meterstream.entities.credit_notes import CreditNote, CreditNoteRow, note_record
from meterstream.entities.invoice_rules import DRAFT, from_minor
from meterstream.entities.invoices import Invoice, InvoiceRow, to_record
from meterstream.entities.payments import Payment, PaymentRow, payment_record

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

INVOICE_COLUMNS = (
    "number", "invoice_id", "status", "customer", "period", "issue_date", "due_date", "currency",
    "total", "billed", "credited", "paid", "amount_due", "voided_at", "void_reason",
)  # fmt: skip
CREDIT_NOTE_COLUMNS = (
    "number", "credit_note_id", "invoice_number", "invoice_id", "customer", "issue_date", "currency",
    "total", "credit", "refund", "status", "reason", "refunded_on", "refund_reference",
)  # fmt: skip
PAYMENT_COLUMNS = (
    "reference", "paid_on", "customer", "currency", "amount", "invoice_number", "invoice_id", "allocated",
)  # fmt: skip


@dataclass(frozen=True)
class ExportData:
    tenant: str
    month: str
    invoices: tuple[Invoice, ...]
    credit_notes: tuple[CreditNote, ...]
    payments: tuple[Payment, ...]


def month_bounds(month: str) -> tuple[date, date]:
    """`YYYY-MM` -> [first day, first day of the next month)."""
    m = _MONTH.match(month) if isinstance(month, str) else None
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise Invalid("month", f"YYYY-MM (got {month!r})")
    year, mon = int(m.group(1)), int(m.group(2))
    return date(year, mon, 1), (date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1))


def read_month(sf: sessionmaker, tenant: str, month: str) -> ExportData:
    """The tenant's numbered invoices and credit notes issued in `month`, and payments made in it."""
    start, end = month_bounds(month)
    with sf() as s:
        invoices = s.scalars(
            select(InvoiceRow)
            .where(
                InvoiceRow.tenant == tenant,
                InvoiceRow.status != DRAFT,
                InvoiceRow.issue_date >= start,
                InvoiceRow.issue_date < end,
            )
            .order_by(InvoiceRow.issuer, InvoiceRow.series, InvoiceRow.number)
        ).all()
        notes = s.scalars(
            select(CreditNoteRow)
            .where(CreditNoteRow.tenant == tenant, CreditNoteRow.issue_date >= start, CreditNoteRow.issue_date < end)
            .order_by(CreditNoteRow.number)
        ).all()
        payments = s.scalars(
            select(PaymentRow)
            .where(PaymentRow.tenant == tenant, PaymentRow.paid_on >= start, PaymentRow.paid_on < end)
            .order_by(PaymentRow.paid_on, PaymentRow.id)
        ).all()
        return ExportData(
            tenant,
            month,
            tuple(to_record(r) for r in invoices),
            tuple(note_record(r) for r in notes),
            tuple(payment_record(r) for r in payments),
        )


def _money(minor: int, currency: str) -> str:
    return str(from_minor(minor, currency))


def invoice_rows(data: ExportData) -> list[dict[str, str]]:
    return [
        {
            "number": inv.number or "",
            "invoice_id": inv.invoice_id,
            "status": inv.status,
            "customer": inv.customer,
            "period": inv.period,
            "issue_date": inv.issue_date.isoformat(),
            "due_date": inv.due_date.isoformat(),
            "currency": inv.currency,
            "total": _money(inv.total_minor, inv.currency),
            "billed": _money(inv.billed_minor, inv.currency),
            "credited": _money(inv.credited_minor, inv.currency),
            "paid": _money(inv.paid_minor, inv.currency),
            "amount_due": _money(inv.amount_due_minor, inv.currency),
            "voided_at": inv.voided_at.isoformat() if inv.voided_at else "",
            "void_reason": inv.void_reason or "",
        }
        for inv in data.invoices
    ]


def credit_note_rows(data: ExportData) -> list[dict[str, str]]:
    return [
        {
            "number": cn.number,
            "credit_note_id": cn.credit_note_id,
            "invoice_number": cn.invoice_number,
            "invoice_id": cn.invoice_id,
            "customer": cn.customer,
            "issue_date": cn.issue_date.isoformat(),
            "currency": cn.currency,
            "total": _money(cn.total_minor, cn.currency),
            "credit": _money(cn.credit_minor, cn.currency),
            "refund": _money(cn.refund_minor, cn.currency),
            "status": cn.status,
            "reason": cn.reason,
            "refunded_on": cn.refunded_on.isoformat() if cn.refunded_on else "",
            "refund_reference": cn.refund_reference or "",
        }
        for cn in data.credit_notes
    ]


def payment_rows(data: ExportData) -> list[dict[str, str]]:
    return [
        {
            "reference": p.reference,
            "paid_on": p.paid_on.isoformat(),
            "customer": p.customer,
            "currency": p.currency,
            "amount": _money(p.amount_minor, p.currency),
            "invoice_number": a.number,
            "invoice_id": a.invoice_id,
            "allocated": _money(a.amount_minor, p.currency),
        }
        for p in data.payments
        for a in p.allocations
    ]


def _csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_csv(data: ExportData) -> dict[str, str]:
    """{"invoices.csv": ..., "credit_notes.csv": ..., "payments.csv": ...} (pure)."""
    return {
        "invoices.csv": _csv(INVOICE_COLUMNS, invoice_rows(data)),
        "credit_notes.csv": _csv(CREDIT_NOTE_COLUMNS, credit_note_rows(data)),
        "payments.csv": _csv(PAYMENT_COLUMNS, payment_rows(data)),
    }


def to_json(data: ExportData) -> str:
    """One JSON object: tenant, month, invoices, credit_notes (with lines), payments (with allocations) (pure)."""
    notes = credit_note_rows(data)
    for row, cn in zip(notes, data.credit_notes, strict=True):
        row["lines"] = [{"description": x.description, "amount": _money(x.amount_minor, cn.currency)} for x in cn.lines]  # type: ignore[assignment]
    payments = [
        {
            "reference": p.reference,
            "paid_on": p.paid_on.isoformat(),
            "customer": p.customer,
            "currency": p.currency,
            "amount": _money(p.amount_minor, p.currency),
            "allocations": [
                {"invoice_number": a.number, "invoice_id": a.invoice_id, "amount": _money(a.amount_minor, p.currency)}
                for a in p.allocations
            ],
        }
        for p in data.payments
    ]
    body = {
        "tenant": data.tenant,
        "month": data.month,
        "invoices": invoice_rows(data),
        "credit_notes": notes,
        "payments": payments,
    }
    return json.dumps(body, ensure_ascii=False, indent=2)


__all__ = [
    "CREDIT_NOTE_COLUMNS",
    "INVOICE_COLUMNS",
    "PAYMENT_COLUMNS",
    "ExportData",
    "month_bounds",
    "read_month",
    "to_csv",
    "to_json",
]
