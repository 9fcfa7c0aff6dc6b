"""Finance routes of the key's tenant: invoices, payments, credit notes and month exports (docs/api.md).

- `POST /v1/invoices` {customer, currency?, reference?, fees: [{add_on, units?, unit_amount?, name?, description?,
  from?, to?}]}: a one-off invoice of add-on fees, finalized and numbered at once (invoice_emitter/one_off.py);
- `GET /v1/invoices?customer=&status=&period=&currency=&issued_from=&issued_to=&q=&limit=&cursor=`: the invoice
  records, a page at a time;
  `GET /v1/invoices/{id}`: the invoice document (JSON, version 2); `GET /v1/invoices/{id}.html` and `.pdf`: the
  document rendered (documents/), showing the record's current status; `GET /v1/invoices/{id}/ubl`: the UBL 2.1 /
  EN 16931 e-invoice (documents/ubl.py); `POST /v1/invoices/{id}/void` {reason};
  `POST /v1/invoices/mark_overdue` {today?} (invoices past their due date with something due).
- `POST /v1/payments` {invoice_id or customer, amount, currency, paid_at, reference} and `GET /v1/payments`.
- `POST /v1/credit_notes` {invoice_id, reason, lines | null} and `GET /v1/credit_notes`;
  `POST /v1/credit_notes/estimate` {invoice_id, lines | null}: its total, credit and refund, nothing written;
  `POST /v1/credit_notes/{id}/refund` {refunded_on?, reference?}: the refund was paid back (status `refunded`);
  `GET /v1/credit_notes/{id}.html` and `.pdf`: the credit note the customer receives (documents/credit_note.py);
  `GET /v1/credit_notes/{id}/ubl`: the credit note as UBL 2.1 CreditNote (EN 16931).
- A payment, credit note or void that settles every invoice a customer was suspended for by dunning sends its
  `reactivate` at once, after the answer (`on_settled`, docs/dunning.md), not at the next collections run.

The three lists page by keyset (entities/invoice_lists.py): `limit` (1..1000, default 100) rows after `cursor`,
and the answer's `next_cursor` (null on the last page) is the cursor of the next page.
- `GET /v1/exports/{YYYY-MM}.json` (invoices, credit notes, payments of the month) and `.csv?kind=` (one
  CSV per kind: invoices, credit_notes, payments), from entities/exports.py.

Reads need a `read` key, writes an `admin` key. Errors name the field: 422 `invalid` (a bad body or
parameter, or what the store's rules refuse: an overpayment, another currency, more credit than is left),
404 `not_found`, 409 `conflict` (a transition the status does not allow, a reference recorded with other
content). The store's functions do the work (entities/invoices.py, payments.py, credit_notes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.auth import require
from meterstream.api.errors import ApiError
from meterstream.api.invoices_models import (
    CreditEstimateIn,
    CreditEstimateOut,
    CreditNoteIn,
    CreditNoteList,
    CreditNoteOut,
    InvoiceList,
    InvoiceOut,
    OneOffIn,
    OverdueIn,
    PaymentIn,
    PaymentList,
    PaymentOut,
    RefundIn,
    Status,
    VoidIn,
    credit_note_body,
    invoice_body,
    payment_body,
)
from meterstream.api.routes.billing import finalize_draft, refresh_draft
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.documents.stored import (
    StoredDocumentError,
    document_json,
    document_of,
    render_stored,
    render_stored_credit_note,
)
from meterstream.documents.ubl import to_ubl
from meterstream.entities import credit_notes, exports, invoice_lists, invoices, payments
from meterstream.entities.common import Conflict, NotFound
from meterstream.entities.invoice_lists import InvoiceFilter
from meterstream.entities.invoice_rules import from_minor
from meterstream.entities.keys import Principal
from meterstream.invoice_emitter.dunning_run import OnSettled
from meterstream.invoice_emitter.one_off_store import FeeRequest, issue_one_off

router = APIRouter(route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_READ_ERRORS = errors(401, 403, 404, 422, 429)
_WRITE_ERRORS = errors(401, 403, 404, 409, 422, 429)
_CLOSE_ERRORS = errors(401, 403, 404, 409, 422, 429, 500)  # 500: the close failed
Search = Annotated[str | None, Query(min_length=1, max_length=256, description="Text in the invoice id, its number, "
                                     "the customer's id, name or email (case aside)")]  # fmt: skip
Locale = Annotated[str | None, Query(max_length=35, description="e.g. de_DE (default: the buyer's)")]
_MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}
Limit = Annotated[int, Query(ge=1, le=invoice_lists.MAX_LIMIT, description="Rows per page")]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512, description="The `next_cursor` of the page "
                                     "before (default: the first page)")]  # fmt: skip


def _sessions(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.sessions


def on_settled(app) -> OnSettled | None:  # type: ignore[no-untyped-def]
    """The app's reactivation at once after a payment, credit note or void (invoice_emitter/dunning_run.OnSettled),
    made on first use: only in an app that runs its outbox relay, i.e. owns its Kafka connection (`meterstream serve`,
    `up`). Without it (relay=False) nothing is sent at once and the next collections run reactivates."""
    hook = getattr(app.state, "on_settled", None)
    if hook is None and getattr(app.state, "relay", None) is not None:
        hook = app.state.on_settled = OnSettled(app.state.settings, app.state.sessions)
    return hook


def reactivate_after(request: Request, background: BackgroundTasks, tenant: str, customer: str) -> None:
    """After the answer is sent: the customer's reactivation if this settled what it was suspended for."""
    hook = on_settled(request.app)
    if hook is not None:
        background.add_task(hook, tenant, customer)  # a sync callable: Starlette runs it in its threadpool


