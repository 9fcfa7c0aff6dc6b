"""Lago-compatible invoices and credit notes at /compat/lago/api/v1, over the invoice store (docs/lago.md).

`invoices.find_all` (filters: `list_invoices_route`), `invoices.find`, `invoices.update` (`payment_status`:
`update_payment_status`), `invoices.void`, `credit_notes.create`, `credit_notes.find_all` (`external_customer_id`) and
`credit_notes.find` of lago-python-client 1.55. The lists take Lago's `page` (default 1) and `per_page` (default
100, at most 1000) and answer Lago's `meta` (current_page, next_page, prev_page, total_pages, total_count: the
pages of `per_page` rows; a page past the last is empty, with no next and no previous page), in the order of the
own API (invoices: issue date, number, drafts last; credit notes: the order issued; entities/invoice_lists.py).
The objects are built from the store's record (number, status, dates, what was paid and credited) and the
invoice's document (lines -> `fees`, discounts -> coupons, taxes), in integer minor units (`*_cents`); rates
are percentages (20.0) as in Lago.

How Meterstream's invoice maps onto Lago's (version 3 amounts, as Lago defines them):
- `lago_id` is Meterstream's invoice id; `status` draft | finalized | voided (finalized, partially paid, paid and
  overdue are all `finalized`); `payment_status` `succeeded` once nothing is due (paid), else `pending`;
  `payment_overdue` for overdue; a draft's `number` is `DRAFT` (numbers are given at finalization);
- `fees_amount_cents` = subtotal (the lines), `coupons_amount_cents` = discount total,
  `sub_total_excluding_taxes_amount_cents` = fees - coupons, `taxes_amount_cents` = tax total,
  `sub_total_including_taxes_amount_cents` = the document's total, `prepaid_credit_amount_cents` = credits
  applied, `total_amount_cents` = total - prepaid credits (what the invoice asks for);
  `total_offsetted_credit_note_amount_cents` = credit notes issued against it, `total_paid_amount_cents` =
  payments, `total_due_amount_cents` = what is still due;
- each line is a fee: `amount_cents` before coupons (`precise_coupons_amount_cents` holds its share of them),
  `taxes_amount_cents`, `total_amount_cents` = amount + taxes, `units` = quantity, `lago_id` a stable UUID.

A credit note's items name fees of the invoice; its total is the sum of the items (credit notes carry no tax of
their own). Meterstream keeps no customer balance, so the note cancels what is still due on the invoice first
(`offset_amount_cents`) and the rest is owed back (`refund_amount_cents`, `refund_status: pending`);
`credit_amount_cents` is always 0. The request's credit/refund/offset split, when given, must add up to the
items' total; the split applied is the one above.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.compat import LagoCompat
from meterstream.api.compat.lago.customers import customer_object
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.api.compat.lago.responses import empty_meta, error_body, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body, _compat
from meterstream.api.routes.billing import finalize_draft, refresh_draft
from meterstream.api.routes.invoices import reactivate_after
from meterstream.documents.stored import StoredDocumentError, document_of
from meterstream.entities import credit_notes, invoice_lists, invoices, payments
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import CustomerRepository, get_customer_doc
from meterstream.entities.invoice_rules import DRAFT, OVERDUE, PAID, STATUSES, VOIDED, from_minor, to_minor
from meterstream.entities.keys import Principal
from meterstream.invoice_emitter.one_off import ADD_ON_KEY, ONE_OFF_PERIOD, is_add_on_line
from meterstream.schemas.event import format_time
from meterstream.schemas.invoice import InvoiceDoc, InvoiceLine

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)
REASONS = ("duplicated_charge", "product_unsatisfactory", "order_change", "order_cancellation",
           "fraudulent_charge", "other")  # fmt: skip
LAGO_STATUSES = {"draft": (DRAFT,), "finalized": ("finalized", "partially_paid", PAID, OVERDUE),
                 "voided": (VOIDED,), "pending": (), "failed": ()}  # fmt: skip
PAYMENT_STATUSES = ("pending", "succeeded", "failed")
PER_PAGE = 100  # Lago's default
_encode = msgspec.json.Encoder(decimal_format="number").encode  # rates as JSON numbers (20.0), exact text


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_encode(body), status, media_type="application/json")


def _invalid(field: str, reason: str) -> Response:
    return _json(validation_error({field: [reason]}), 422)


# --- OpenAPI models (the handlers encode themselves) ---------------------------------------------------


class FeeItem(m._Open):
    type: str
    code: str
    name: str
    lago_item_id: str
    item_type: str


class FeeObject(m._Open):
    lago_id: str
    lago_invoice_id: str
    amount_cents: int
    amount_currency: str
    taxes_amount_cents: int
    taxes_rate: float = Field(description="A percentage: 20.0 is 20 %.")
    total_amount_cents: int
    units: str
    payment_status: Literal["pending", "succeeded", "failed"]
    item: FeeItem


class InvoiceObject(m._Open):
    lago_id: str = Field(description="Meterstream's invoice id.")
    number: str = Field(description="DRAFT until finalized.")
    issuing_date: str
    payment_due_date: str
    payment_overdue: bool
    net_payment_term: int
    invoice_type: str
    version_number: int
    status: Literal["draft", "finalized", "voided"]
    payment_status: Literal["pending", "succeeded", "failed"]
    currency: str
    fees_amount_cents: int
    coupons_amount_cents: int
    taxes_amount_cents: int
    credit_notes_amount_cents: int
    progressive_billing_credit_amount_cents: int
    sub_total_excluding_taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    prepaid_credit_amount_cents: int
    total_amount_cents: int
    total_due_amount_cents: int
    total_paid_amount_cents: int
    total_offsetted_credit_note_amount_cents: int
    customer: dict[str, Any] | None
    fees: list[FeeObject]


class InvoiceOut(BaseModel):
    invoice: InvoiceObject


class InvoicesOut(BaseModel):
    invoices: list[InvoiceObject]
    meta: m.Meta


class CreditNoteItemIn(BaseModel):
    fee_id: str
    amount_cents: int


class CreditNoteIn(BaseModel):
    invoice_id: str
    reason: Literal[REASONS] | None = None  # type: ignore[valid-type]
    description: str | None = None
    credit_amount_cents: int | None = None
    refund_amount_cents: int | None = None
    offset_amount_cents: int | None = None
    items: list[CreditNoteItemIn]


class CreditNoteInput(BaseModel):
    credit_note: CreditNoteIn


class InvoiceUpdateIn(BaseModel):
    payment_status: Literal["pending", "succeeded", "failed"] | None = None
    metadata: list[dict[str, Any]] | None = None


class InvoiceUpdateInput(BaseModel):
    invoice: InvoiceUpdateIn


class CreditNoteObject(m._Open):
    lago_id: str
    number: str
    lago_invoice_id: str
    invoice_number: str
    issuing_date: str
    reason: str
    currency: str
    total_amount_cents: int
    credit_amount_cents: int
    balance_amount_cents: int
    refund_amount_cents: int
    offset_amount_cents: int
    taxes_amount_cents: int
    taxes_rate: float
    sub_total_excluding_taxes_amount_cents: int
    coupons_adjustment_amount_cents: int


class CreditNoteOut(BaseModel):
    credit_note: CreditNoteObject


class CreditNotesOut(BaseModel):
    credit_notes: list[CreditNoteObject]
    meta: m.Meta


class CreditNoteEstimateItemIn(BaseModel):
    fee_id: str
    amount_cents: int


class CreditNoteEstimateIn(BaseModel):
    invoice_id: str
    items: list[CreditNoteEstimateItemIn]


class CreditNoteEstimateInput(BaseModel):
    credit_note: CreditNoteEstimateIn


class EstimatedItem(BaseModel):
    amount_cents: int
    lago_fee_id: str | None


class EstimatedCreditNote(m._Open):
    lago_invoice_id: str
    invoice_number: str
    currency: str
    taxes_amount_cents: int
    taxes_rate: float
    sub_total_excluding_taxes_amount_cents: int
    max_creditable_amount_cents: int
    max_refundable_amount_cents: int
    max_offsettable_amount_cents: int
    coupons_adjustment_amount_cents: int
    items: list[EstimatedItem]
    applied_taxes: list[dict[str, Any]]


class CreditNoteEstimateOut(BaseModel):
    estimated_credit_note: EstimatedCreditNote


# --- objects (pure) ------------------------------------------------------------------------------------


def _cents(value: Decimal, currency: str) -> int:
    return to_minor("amount", value, currency, allow_negative=True)


def _percent(rate: Decimal) -> Decimal:
    """A rate (0.0725) as Lago's percentage (7.25; 20 rather than 2E+1), exact."""
    if not rate:
        return Decimal("0.0")
    percent = (rate * 100).normalize()
    return percent.quantize(Decimal(1)) if percent.as_tuple().exponent > 0 else percent  # type: ignore[operator]


