"""Lago's fees at /compat/lago/api/v1/fees (lago-python-client: `fees.find_all({...})`, `fees.find(lago_id)`).

A fee is a line of an issued invoice, the same object the invoice carries in `fees` (api/compat/lago/invoices.py
`fee_object`: same `lago_id`, amounts, units, item), with `created_at` = when its invoice was finalized. Which
invoices: the issued ones that stand (finalized, partially paid, paid, overdue); drafts (their lines change until
the close) and voided invoices (their charges were cancelled) have no fees here.

`find_all` filters, as Lago names them: `external_customer_id`, `external_subscription_id` (the line's
subscription), `currency`, `fee_type` (`charge`: usage lines and late-usage adjustments; `subscription`: recurring
fees, one-time charges and minimum true-ups; `add_on`: the fees of one-off invoices, invoice_emitter/one_off.py;
`credit`, `instant_charge`: none here), `billable_metric_code`
(a charge's meter), `payment_status` (`succeeded`: the invoice is paid in full; `pending`: not yet; `failed`,
`refunded`: none here), `created_at_from` / `created_at_to` (inclusive), `event_transaction_id` (Lago's fees of
pay-in-advance charges name the event that made them; no fee here comes from one event: none), `failed_at_*`,
`refunded_at_*` (no fee failed or was refunded: none); `succeeded_at_*` is not supported (422: when an invoice
was paid in full is not kept per fee). `page` / `per_page` as the invoice list. Order: the invoices' (issue date,
number), then the line order.

`find(lago_id)` looks the fee up among the tenant's issued invoices, newest first: the fee ids are stable UUIDs
derived from (tenant, invoice, line number), so the lookup reads each invoice's line count and derives its fee ids
(cost grows with the tenant's invoices: ~40 µs for an invoice of 4 lines here). 404 `fee_not_found`. Lago's
`fees.update` (payment status of pay-in-advance fees) and `fees.destroy` (a pay-in-advance fee not invoiced) have
no object here: not served.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import sessionmaker

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.invoices import (
    READ,
    FeeObject,
    _call,
    _invalid,
    _json,
    fee_id,
    fee_object,
    page_meta,
    paging,
    payment_status,
)
from meterstream.api.compat.lago.responses import error_body
from meterstream.api.compat.lago.routes import PREFIX, TAG, Read, _compat
from meterstream.documents.stored import StoredDocumentError, document_of
from meterstream.entities import invoice_lists, invoices
from meterstream.entities.invoice_rules import OVERDUE, PAID
from meterstream.invoice_emitter.one_off import is_add_on_line
from meterstream.schemas.event import format_time
from meterstream.schemas.invoice import InvoiceLine

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
ISSUED = frozenset({"finalized", "partially_paid", PAID, OVERDUE})  # the invoices whose lines are fees here
FEE_TYPES = ("charge", "add_on", "subscription", "credit", "instant_charge")
CHARGE_KINDS = frozenset({"usage", "adjustment"})  # lines that are Lago `charge` fees; the others `subscription`
FEE_PAYMENT_STATUSES = ("pending", "succeeded", "failed", "refunded")
_SCAN = 500  # invoices read per query while scanning


class FeesOut(BaseModel):
    fees: list[FeeObject]
    meta: m.Meta


class FeeOut(BaseModel):
    fee: FeeObject


@dataclass(frozen=True)
class FeeFilter:
    """What `find_all` keeps (None: no condition); `nothing` when a filter no fee here can match."""

    subscription: str | None = None
    currency: str | None = None
    fee_type: str | None = None
    metric: str | None = None
    payment: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    nothing: bool = False


# --- pure ----------------------------------------------------------------------------------------------


def fee_type(line: InvoiceLine) -> str:
    """Lago's fee type of an invoice line (the `item.type` of `fee_object`)."""
    if is_add_on_line(line.line_key):
        return "add_on"
    return "charge" if line.kind in CHARGE_KINDS else "subscription"