# --- invoices ------------------------------------------------------------------------------------------


@router.get("/v1/invoices", tags=["invoices"], response_model=InvoiceList, responses=_READ_ERRORS,
            summary="List invoices, a page at a time (by issue date, number; drafts last)")  # fmt: skip
async def list_invoices(
    request: Request,
    principal: Reader,
    customer: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    status: Status | None = None,
    period: Annotated[
        str | None, Query(min_length=1, max_length=64, description="The close's label, e.g. 2026-11; one-off")
    ] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$", description="ISO 4217")] = None,
    issued_from: Annotated[date | None, Query(description="Issued on or after this day")] = None,
    issued_to: Annotated[date | None, Query(description="Issued on or before this day")] = None,
    q: Search = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    where = InvoiceFilter(currency=currency, issued_from=issued_from, issued_to=issued_to, search=q)
    page = await store(invoice_lists.invoice_page, _sessions(request), principal.tenant, customer=customer,
                       statuses=None if status is None else (status,), period=period, limit=limit,
                       cursor=cursor, where=where)  # fmt: skip
    return {"items": [invoice_body(inv) for inv in page.items], "next_cursor": page.next_cursor}


async def _rendered(request: Request, tenant: str, invoice_id: str, fmt: str, locale: str | None) -> Response:
    inv = await store(invoices.get, _sessions(request), tenant, invoice_id)
    try:
        files = await run_in_threadpool(render_stored, inv.document, inv.number or inv.invoice_id, (fmt,), locale,
                                        inv.status)  # fmt: skip
    except StoredDocumentError as exc:
        raise ApiError(422, "invalid", str(exc), field="document") from None
    except ValueError as exc:  # an unknown locale
        raise ApiError(422, "invalid", str(exc).removeprefix("locale: "), field="locale") from None
    name = f"{inv.number or inv.invoice_id}.{fmt}"
    return Response(files[fmt], media_type=_MEDIA[fmt], headers={"Content-Disposition": f'inline; filename="{name}"'})


@router.post("/v1/invoices", tags=["invoices"], response_model=InvoiceOut, status_code=201,
             responses={200: {"model": InvoiceOut, "description": "Issued before with this `reference`"},
                        **_WRITE_ERRORS},
             summary="Issue a one-off invoice of add-on fees")  # fmt: skip
async def create_one_off(request: Request, response: Response, principal: Admin, body: OneOffIn) -> dict:
    """Finalized and numbered at once (invoice_emitter/one_off.py); 404 naming an unknown customer or add-on, 422
    naming the field, 409 naming `reference` when it was used for other fees."""
    fees = [FeeRequest(f.add_on, f.units, f.unit_amount, f.name, f.description, f.from_, f.to) for f in body.fees]
    sf = _sessions(request)
    issued = await store(issue_one_off, sf, request.app.state.settings, principal.tenant, body.customer, fees,
                         currency=body.currency, reference=body.reference)  # fmt: skip
    if not issued.created:
        response.status_code = 200
    return invoice_body(await store(invoices.get, sf, principal.tenant, issued.doc.id))


@router.get("/v1/invoices/{invoice_id}.html", tags=["invoices"], response_class=Response,
            responses={200: {"content": {"text/html": {}}, "description": "The invoice page"}, **_READ_ERRORS},
            summary="The invoice as an HTML page")  # fmt: skip
async def invoice_html(request: Request, principal: Reader, invoice_id: str, locale: Locale = None) -> Response:
    return await _rendered(request, principal.tenant, invoice_id, "html", locale)


@router.get("/v1/invoices/{invoice_id}.pdf", tags=["invoices"], response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "The invoice PDF"}, **_READ_ERRORS},
            summary="The invoice as a PDF")  # fmt: skip