def fee_id(tenant: str, invoice_id: str, line_no: int) -> str:
    return lago_uuid(tenant, "fee", invoice_id, str(line_no))


def payment_status(record: invoices.Invoice) -> str:
    return "succeeded" if record.status == PAID else "pending"


def lago_status(record: invoices.Invoice) -> str:
    return record.status if record.status in (DRAFT, VOIDED) else "finalized"


def fee_item(tenant: str, line: InvoiceLine) -> dict[str, Any]:
    """The fee's `item`: the billable metric of a usage fee, the add-on of a one-off invoice's fee
    (invoice_emitter/one_off.py; `lago_item_id` is the add-on's `lago_id`), else the subscription."""
    if is_add_on_line(line.line_key):
        add_on_id = (line.line_key or "").removeprefix(ADD_ON_KEY)
        return {"type": "add_on", "code": line.code, "name": line.description, "invoice_display_name": line.description,
                "lago_item_id": add_on_id, "item_type": "AddOn"}  # fmt: skip
    usage = line.kind in ("usage", "adjustment")
    return {"type": "charge" if usage else "subscription", "code": line.code, "name": line.description,
            "invoice_display_name": line.description, "lago_item_id": lago_uuid(tenant, "item", line.code),
            "item_type": "BillableMetric" if usage else "Subscription"}  # fmt: skip


