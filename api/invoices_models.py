"""Pydantic models of the own API's finance routes (/v1/invoices, /v1/payments, /v1/credit_notes): the edge.

Money is a decimal string both ways, in the currency's digits (`120.00`, JPY `1500`); a JSON number is
refused for money (`api.entities_models.Money`). Dates are ISO 8601 (`2026-12-05`), instants RFC 3339 in UTC.
Responses are built from the store's records (entities/invoices.py, credit_notes.py, payments.py) by the
functions at the end of this module.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from meterstream.api.entities_models import Money
from meterstream.entities.credit_notes import CreditNote
from meterstream.entities.invoice_rules import from_minor
from meterstream.entities.invoices import Invoice
from meterstream.entities.payments import Payment

Status = Literal["draft", "finalized", "partially_paid", "paid", "overdue", "voided"]
DecimalText = str  # a decimal string in the currency's digits
Text = Field(min_length=1, max_length=1024)
Id = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- invoices ------------------------------------------------------------------------------------------


class InvoiceOut(BaseModel):
    """An invoice record: who, what period, its number and dates, and where its money stands now."""

    invoice_id: str = Field(description="The close's id of the invoice (stable across re-runs).")
    number: str | None = Field(description="Gapless number given at finalization; null for a draft.")
    status: Status
    customer: str
    period: str
    currency: str
    issue_date: date
    due_date: date
    total: DecimalText = Field(description="The document's total (tax included).")
    billed: DecimalText = Field(description="What the invoice asks for: total minus prepaid credits applied.")
    credited: DecimalText = Field(description="Sum of the credit notes issued against it.")
    paid: DecimalText = Field(description="Sum of the payments allocated to it.")
    amount_due: DecimalText = Field(description="max(0, billed - credited - paid); 0 once voided.")
    issuer: str | None
    series: str | None
    finalized_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    version: int = Field(description="Counts the record's writes.")


_NEXT = Field(None, description="Pass it back as `cursor` for the next page; null on the last page.")


class InvoiceList(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None = _NEXT


class VoidIn(_In):
    reason: str = Text


class OverdueIn(_In):
    today: date | None = Field(None, description="Default: today (UTC). Invoices due before it with something "
                               "still due become overdue.")  # fmt: skip


# --- payments ------------------------------------------------------------------------------------------


class OneOffFeeIn(_In):
    """A fee of a one-off invoice: an add-on (docs/add-ons.md) and what this invoice changes of it."""

    add_on: str = Field(min_length=1, max_length=128, description="The add-on's code.")
    units: Money | None = Field(None, description="How many (more than 0; default 1).")
    unit_amount: Money | None = Field(None, description="Price of one unit in the invoice's currency (default: "
                                      "the add-on's amount, when the add-on is priced in that currency).")  # fmt: skip
    name: str | None = Field(None, min_length=1, max_length=256, description="Default: the add-on's invoice "
                             "display name, else its name.")  # fmt: skip
    description: str | None = Field(None, max_length=1024, description="Text after the name (default: the "
                                    "add-on's description).")  # fmt: skip
    from_: AwareDatetime | None = Field(None, alias="from", description="Start of the service billed (with `to`).")
    to: AwareDatetime | None = Field(None, description="End of the service billed, exclusive (with `from`).")


class OneOffIn(_In):
    """A one-off invoice: add-on fees billed once to a customer, finalized and numbered at once
    (docs/invoice-lifecycle.md, "One-off invoices")."""

    customer: str = Id
    currency: str | None = Field(None, min_length=3, max_length=3, description="ISO 4217; default: the "
                                 "customer's currency.")  # fmt: skip
    reference: str | None = Field(None, min_length=1, max_length=128, description="Your reference of the request: "
                                  "sending it again answers the invoice already issued (200), never a second "
                                  "one; with other fees it is refused (409).")  # fmt: skip
    fees: list[OneOffFeeIn] = Field(min_length=1, max_length=100)


class PaymentIn(_In):
    """A payment received: for one invoice (`invoice_id`) or for a customer's open invoices (`customer`,
    oldest due first). Overpayments and another currency than the invoices' are refused."""

    invoice_id: str | None = Field(None, min_length=1, max_length=256)
    customer: str | None = Field(None, min_length=1, max_length=256)
    amount: Money
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217")
    paid_at: date = Field(description="The day the money was received (ISO 8601 date).")
    reference: str = Field(min_length=1, max_length=256, description="The payer's reference (bank transfer id, "
                           "PSP charge id): recording it again with the same content changes nothing.")  # fmt: skip


class AllocationOut(BaseModel):
    invoice_id: str
    number: str
    amount: DecimalText


class PaymentOut(BaseModel):
    reference: str
    customer: str
    invoice_id: str | None = Field(description="The invoice the payment named, if it named one.")
    currency: str
    amount: DecimalText
    paid_at: date
    allocations: list[AllocationOut] = Field(description="The part of the payment applied to each invoice.")
    created_at: datetime