async def invoice_pdf(request: Request, principal: Reader, invoice_id: str, locale: Locale = None) -> Response:
    return await _rendered(request, principal.tenant, invoice_id, "pdf", locale)


def _ubl(sf, tenant: str, invoice_id: str) -> tuple[invoices.Invoice, bytes]:  # type: ignore[no-untyped-def]
    inv = invoices.get(sf, tenant, invoice_id)
    if inv.status == "draft":
        raise ApiError(409, "conflict", "a draft has no e-invoice: it is issued once the invoice is finalized",
                       field="status")  # fmt: skip
    try:
        return inv, to_ubl(document_of(inv.document))
    except StoredDocumentError as exc:
        raise ApiError(422, "invalid", str(exc), field="document") from None
    except ValueError as exc:  # what an EN 16931 invoice cannot lack, named by the document's field
        field, _, reason = str(exc).partition(": ")
        raise ApiError(422, "invalid", reason or field, field=f"document.{field}" if reason else "document") from None


@router.get("/v1/invoices/{invoice_id}/ubl", tags=["invoices"], response_class=Response,
            responses={200: {"content": {"application/xml": {}}, "description": "The invoice as a UBL 2.1 Invoice "
                             "following EN 16931 (urn:cen.eu:en16931:2017)"}, **errors(401, 403, 404, 409, 422, 429)},
            summary="The e-invoice: UBL 2.1 / EN 16931 XML")  # fmt: skip
async def invoice_ubl(request: Request, principal: Reader, invoice_id: str) -> Response:
    inv, xml = await store(_ubl, _sessions(request), principal.tenant, invoice_id)
    name = f"{inv.number or inv.invoice_id}.xml"
    return Response(xml, media_type="application/xml", headers={
        "Content-Disposition": f'inline; filename="{name}"', "Meterstream-Invoice-Status": inv.status})  # fmt: skip


@router.get("/v1/invoices/{invoice_id}", tags=["invoices"], response_class=Response,
            responses={200: {"content": {"application/json": {"schema": {"type": "object"}}},
                             "description": "The invoice document, version 2 (its JSON Schema: "
                             "schemas/invoice.schema.json)"}, **_READ_ERRORS},
            summary="The invoice document (JSON, version 2)")  # fmt: skip
async def get_invoice(request: Request, principal: Reader, invoice_id: str) -> Response:
    inv = await store(invoices.get, _sessions(request), principal.tenant, invoice_id)
    try:
        body = document_json(inv.document)
    except StoredDocumentError as exc:
        raise ApiError(422, "invalid", str(exc), field="document") from None
    return Response(body, media_type="application/json", headers={"Meterstream-Invoice-Status": inv.status})