def fee_object(record: invoices.Invoice, line: InvoiceLine) -> dict[str, Any]:
    c = record.currency
    amount, tax = _cents(line.amount, c), _cents(line.tax_amount, c)
    return {
        "lago_id": fee_id(record.tenant, record.invoice_id, line.line_no), "lago_charge_id": None,
        "lago_invoice_id": record.invoice_id, "external_customer_id": record.customer,
        "external_subscription_id": line.subscription, "amount_cents": amount, "amount_currency": c,
        "precise_amount": str(line.precise_amount if line.precise_amount is not None else line.amount),
        "precise_coupons_amount_cents": str(_cents(line.discount_amount, c)),
        "taxes_amount_cents": tax, "taxes_rate": _percent(line.tax_rate), "total_amount_cents": amount + tax,
        "total_amount_currency": c, "units": str(line.quantity), "total_aggregated_units": str(line.quantity),
        "precise_unit_amount": str(line.unit_price) if line.unit_price is not None else None,
        "events_count": line.events, "payment_status": payment_status(record), "description": line.description,
        "pay_in_advance": False, "invoiceable": True,
        "from_date": format_time(line.start) if line.start else None,
        "to_date": format_time(line.end) if line.end else None,
        "item": fee_item(record.tenant, line),
    }  # fmt: skip


def _invoice_type(record: invoices.Invoice) -> str:
    return "one_off" if record.period == ONE_OFF_PERIOD else "subscription"


def invoice_object(record: invoices.Invoice, doc: InvoiceDoc | None, customer: dict[str, Any] | None) -> dict:
    """Lago's invoice from the record and its document (None: a document that is not an invoice; the amounts
    are then the record's, without fees)."""
    c = record.currency
    if doc is not None:
        fees, coupons, taxes = _cents(doc.subtotal, c), _cents(doc.discount_total, c), _cents(doc.tax_total, c)
        prepaid = _cents(doc.credits_applied, c)
        lines = [fee_object(record, line) for line in doc.lines]
        applied = [{"lago_invoice_id": record.invoice_id, "tax_code": t.tax_code, "tax_name": t.tax_code,
                    "tax_rate": _percent(t.rate), "tax_description": t.mention,
                    "amount_cents": _cents(t.tax_amount, c), "amount_currency": c,
                    "fees_amount_cents": _cents(t.taxable_amount, c)} for t in doc.taxes]  # fmt: skip
    else:
        fees, coupons, taxes, prepaid = record.total_minor, 0, 0, record.total_minor - record.billed_minor
        lines, applied = [], []
    return {
        "lago_id": record.invoice_id, "sequential_id": None, "number": record.number or "DRAFT",
        "issuing_date": record.issue_date.isoformat(), "payment_due_date": record.due_date.isoformat(),
        "payment_overdue": record.status == OVERDUE, "net_payment_term": (record.due_date - record.issue_date).days,
        "invoice_type": _invoice_type(record), "version_number": 3, "status": lago_status(record),
        "payment_status": payment_status(record), "currency": c, "fees_amount_cents": fees,
        "coupons_amount_cents": coupons, "taxes_amount_cents": taxes, "credit_notes_amount_cents": 0,
        "progressive_billing_credit_amount_cents": 0, "sub_total_excluding_taxes_amount_cents": fees - coupons,
        "sub_total_including_taxes_amount_cents": fees - coupons + taxes, "prepaid_credit_amount_cents": prepaid,
        "total_amount_cents": record.billed_minor, "total_due_amount_cents": record.amount_due_minor,
        "total_paid_amount_cents": record.paid_minor, "total_offsetted_credit_note_amount_cents": record.credited_minor,
        "voided_at": format_time(record.voided_at) if record.voided_at else None, "file_url": None,
        "customer": customer, "fees": lines, "applied_taxes": applied,
        "meterstream": {"status": record.status, "period": record.period, "amount_due": str(record.amount_due)},
    }  # fmt: skip


_REFUND_STATUS = {credit_notes.REFUND_DUE: "pending", credit_notes.REFUNDED: "succeeded"}


def split_reason(stored: str) -> tuple[str, str | None]:
    """(Lago reason, description) of a stored reason `<reason>: <description>` (or free text: other)."""
    head, sep, rest = stored.partition(": ")
    if head in REASONS:
        return head, (rest or None) if sep else None
    return ("other", stored) if stored not in REASONS else (stored, None)


def credit_note_object(note: credit_notes.CreditNote) -> dict[str, Any]:
    reason, description = split_reason(note.reason)
    created = format_time(note.created_at)
    return {
        "lago_id": note.credit_note_id, "sequential_id": None, "billing_entity_code": None, "number": note.number,
        "lago_invoice_id": note.invoice_id, "invoice_number": note.invoice_number,
        "issuing_date": note.issue_date.isoformat(), "credit_status": None,
        "refund_status": _REFUND_STATUS.get(note.status) if note.refund_minor else None, "reason": reason,
        "description": description,
        "currency": note.currency, "total_amount_cents": note.total_minor, "credit_amount_cents": 0,
        "balance_amount_cents": 0, "refund_amount_cents": note.refund_minor, "offset_amount_cents": note.credit_minor,
        "taxes_amount_cents": 0, "taxes_rate": Decimal("0.0"),
        "sub_total_excluding_taxes_amount_cents": note.total_minor, "coupons_adjustment_amount_cents": 0,
        "created_at": created, "updated_at": created, "file_url": None,
        "items": [{"lago_id": f"{note.credit_note_id}:{i + 1}", "amount_cents": line.amount_minor,
                   "amount_currency": note.currency, "fee": None, "description": line.description}
                  for i, line in enumerate(note.lines)],
        "applied_taxes": [],
        "meterstream": {"status": note.status, "customer": note.customer,
                        "refunded_on": note.refunded_on.isoformat() if note.refunded_on else None},
    }  # fmt: skip