class PaymentList(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None = _NEXT


# --- credit notes --------------------------------------------------------------------------------------


class CreditLineIn(_In):
    description: str = Text
    amount: Money


class CreditNoteIn(_In):
    invoice_id: str = Field(min_length=1, max_length=256)
    reason: str = Text
    lines: list[CreditLineIn] | None = Field(None, min_length=1, description="null: a full credit note of what "
                                             "the invoice still has to credit.")  # fmt: skip
    credit_note_id: str | None = Field(None, min_length=1, max_length=256, description="Idempotency key: the same "
                                       "id again returns the stored credit note (default: a new ULID).")  # fmt: skip
    issue_date: date | None = Field(None, description="Default: today (UTC).")


class CreditEstimateIn(_In):
    invoice_id: str = Field(min_length=1, max_length=256)
    lines: list[CreditLineIn] | None = Field(None, min_length=1, description="null: a full credit note of what "
                                             "the invoice still has to credit.")  # fmt: skip


class CreditEstimateOut(BaseModel):
    invoice_id: str
    currency: str
    total: DecimalText = Field(description="The credit note's total (the lines').")
    credit: DecimalText = Field(description="What would cancel the amount due.")
    refund: DecimalText = Field(description="What would be owed back (already paid).")
    creditable: DecimalText = Field(description="What the invoice has left to credit, before this note.")


class CreditLineOut(BaseModel):
    description: str
    amount: DecimalText


class CreditNoteOut(BaseModel):
    credit_note_id: str
    number: str
    invoice_id: str
    invoice_number: str
    customer: str
    currency: str
    status: Literal["applied", "refund_due", "refunded"]
    reason: str
    lines: list[CreditLineOut]
    total: DecimalText
    credit: DecimalText = Field(description="The part that reduced the invoice's amount due.")
    refund: DecimalText = Field(description="The part already paid, now owed back to the customer.")
    issue_date: date
    created_at: datetime
    refunded_on: date | None = Field(None, description="The day the refund was paid back (status refunded).")
    refund_reference: str | None = Field(None, description="The transfer or PSP refund that paid it back.")


class RefundIn(_In):
    refunded_on: date | None = Field(None, description="The day the refund was paid back; default: today (UTC).")
    reference: str | None = Field(None, min_length=1, max_length=256, description="The bank transfer or PSP refund.")


class CreditNoteList(BaseModel):
    items: list[CreditNoteOut]
    next_cursor: str | None = _NEXT


# --- records -> bodies ---------------------------------------------------------------------------------


def _money(minor: int, currency: str) -> str:
    return str(from_minor(minor, currency))


def _instant(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def invoice_body(inv: Invoice) -> dict:
    c = inv.currency
    return {
        "invoice_id": inv.invoice_id, "number": inv.number, "status": inv.status, "customer": inv.customer,
        "period": inv.period, "currency": c, "issue_date": inv.issue_date.isoformat(),
        "due_date": inv.due_date.isoformat(), "total": _money(inv.total_minor, c),
        "billed": _money(inv.billed_minor, c), "credited": _money(inv.credited_minor, c),
        "paid": _money(inv.paid_minor, c), "amount_due": _money(inv.amount_due_minor, c), "issuer": inv.issuer,
        "series": inv.series, "finalized_at": _instant(inv.finalized_at), "voided_at": _instant(inv.voided_at),
        "void_reason": inv.void_reason, "version": inv.version,
    }  # fmt: skip


def payment_body(p: Payment) -> dict:
    return {
        "reference": p.reference, "customer": p.customer, "invoice_id": p.invoice_id, "currency": p.currency,
        "amount": _money(p.amount_minor, p.currency), "paid_at": p.paid_on.isoformat(),
        "allocations": [{"invoice_id": a.invoice_id, "number": a.number, "amount": _money(a.amount_minor, p.currency)}
                        for a in p.allocations],
        "created_at": _instant(p.created_at),
    }  # fmt: skip


def credit_note_body(cn: CreditNote) -> dict:
    c = cn.currency
    return {
        "credit_note_id": cn.credit_note_id, "number": cn.number, "invoice_id": cn.invoice_id,
        "invoice_number": cn.invoice_number, "customer": cn.customer, "currency": c, "status": cn.status,
        "reason": cn.reason,
        "lines": [{"description": x.description, "amount": _money(x.amount_minor, c)} for x in cn.lines],
        "total": _money(cn.total_minor, c), "credit": _money(cn.credit_minor, c),
        "refund": _money(cn.refund_minor, c), "issue_date": cn.issue_date.isoformat(),
        "created_at": _instant(cn.created_at),
        "refunded_on": cn.refunded_on.isoformat() if cn.refunded_on else None, "refund_reference": cn.refund_reference,
    }  # fmt: skip