@router.post("/v1/invoices/{invoice_id}/void", tags=["invoices"], response_model=InvoiceOut,
             responses=_WRITE_ERRORS, summary="Void a finalized invoice nothing was paid or credited on")  # fmt: skip
async def void_invoice(request: Request, background: BackgroundTasks, principal: Admin, invoice_id: str,
                       body: VoidIn) -> dict:  # fmt: skip
    voided = await store(invoices.void, _sessions(request), principal.tenant, invoice_id, body.reason)
    reactivate_after(request, background, principal.tenant, voided.customer)
    return invoice_body(voided)


@router.post("/v1/invoices/{invoice_id}/refresh", tags=["invoices"], response_model=InvoiceOut,
             responses=_CLOSE_ERRORS, summary="Bring a draft up to date with the usage now")  # fmt: skip
def refresh_invoice(request: Request, principal: Admin, invoice_id: str) -> dict:
    """The draft's customer priced again now (api/routes/billing.py `refresh_draft`); 409 `conflict` naming
    `status` for an invoice that is not a draft."""
    return _closing(refresh_draft, request, principal, invoice_id)


@router.post("/v1/invoices/{invoice_id}/finalize", tags=["invoices"], response_model=InvoiceOut,
             responses=_CLOSE_ERRORS, summary="Finalize a draft now, before its grace period ends")  # fmt: skip
def finalize_invoice(request: Request, principal: Admin, invoice_id: str) -> dict:
    """The close of the draft's customer and period, run now (api/routes/billing.py `finalize_draft`): 409
    `conflict` naming `status` for an invoice that is not a draft, 409 `close_refused` while the period has not
    ended in the customer's time zone or the pipeline has a backlog."""
    return _closing(finalize_draft, request, principal, invoice_id)


def _closing(fn: Callable[..., invoices.Invoice], request: Request, principal: Principal, invoice_id: str) -> dict:
    try:
        return invoice_body(fn(_sessions(request), principal.tenant, invoice_id))
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc), field=exc.field) from None


@router.post("/v1/invoices/mark_overdue", tags=["invoices"], response_model=InvoiceList, responses=_WRITE_ERRORS,
             summary="Mark the tenant's invoices past their due date with something due as overdue")  # fmt: skip
async def mark_overdue(request: Request, principal: Admin, body: OverdueIn | None = None) -> dict:
    """Finalized and partially paid invoices whose due date is before `today` and which still have an amount
    due become `overdue` (on the due date itself they are not). Answers the invoices it changed."""
    today = (body.today if body is not None else None) or datetime.now(UTC).date()
    changed = await store(invoices.mark_overdue, _sessions(request), today, principal.tenant)
    return {"items": [invoice_body(inv) for inv in changed]}


# --- payments ------------------------------------------------------------------------------------------


def _record(sf, tenant: str, body: PaymentIn) -> tuple[payments.Payment, bool]:  # type: ignore[no-untyped-def]
    """(payment, created?): a reference recorded before with the same content is answered 200, not 201."""
    try:
        payments.get_payment(sf, tenant, body.reference)
        existed = True
    except NotFound:
        existed = False
    paid = payments.record_payment(
        sf, tenant, amount=body.amount, currency=body.currency, paid_on=body.paid_at, reference=body.reference,
        invoice_id=body.invoice_id, customer=body.customer,
    )  # fmt: skip
    return paid, not existed


@router.post("/v1/payments", tags=["payments"], response_model=PaymentOut, status_code=201,
             responses={200: {"model": PaymentOut, "description": "This reference was recorded before (same content)"},
                        **_WRITE_ERRORS},
             summary="Record a payment received, for an invoice or a customer's open invoices")  # fmt: skip
async def record_payment(request: Request, response: Response, background: BackgroundTasks, principal: Admin,
                         body: PaymentIn) -> dict:  # fmt: skip
    paid, created = await store(_record, _sessions(request), principal.tenant, body)
    response.status_code = 201 if created else 200
    reactivate_after(request, background, principal.tenant, paid.customer)
    return payment_body(paid)