# --- store calls ---------------------------------------------------------------------------------------


def _customer(sf: sessionmaker, record: invoices.Invoice) -> dict[str, Any] | None:
    """Lago's customer object of the invoice's customer, when the store has it (else null)."""
    try:
        return stored_customer_object(sf, record.tenant, record.customer)
    except NotFound:
        return None


def stored_customer_object(sf: sessionmaker, tenant: str, external_id: str) -> dict[str, Any]:
    """Lago's customer object of a stored customer (what `GET /customers/{external_id}` answers); NotFound."""
    doc = get_customer_doc(sf, tenant, external_id)
    row = CustomerRepository(sf).get(tenant, external_id)
    return customer_object(doc, row.created_at, row.updated_at)


def stored_invoice_object(sf: sessionmaker, record: invoices.Invoice, customers: dict[str, Any]) -> dict[str, Any]:
    """Lago's invoice of a stored record (`customers`: the customer objects read so far, by customer), as the
    invoice routes answer it and Lago-format webhooks carry it (api/compat/lago/webhooks.py)."""
    try:
        doc: InvoiceDoc | None = document_of(record.document)
    except StoredDocumentError:
        doc = None
    if record.customer not in customers:
        customers[record.customer] = _customer(sf, record)
    return invoice_object(record, doc, customers[record.customer])


def _object(compat: LagoCompat, record: invoices.Invoice, customers: dict[str, Any]) -> dict[str, Any]:
    return stored_invoice_object(compat.state.sessions, record, customers)