def issued_at(record: invoices.Invoice) -> datetime:
    """When the invoice's fees were created: its finalization (the record's creation for an old record without)."""
    at = record.finalized_at or record.created_at
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def keeps(f: FeeFilter, record: invoices.Invoice, line: InvoiceLine) -> bool:
    """Whether the fee of `line` on `record` passes `f`."""
    if f.nothing:
        return False
    if f.subscription is not None and line.subscription != f.subscription:
        return False
    if f.currency is not None and record.currency != f.currency:
        return False
    kind = fee_type(line)
    if f.fee_type is not None and kind != f.fee_type:
        return False
    if f.metric is not None and (kind != "charge" or line.code != f.metric):
        return False
    if f.payment is not None and payment_status(record) != f.payment:
        return False
    if f.created_from is not None or f.created_to is not None:
        at = issued_at(record)
        if (f.created_from is not None and at < f.created_from) or (f.created_to is not None and at > f.created_to):
            return False
    return True


def fee(record: invoices.Invoice, line: InvoiceLine) -> dict[str, Any]:
    """Lago's fee object: the invoice's fee with the fields of the fees endpoints."""
    return {**fee_object(record, line), "created_at": format_time(issued_at(record)), "succeeded_at": None,
            "failed_at": None, "refunded_at": None, "event_transaction_id": None}  # fmt: skip


class _Lines(msgspec.Struct):
    lines: list[msgspec.Raw]
    document_version: int | None = None  # 1: an old document, counted through its conversion


_count_lines = msgspec.json.Decoder(_Lines).decode


def line_count(document: str) -> int:
    """How many lines a stored document has (numbered 1..n: `schemas.invoice.validate`), without decoding them;
    a version 1 document through its conversion; StoredDocumentError when it is not an invoice."""
    try:
        found = _count_lines(document)
    except msgspec.DecodeError:
        found = None
    if found is None or found.document_version == 1:
        return len(document_of(document).lines)
    return len(found.lines)


# --- store reads ---------------------------------------------------------------------------------------


def issued(sf: sessionmaker, tenant: str, customer: str | None) -> Iterator[invoices.Invoice]:
    """The tenant's issued invoices that stand (`ISSUED`), of one customer when given, in the lists' order."""
    offset = 0
    while True:
        page = invoice_lists.invoice_page(sf, tenant, customer=customer, statuses=ISSUED, limit=_SCAN, offset=offset)
        yield from page.items
        if len(page.items) < _SCAN:
            return
        offset += _SCAN


def list_fees(sf: sessionmaker, tenant: str, customer: str | None, f: FeeFilter, page: int, per_page: int
              ) -> dict[str, Any]:  # fmt: skip
    """One page of the fees passing `f`, with Lago's `meta`."""
    found: list[tuple[invoices.Invoice, InvoiceLine]] = []
    if not f.nothing:
        for record in issued(sf, tenant, customer):
            try:
                doc = document_of(record.document)
            except StoredDocumentError:
                continue  # a document that is not an invoice has no fees (as its invoice object has none)
            found += [(record, line) for line in doc.lines if keeps(f, record, line)]
    start = (page - 1) * per_page
    return {"fees": [fee(record, line) for record, line in found[start : start + per_page]],
            "meta": page_meta(page, per_page, len(found))}  # fmt: skip


def find_fee(sf: sessionmaker, tenant: str, lago_id: str) -> dict[str, Any] | None:
    """The fee with this id among the tenant's issued invoices, newest first; None when there is none."""
    newest_first = sorted(issued(sf, tenant, None), key=lambda r: (r.issue_date, r.number or ""), reverse=True)
    for record in newest_first:
        try:
            n = line_count(record.document)
        except StoredDocumentError:
            continue
        for line_no in range(1, n + 1):
            if fee_id(tenant, record.invoice_id, line_no) == lago_id:
                line = document_of(record.document).lines[line_no - 1]
                return fee(record, line)
    return None