@router.get("/v1/payments", tags=["payments"], response_model=PaymentList, responses=_READ_ERRORS,
            summary="List payments, a page at a time (by date paid, then the order recorded)")  # fmt: skip
async def list_payments(
    request: Request,
    principal: Reader,
    customer: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    page = await store(invoice_lists.payment_page, _sessions(request), principal.tenant, customer=customer,
                       limit=limit, cursor=cursor)  # fmt: skip
    return {"items": [payment_body(p) for p in page.items], "next_cursor": page.next_cursor}


# --- credit notes --------------------------------------------------------------------------------------


@router.post("/v1/credit_notes", tags=["credit notes"], response_model=CreditNoteOut, status_code=201,
             responses=_WRITE_ERRORS, summary="Issue a credit note against a finalized invoice")  # fmt: skip
async def create_credit_note(request: Request, background: BackgroundTasks, principal: Admin,
                             body: CreditNoteIn) -> dict:  # fmt: skip
    lines = None if body.lines is None else [{"description": x.description, "amount": x.amount} for x in body.lines]
    note = await store(credit_notes.create_credit_note, _sessions(request), principal.tenant, body.invoice_id,
                       body.reason, lines, issue_date=body.issue_date, credit_note_id=body.credit_note_id)  # fmt: skip
    reactivate_after(request, background, principal.tenant, note.customer)
    return credit_note_body(note)


@router.post("/v1/credit_notes/estimate", tags=["credit notes"], response_model=CreditEstimateOut,
             responses=_WRITE_ERRORS,
             summary="What a credit note would do now (checked as issued; nothing written)")  # fmt: skip
async def estimate_credit_note(request: Request, principal: Reader, body: CreditEstimateIn) -> dict:
    lines = None if body.lines is None else [{"description": x.description, "amount": x.amount} for x in body.lines]
    sf = _sessions(request)
    split = await store(credit_notes.estimate_credit_note, sf, principal.tenant, body.invoice_id, lines)
    inv = await store(invoices.get, sf, principal.tenant, body.invoice_id)
    money = {k: str(from_minor(getattr(split, f"{k}_minor"), inv.currency))
             for k in ("total", "credit", "refund", "creditable")}  # fmt: skip
    return {"invoice_id": inv.invoice_id, "currency": inv.currency, **money}


@router.post("/v1/credit_notes/{credit_note_id}/refund", tags=["credit notes"], response_model=CreditNoteOut,
             responses=_WRITE_ERRORS, summary="Record that a credit note's refund was paid back")  # fmt: skip
async def refund_credit_note(request: Request, principal: Admin, credit_note_id: str, body: RefundIn) -> dict:
    """Status `refund_due` -> `refunded` with the day and the transfer's reference; the same call again answers the
    note; 409 `status` for a note that owes nothing back, `refunded_on` for one refunded otherwise; 422
    `refunded_on` before the note's issue date or after today."""
    note = await store(credit_notes.mark_refunded, _sessions(request), principal.tenant, credit_note_id,
                       body.refunded_on, body.reference)  # fmt: skip
    return credit_note_body(note)


@router.get("/v1/credit_notes", tags=["credit notes"], response_model=CreditNoteList, responses=_READ_ERRORS,
            summary="List credit notes, a page at a time (in the order issued)")  # fmt: skip
async def list_credit_notes(
    request: Request,
    principal: Reader,
    invoice_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    customer: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    page = await store(invoice_lists.credit_note_page, _sessions(request), principal.tenant, invoice_id=invoice_id,
                       customer=customer, limit=limit, cursor=cursor)  # fmt: skip
    return {"items": [credit_note_body(cn) for cn in page.items], "next_cursor": page.next_cursor}


def credit_note_file(sf, tenant: str, credit_note_id: str, fmt: str, locale: str | None = None  # type: ignore[no-untyped-def]
                     ) -> tuple[credit_notes.CreditNote, bytes]:  # fmt: skip
    """The credit note as `fmt` (html, pdf: its page; xml: the UBL CreditNote), drawn from its invoice's stored
    document (NotFound: no such note). ApiError 422 naming the field when the invoice's document is not an invoice,
    the e-invoice cannot be made of it, or the locale is unknown."""
    note = credit_notes.get_credit_note(sf, tenant, credit_note_id)
    inv = invoices.get(sf, tenant, note.invoice_id)
    try:
        return note, render_stored_credit_note(inv.document, note, (fmt,), locale)[fmt]
    except StoredDocumentError as exc:
        raise ApiError(422, "invalid", f"its invoice's {exc}", field="invoice.document") from None
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise ApiError(422, "invalid", reason or field, field=field if reason else "invoice") from None


async def _credit_note_rendered(request: Request, tenant: str, credit_note_id: str, fmt: str,
                                locale: str | None) -> Response:  # fmt: skip
    note, data = await store(credit_note_file, _sessions(request), tenant, credit_note_id, fmt, locale)
    disposition = f'inline; filename="{note.number}.{fmt}"'
    return Response(data, media_type=_MEDIA[fmt], headers={"Content-Disposition": disposition})


@router.get("/v1/credit_notes/{credit_note_id}.html", tags=["credit notes"], response_class=Response,
            responses={200: {"content": {"text/html": {}}, "description": "The credit note page"}, **_READ_ERRORS},
            summary="A credit note as HTML (the page its customer receives)")  # fmt: skip
async def credit_note_html(request: Request, principal: Reader, credit_note_id: str, locale: Locale = None) -> Response:
    return await _credit_note_rendered(request, principal.tenant, credit_note_id, "html", locale)


@router.get("/v1/credit_notes/{credit_note_id}.pdf", tags=["credit notes"], response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "The credit note PDF"},
                       **_READ_ERRORS},
            summary="A credit note as PDF (A4)")  # fmt: skip