def _cents_arg(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(field, "an integer number of cents")
    return value


def _credit_lines(record: invoices.Invoice, doc: InvoiceDoc, items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not items:
        raise Invalid("items", "a non-empty list of {fee_id, amount_cents}")
    by_id = {fee_id(record.tenant, record.invoice_id, line.line_no): line for line in doc.lines}
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"items[{i}]", "an object with fee_id and amount_cents")
        wanted = item.get("fee_id")
        line = by_id.get(wanted) if isinstance(wanted, str) else None
        if line is None:
            raise Invalid(f"items[{i}].fee_id", f"not a fee of invoice {record.invoice_id!r}")
        cents = _cents_arg(f"items[{i}].amount_cents", item.get("amount_cents"))
        most = _cents(line.amount, record.currency) + _cents(line.tax_amount, record.currency)
        if not 0 < cents <= most:
            raise Invalid(f"items[{i}].amount_cents", f"between 1 and the fee's {most} (got {cents})")
        out.append({"description": f"{line.description} (line {line.line_no})",
                    "amount": from_minor(cents, record.currency)})  # fmt: skip
    return out


def _credit_request(sessions, tenant: str, raw: Any) -> tuple[invoices.Invoice, list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """The invoice a credit note request names and its items as credit note lines (checked: `_credit_lines`)."""
    if not isinstance(raw, dict):
        raise Invalid("credit_note", "an object")
    invoice_id = raw.get("invoice_id")
    if not isinstance(invoice_id, str) or not invoice_id:
        raise Invalid("invoice_id", "required")
    record = invoices.get(sessions, tenant, invoice_id)
    try:
        doc = document_of(record.document)
    except StoredDocumentError as exc:
        raise Invalid("invoice_id", str(exc)) from None
    return record, _credit_lines(record, doc, raw.get("items"))


def create_credit_note(sessions, tenant: str, raw: Any) -> credit_notes.CreditNote:  # type: ignore[no-untyped-def]
    record, lines = _credit_request(sessions, tenant, raw)
    reason = raw.get("reason") or "other"
    if reason not in REASONS:
        raise Invalid("reason", f"one of {', '.join(REASONS)}")
    description = raw.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 900):
        raise Invalid("description", "a string of at most 900 characters")
    total = sum(to_minor("amount", x["amount"], record.currency) for x in lines)
    split = {k: raw[k] for k in ("credit_amount_cents", "refund_amount_cents", "offset_amount_cents")
             if raw.get(k) is not None}  # fmt: skip
    if split:
        given = sum(_cents_arg(k, v) for k, v in split.items())
        if given != total:
            raise Invalid("base", f"does_not_match_item_amounts: credit + refund + offset = {given}, items = {total}")
    text = f"{reason}: {description}" if description else reason
    return credit_notes.create_credit_note(sessions, tenant, record.invoice_id, text, lines)


def estimate_credit_note(sessions, tenant: str, raw: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Lago's `estimated_credit_note` of a request as `create_credit_note` would take it, nothing written: the
    items' total, what would cancel the amount due (`max_offsettable_amount_cents`) and what would be owed back
    (`max_refundable_amount_cents`); no credit balance (`max_creditable_amount_cents` 0) and no tax of its own, as
    the credit notes created here."""
    record, lines = _credit_request(sessions, tenant, raw)
    split = credit_notes.estimate_credit_note(sessions, tenant, record.invoice_id, lines)
    items = raw["items"]
    return {
        "lago_invoice_id": record.invoice_id, "invoice_number": record.number or "DRAFT", "currency": record.currency,
        "taxes_amount_cents": 0, "precise_taxes_amount_cents": "0.0", "taxes_rate": Decimal("0.0"),
        "sub_total_excluding_taxes_amount_cents": split.total_minor, "max_creditable_amount_cents": 0,
        "max_refundable_amount_cents": split.refund_minor, "max_offsettable_amount_cents": split.credit_minor,
        "coupons_adjustment_amount_cents": 0, "precise_coupons_adjustment_amount_cents": "0.0",
        "items": [{"amount_cents": item["amount_cents"], "lago_fee_id": item["fee_id"]} for item in items],
        "applied_taxes": [],
    }  # fmt: skip


def payment_reference(invoice_id: str) -> str:
    """The reference of the payment `invoices.update(payment_status="succeeded")` records: one per invoice, so a
    repeated update counts once (entities/payments.py is idempotent on the reference)."""
    ref = f"lago:payment_status:{invoice_id}"
    return ref if len(ref) <= 256 else f"lago:payment_status:{hashlib.sha256(invoice_id.encode()).hexdigest()}"


def update_payment_status(sessions, tenant: str, invoice_id: str, raw: Any) -> invoices.Invoice:  # type: ignore[no-untyped-def]
    """Lago's `invoices.update`: `payment_status: succeeded` records a payment of what is still due (dated today,
    UTC; `payment_reference`), so the invoice is paid as by any payment; `pending` and no status change nothing but
    cannot make a paid invoice unpaid (payments are not undone: 422); `failed` is refused (no payment attempts
    are kept here). Invoice metadata is not kept: a non-empty `metadata` is refused (422)."""
    if not isinstance(raw, dict):
        raise Invalid("invoice", "an object")
    if raw.get("metadata"):
        raise Invalid("metadata", "invoice metadata is not kept here (docs/lago.md)")
    status = raw.get("payment_status")
    record = invoices.get(sessions, tenant, invoice_id)
    if status is None:
        return record
    if status not in PAYMENT_STATUSES:
        raise Invalid("payment_status", f"one of {', '.join(PAYMENT_STATUSES)} (got {status!r})")
    if status == "failed":
        raise Invalid("payment_status", "failed is not kept: no payment attempts are made or recorded here")
    if status == "pending":
        if record.status == PAID:
            raise Invalid("payment_status", "the invoice is paid: payments are not undone (issue a credit note)")
        return record
    if record.status in (DRAFT, VOIDED):
        raise Invalid("payment_status", f"the invoice is {record.status}: nothing is due on it")
    if record.status == PAID or record.amount_due_minor == 0:
        return record
    payments.record_payment(sessions, tenant, amount=from_minor(record.amount_due_minor, record.currency),
                            currency=record.currency, paid_on=datetime.now(UTC).date(),
                            reference=payment_reference(invoice_id), invoice_id=invoice_id)  # fmt: skip
    return invoices.get(sessions, tenant, invoice_id)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


# --- routes --------------------------------------------------------------------------------------------


def _statuses(status: str | None, paid: str | None, overdue: bool | None) -> frozenset[str] | None:
    """The record statuses Lago's filters leave (None: no filter): status through LAGO_STATUSES, payment status
    `succeeded` = paid and `pending` = anything else (`failed` matches none), `payment_overdue` = overdue."""
    if status is None and paid is None and overdue is None:
        return None
    allowed = set(STATUSES) if status is None else set(LAGO_STATUSES[status])
    if paid == "succeeded":
        allowed &= {PAID}
    elif paid == "pending":
        allowed -= {PAID}
    elif paid == "failed":
        allowed = set()
    if overdue is True:
        allowed &= {OVERDUE}
    elif overdue is False:
        allowed -= {OVERDUE}
    return frozenset(allowed)


def paging(page: str | None, per_page: str | None) -> tuple[int, int] | Response:
    """(page, per_page) from Lago's query parameters, or the 422 answer naming the bad one."""
    values = []
    limits = (("page", page, 1, None), ("per_page", per_page, PER_PAGE, invoice_lists.MAX_LIMIT))
    for name, text, default, most in limits:
        if text is None:
            values.append(default)
            continue
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0
        if number < 1 or (most is not None and number > most):
            bound = f"from 1 to {most}" if most is not None else ">= 1"
            return _invalid(name, f"an integer {bound} (got {text!r})")
        values.append(number)
    return values[0], values[1]


def page_meta(page: int, per_page: int, total: int) -> dict[str, Any]:
    """Lago's pagination `meta` for page `page` of `per_page` rows out of `total` (none: page 0 of 0, as Lago)."""
    if total == 0:
        return empty_meta()
    pages = -(-total // per_page)
    return {"current_page": page, "next_page": page + 1 if page < pages else None,
            "prev_page": page - 1 if 1 < page <= pages else None, "total_pages": pages,
            "total_count": total}  # fmt: skip


def _list_invoices(compat: LagoCompat, tenant: str, customer: str | None, statuses: frozenset[str] | None,
                   page: int, per_page: int, where: invoice_lists.InvoiceFilter | None = None,
                   ) -> dict[str, Any]:  # fmt: skip
    found = invoice_lists.invoice_page(compat.state.sessions, tenant, customer=customer, statuses=statuses,
                                       limit=per_page, offset=(page - 1) * per_page, count=True,
                                       where=where)  # fmt: skip
    customers: dict[str, Any] = {}
    return {"invoices": [_object(compat, record, customers) for record in found.items],
            "meta": page_meta(page, per_page, found.total or 0)}  # fmt: skip


@router.get("/invoices", summary="List invoices (Lago: findAllInvoices)", responses=m.answers(InvoicesOut, *READ))
async def list_invoices_route(
    request: Request, principal: Read,
    external_customer_id: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
    payment_status: Annotated[str | None, Query()] = None,
    payment_overdue: Annotated[bool | None, Query()] = None,
    currency: Annotated[str | None, Query(description="ISO 4217")] = None,
    issuing_date_from: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
    issuing_date_to: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
    amount_from: Annotated[str | None, Query(description="total_amount_cents at least this")] = None,
    amount_to: Annotated[str | None, Query(description="total_amount_cents at most this")] = None,
    invoice_type: Annotated[str | None, Query(description="subscription or one_off (the others match none)")] = None,
    search_term: Annotated[str | None, Query(description="in the id, number, customer id, name or email")] = None,
    payment_dispute_lost: Annotated[bool | None, Query(description="true matches none")] = None,
    self_billed: Annotated[bool | None, Query(description="true matches none")] = None,
    page: Annotated[str | None, Query(description="Default 1")] = None,
    per_page: Annotated[str | None, Query(description="Default 100, at most 1000")] = None,
) -> Response:  # fmt: skip
    """Filters: external_customer_id, status (draft, finalized, voided; pending and failed match none),
    payment_status (pending, succeeded, failed), payment_overdue, currency, issuing_date_from/to, amount_from/to
    (`total_amount_cents`, inclusive), invoice_type (subscription, one_off; add_on, credit, advance_charges and
    progressive_billing invoices do not exist here: none), search_term, payment_dispute_lost and self_billed (no
    invoice here is either: `true` matches none); `page` and `per_page` (module docstring)."""
    if status is not None and status not in LAGO_STATUSES:
        return _invalid("status", f"one of {', '.join(LAGO_STATUSES)} (got {status!r})")
    if payment_status is not None and payment_status not in PAYMENT_STATUSES:
        return _invalid("payment_status", f"one of {', '.join(PAYMENT_STATUSES)} (got {payment_status!r})")
    if invoice_type is not None and invoice_type not in INVOICE_TYPES:
        return _invalid("invoice_type", f"one of {', '.join(INVOICE_TYPES)} (got {invoice_type!r})")
    where = _where(currency, issuing_date_from, issuing_date_to, amount_from, amount_to, invoice_type, search_term)
    if isinstance(where, Response):
        return where
    paged = paging(page, per_page)
    if isinstance(paged, Response):
        return paged
    statuses = _statuses(status, payment_status, payment_overdue)
    if payment_dispute_lost or self_billed or invoice_type not in (None, "subscription", "one_off"):
        statuses = frozenset()  # nothing here is such an invoice
    body = await _call(_list_invoices, _compat(request), principal.tenant, external_customer_id, statuses, *paged,
                       where)  # fmt: skip
    return _json(body)


INVOICE_TYPES = ("subscription", "add_on", "credit", "one_off", "advance_charges", "progressive_billing")


def _where(currency: str | None, day_from: str | None, day_to: str | None, amount_from: str | None,
           amount_to: str | None, invoice_type: str | None, search: str | None,
           ) -> invoice_lists.InvoiceFilter | Response:  # fmt: skip
    """The list's filter from Lago's query parameters, or the 422 answer naming the bad one."""
    days: list[date | None] = []
    for name, text in (("issuing_date_from", day_from), ("issuing_date_to", day_to)):
        try:
            days.append(None if text is None else date.fromisoformat(text))
        except ValueError:
            return _invalid(name, f"a date YYYY-MM-DD (got {text!r})")
    amounts: list[int | None] = []
    for name, text in (("amount_from", amount_from), ("amount_to", amount_to)):
        if text is not None and not (text.isascii() and text.isdigit() and len(text) <= 18):
            return _invalid(name, f"a whole number of cents, 0 or more (got {text!r})")
        amounts.append(None if text is None else int(text))
    if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        return _invalid("currency", f"an ISO 4217 code such as EUR (got {currency!r})")
    one_off = {"one_off": True, "subscription": False}.get(invoice_type or "")
    return invoice_lists.InvoiceFilter(currency=currency, issued_from=days[0], issued_to=days[1],
                                       billed_from=amounts[0], billed_to=amounts[1], one_off=one_off,
                                       search=search or None)  # fmt: skip


@router.get("/invoices/{lago_id}", summary="Retrieve an invoice (Lago: findInvoice)",
            responses=m.answers(InvoiceOut, *READ))  # fmt: skip
async def get_invoice_route(request: Request, principal: Read, lago_id: str) -> Response:
    compat = _compat(request)

    def run() -> dict[str, Any]:
        return _object(compat, invoices.get(compat.state.sessions, principal.tenant, lago_id), {})

    try:
        return _json({"invoice": await _call(run)})
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)


@router.post("/invoices/{lago_id}/void", summary="Void a finalized invoice nothing was paid or credited on",
             responses=m.answers(InvoiceOut, *READ, 405))  # fmt: skip
async def void_invoice_route(request: Request, background: BackgroundTasks, principal: Admin, lago_id: str
                             ) -> Response:  # fmt: skip
    """A void that settles what the customer was suspended for (an overdue invoice) reactivates it at once
    (api/routes/invoices.reactivate_after, as /v1 does)."""
    compat = _compat(request)

    def run() -> tuple[invoices.Invoice, dict[str, Any]]:
        voided = invoices.void(compat.state.sessions, principal.tenant, lago_id, "voided through the Lago API")
        return voided, _object(compat, voided, {})

    try:
        voided, body = await _call(run)
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)
    except Conflict as exc:
        return _json(error_body(405, "not_voidable", {"invoice": [str(exc)]}), 405)
    reactivate_after(request, background, principal.tenant, voided.customer)
    return _json({"invoice": body})