# --- routes --------------------------------------------------------------------------------------------


def _instant(name: str, text: str | None) -> datetime | Response | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return _invalid(name, f"a date and time in ISO 8601 (got {text!r})")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@router.get("/fees", summary="List the fees of issued invoices (Lago: findAllFees)",
            responses=m.answers(FeesOut, *READ, 422))  # fmt: skip
async def list_fees_route(
    request: Request, principal: Read,
    external_customer_id: Annotated[str | None, Query()] = None,
    external_subscription_id: Annotated[str | None, Query()] = None,
    event_transaction_id: Annotated[str | None, Query()] = None,
    currency: Annotated[str | None, Query()] = None,
    fee_type: Annotated[str | None, Query()] = None,
    billable_metric_code: Annotated[str | None, Query()] = None,
    payment_status: Annotated[str | None, Query()] = None,
    created_at_from: Annotated[str | None, Query()] = None,
    created_at_to: Annotated[str | None, Query()] = None,
    succeeded_at_from: Annotated[str | None, Query()] = None,
    succeeded_at_to: Annotated[str | None, Query()] = None,
    failed_at_from: Annotated[str | None, Query()] = None,
    failed_at_to: Annotated[str | None, Query()] = None,
    refunded_at_from: Annotated[str | None, Query()] = None,
    refunded_at_to: Annotated[str | None, Query()] = None,
    page: Annotated[str | None, Query(description="Default 1")] = None,
    per_page: Annotated[str | None, Query(description="Default 100, at most 1000")] = None,
) -> Response:  # fmt: skip
    """The filters and what matches them: the module docstring (api/compat/lago/fees.py)."""
    if fee_type is not None and fee_type not in FEE_TYPES:
        return _invalid("fee_type", f"one of {', '.join(FEE_TYPES)} (got {fee_type!r})")
    if payment_status is not None and payment_status not in FEE_PAYMENT_STATUSES:
        return _invalid("payment_status", f"one of {', '.join(FEE_PAYMENT_STATUSES)} (got {payment_status!r})")
    for name, value in (("succeeded_at_from", succeeded_at_from), ("succeeded_at_to", succeeded_at_to)):
        if value is not None:
            return _invalid(name, "not supported: when an invoice was paid in full is not kept per fee")
    instants = {}
    for name, value in (("created_at_from", created_at_from), ("created_at_to", created_at_to),
                        ("failed_at_from", failed_at_from), ("failed_at_to", failed_at_to),
                        ("refunded_at_from", refunded_at_from), ("refunded_at_to", refunded_at_to)):  # fmt: skip
        at = _instant(name, value)
        if isinstance(at, Response):
            return at
        instants[name] = at
    paged = paging(page, per_page)
    if isinstance(paged, Response):
        return paged
    nothing = (
        event_transaction_id is not None
        or fee_type in ("credit", "instant_charge")
        or payment_status in ("failed", "refunded")
        or any(instants[n] is not None for n in instants if not n.startswith("created"))
    )
    f = FeeFilter(subscription=external_subscription_id, currency=currency.upper() if currency else None,
                  fee_type=fee_type, metric=billable_metric_code, payment=payment_status,
                  created_from=instants["created_at_from"], created_to=instants["created_at_to"],  # type: ignore[arg-type]
                  nothing=nothing)  # fmt: skip
    body = await _call(list_fees, _compat(request).state.sessions, principal.tenant, external_customer_id, f, *paged)
    return _json(body)


@router.get("/fees/{lago_id}", summary="Retrieve a fee of an issued invoice (Lago: findFee)",
            responses=m.answers(FeeOut, *READ))  # fmt: skip
async def get_fee_route(request: Request, principal: Read, lago_id: str) -> Response:
    found = await _call(find_fee, _compat(request).state.sessions, principal.tenant, lago_id)
    if found is None:
        return _json(error_body(404, "fee_not_found"), 404)
    return _json({"fee": found})