async def credit_note_pdf(request: Request, principal: Reader, credit_note_id: str, locale: Locale = None) -> Response:
    return await _credit_note_rendered(request, principal.tenant, credit_note_id, "pdf", locale)


@router.get("/v1/credit_notes/{credit_note_id}/ubl", tags=["credit notes"], response_class=Response,
            responses={200: {"content": {"application/xml": {}}, "description": "The credit note as a UBL 2.1 "
                             "CreditNote following EN 16931"}, **_READ_ERRORS},
            summary="The credit note as an e-invoice: UBL 2.1 / EN 16931 XML")  # fmt: skip
async def credit_note_ubl(request: Request, principal: Reader, credit_note_id: str) -> Response:
    note, xml = await store(credit_note_file, _sessions(request), principal.tenant, credit_note_id, "xml")
    return Response(xml, media_type="application/xml",
                    headers={"Content-Disposition": f'inline; filename="{note.number}.xml"'})  # fmt: skip


# --- exports -------------------------------------------------------------------------------------------


@router.get("/v1/exports/{month}.json", tags=["exports"], response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "tenant, month, invoices, "
                             "credit_notes (with lines), payments (with allocations)"}, **_READ_ERRORS},
            summary="A month's finalized invoices, credit notes and payments for an ERP, as JSON")  # fmt: skip
async def export_json(request: Request, principal: Reader, month: str) -> Response:
    data = await store(exports.read_month, _sessions(request), principal.tenant, month)
    return Response(exports.to_json(data).encode(), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{month}.json"'})  # fmt: skip


@router.get("/v1/exports/{month}.csv", tags=["exports"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "One CSV (RFC 4180) of the kind asked"},
                       **_READ_ERRORS},
            summary="A month's invoices, credit notes or payments for an ERP, as CSV")  # fmt: skip
async def export_csv(
    request: Request, principal: Reader, month: str, kind: Literal["invoices", "credit_notes", "payments"] = "invoices"
) -> Response:
    data = await store(exports.read_month, _sessions(request), principal.tenant, month)
    text = exports.to_csv(data)[f"{kind}.csv"]
    return Response(text.encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{month}-{kind}.csv"'})  # fmt: skip