@router.put("/invoices/{lago_id}", summary="Update an invoice's payment status (Lago: updateInvoice)",
            responses=m.answers(InvoiceOut, *WRITE, 404), openapi_extra=m.body_schema(InvoiceUpdateInput))  # fmt: skip
async def update_invoice_route(request: Request, background: BackgroundTasks, principal: Admin, lago_id: str
                               ) -> Response:  # fmt: skip
    """`payment_status: succeeded` pays what is due (`update_payment_status`); a payment that settles what the
    customer was suspended for reactivates it at once (api/routes/invoices.reactivate_after, as /v1 does)."""
    raw = await _body(request, "invoice")
    compat = _compat(request)

    def run() -> tuple[invoices.Invoice, dict[str, Any]]:
        record = update_payment_status(compat.state.sessions, principal.tenant, lago_id, raw)
        return record, _object(compat, record, {})

    try:
        record, body = await _call(run)
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)
    except (Invalid, Conflict) as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))
    reactivate_after(request, background, principal.tenant, record.customer)
    return _json({"invoice": body})


@router.put("/invoices/{lago_id}/finalize", summary="Finalize a draft invoice now (Lago: finalizeInvoice)",
            responses=m.answers(InvoiceOut, *READ, 405, 409, 422, 500))  # fmt: skip
async def finalize_invoice_route(request: Request, principal: Admin, lago_id: str) -> Response:
    """The close of the draft's customer and period, run now, its grace period ended (api/routes/billing.py
    `finalize_draft`); 405 `not_finalizable` for an invoice that is not a draft; 409 `close_refused` while the
    period has not ended in the customer's time zone or the pipeline has a backlog."""
    return await _draft_action(request, principal, lago_id, finalize_draft, "not_finalizable")


@router.put("/invoices/{lago_id}/refresh", summary="Bring a draft invoice up to date now (Lago: refreshInvoice)",
            responses=m.answers(InvoiceOut, *READ, 405, 500))  # fmt: skip
async def refresh_invoice_route(request: Request, principal: Admin, lago_id: str) -> Response:
    """The draft's customer priced again now (api/routes/billing.py `refresh_draft`); 405 `not_refreshable` for an
    invoice that is not a draft."""
    return await _draft_action(request, principal, lago_id, refresh_draft, "not_refreshable")


async def _draft_action(request: Request, principal: Principal, lago_id: str,
                        fn: Callable[..., invoices.Invoice], refused: str) -> Response:  # fmt: skip
    compat = _compat(request)

    def run() -> dict[str, Any]:
        return _object(compat, fn(compat.state.sessions, principal.tenant, lago_id), {})

    try:
        return _json({"invoice": await _call(run)})
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)
    except Conflict:
        return _json(error_body(405, refused), 405)


@router.post("/credit_notes", summary="Create a credit note (Lago: createCreditNote)",
             responses=m.answers(CreditNoteOut, *WRITE, 404), openapi_extra=m.body_schema(CreditNoteInput))  # fmt: skip
async def create_credit_note_route(request: Request, background: BackgroundTasks, principal: Admin) -> Response:
    """Items name the invoice's fees (`fee_id`) with `amount_cents`; the note cancels what is due first and
    the rest is owed back (module docstring). 422 `validation_errors` naming the field. A note that settles what
    the customer was suspended for reactivates it at once (api/routes/invoices.reactivate_after)."""
    raw = await _body(request, "credit_note")
    sessions = _compat(request).state.sessions
    try:
        note = await _call(create_credit_note, sessions, principal.tenant, raw)
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)
    except (Invalid, Conflict) as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))
    reactivate_after(request, background, principal.tenant, note.customer)
    return _json({"credit_note": credit_note_object(note)})


@router.post("/credit_notes/estimate", summary="Estimate a credit note, nothing written (Lago: estimateCreditNote)",
             responses=m.answers(CreditNoteEstimateOut, *WRITE, 404, 405),
             openapi_extra=m.body_schema(CreditNoteEstimateInput))  # fmt: skip
async def estimate_credit_note_route(request: Request, principal: Read) -> Response:
    """The same request body and checks as `credit_notes.create` (items naming the invoice's fees); 422 naming the
    field, 404 `invoice_not_found`, 405 `not_creditable` for a draft or voided invoice."""
    raw = await _body(request, "credit_note")
    sessions = _compat(request).state.sessions
    try:
        body = await _call(estimate_credit_note, sessions, principal.tenant, raw)
    except NotFound:
        return _json(error_body(404, "invoice_not_found"), 404)
    except Conflict as exc:
        return _json(error_body(405, "not_creditable", {"invoice": [str(exc)]}), 405)
    except Invalid as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))
    return _json({"estimated_credit_note": body})


@router.put("/credit_notes/{lago_id}", summary="Update a credit note's refund status (Lago: updateCreditNote)",
            responses=m.answers(CreditNoteOut, *WRITE, 404, 405))  # fmt: skip
async def update_credit_note_route(request: Request, principal: Admin, lago_id: str) -> Response:
    """`refund_status: succeeded` records that the refund was paid back today (the own API's
    `POST /v1/credit_notes/{id}/refund`, which also takes the day and the transfer's reference); `pending` leaves a
    note still owed back as it is. `failed`, `metadata` (not kept here) and going back from `succeeded` are 422
    naming the field; a note that owes nothing back is 405 `not_refundable`."""
    raw = await _body(request, "credit_note")
    sessions = _compat(request).state.sessions
    if not isinstance(raw, dict):
        return _invalid("credit_note", "an object")
    if raw.get("metadata") is not None:
        return _invalid("metadata", "credit note metadata is not kept by Meterstream")
    wanted = raw.get("refund_status")
    if wanted not in ("pending", "succeeded"):
        why = "pending or succeeded (a failed refund leaves the note owed back: pending)"
        return _invalid("refund_status", f"{why} (got {wanted!r})")

    def run() -> credit_notes.CreditNote:
        note = credit_notes.get_credit_note(sessions, principal.tenant, lago_id)
        if wanted == "succeeded":
            return credit_notes.mark_refunded(sessions, principal.tenant, lago_id, note.refunded_on,
                                              note.refund_reference)  # fmt: skip
        if note.status == credit_notes.REFUNDED:
            raise Invalid("refund_status", f"refunded on {note.refunded_on}: a refund paid back stays succeeded")
        if note.status != credit_notes.REFUND_DUE:
            raise Conflict("status", f"credit note {note.number} owes nothing back")
        return note

    try:
        note = await _call(run)
    except NotFound:
        return _json(error_body(404, "credit_note_not_found"), 404)
    except Conflict as exc:
        if exc.field == "status":
            return _json(error_body(405, "not_refundable", {"credit_note": [str(exc)]}), 405)
        return _invalid(exc.field or "base", str(exc))
    except Invalid as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))
    return _json({"credit_note": credit_note_object(note)})


@router.put("/credit_notes/{lago_id}/void", summary="Void a credit note's remaining credit (Lago: voidCreditNote)",
            responses=m.answers(CreditNoteOut, *WRITE, 404, 405))  # fmt: skip
async def void_credit_note_route(request: Request, principal: Admin, lago_id: str) -> Response:
    """Lago voids what is left of a note's credit balance (`credit_status: voided`), and refuses a note with none
    left with 405 `no_voidable_amount`. Here no note carries a credit balance (module docstring: `credit_amount_cents`
    and `balance_amount_cents` are 0; the note offsets the invoice or is owed back), so every note answers that
    405; an unknown one 404 `credit_note_not_found`. Nothing is written."""
    try:
        note = await _call(credit_notes.get_credit_note, _compat(request).state.sessions, principal.tenant, lago_id)
    except NotFound:
        return _json(error_body(404, "credit_note_not_found"), 404)
    why = f"credit note {note.number} carries no credit balance (it offsets its invoice or is owed back)"
    return _json(error_body(405, "no_voidable_amount", {"credit_note": [why]}), 405)


@router.get("/credit_notes", summary="List credit notes (Lago: findAllCreditNotes)",
            responses=m.answers(CreditNotesOut, 400, *AUTH))  # fmt: skip
async def list_credit_notes_route(
    request: Request, principal: Read,
    external_customer_id: Annotated[str | None, Query()] = None,
    page: Annotated[str | None, Query(description="Default 1")] = None,
    per_page: Annotated[str | None, Query(description="Default 100, at most 1000")] = None,
) -> Response:  # fmt: skip
    paged = paging(page, per_page)
    if isinstance(paged, Response):
        return paged
    number, size = paged
    found = await _call(lambda: invoice_lists.credit_note_page(
        _compat(request).state.sessions, principal.tenant, customer=external_customer_id, limit=size,
        offset=(number - 1) * size, count=True))  # fmt: skip
    return _json({"credit_notes": [credit_note_object(n) for n in found.items],
                  "meta": page_meta(number, size, found.total or 0)})  # fmt: skip


@router.get("/credit_notes/{lago_id}", summary="Retrieve a credit note (Lago: findCreditNote)",
            responses=m.answers(CreditNoteOut, *READ))  # fmt: skip
async def get_credit_note_route(request: Request, principal: Read, lago_id: str) -> Response:
    try:
        note = await _call(credit_notes.get_credit_note, _compat(request).state.sessions, principal.tenant, lago_id)
    except NotFound:
        return _json(error_body(404, "credit_note_not_found"), 404)
    return _json({"credit_note": credit_note_object(note)})
