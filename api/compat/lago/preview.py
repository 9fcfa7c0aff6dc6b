"""Lago's invoice preview (`POST /invoices/preview`, lago-python-client `invoices.preview(InvoicePreview(...))`) of an
existing subscription: the invoice its current billing period would get from the usage so far, priced by the close
itself (`invoice_emitter.subscription_invoice.draft_usage`, as `current_usage` prices it: recurring fees and usage)
and issued as the close issues a draft (`issue_draft` with the store's terms: taxes, the customer's coupons, late
fees waiting for its next invoice, issue and due dates), answered as the invoice routes answer an invoice
(`status: draft`); nothing is written, no coupon is used up. Not in a preview: prepaid credits (the close draws
them when it finalizes) and usage of earlier, closed periods that arrived late (billed on the close's invoice).

The body (no root key, as the SDK sends it): `customer.external_id` (a stored customer) and
`subscriptions.external_ids` naming one of its subscriptions (or none, when the customer has exactly one active
subscription). Lago's other previews — a new subscription (`plan_code`, `subscription_at`, `billing_time`, a customer
not stored yet), a plan change (`subscriptions.plan_code`), a termination (`subscriptions.terminated_at`), coupons
to try (`coupons`), several subscriptions on one invoice — are refused with 422 naming the field (not supported
yet), rather than answered with another invoice than Lago's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from meterstream.api.body import decode_json, read_body
from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.entity_routes import customer_subscription
from meterstream.api.compat.lago.invoices import InvoiceOut, _invalid, _json, stored_invoice_object
from meterstream.api.compat.lago.responses import error_body
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, Read, _compat
from meterstream.api.compat.lago.subscriptions import LagoNotFound, status_of
from meterstream.api.errors import ApiError
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.entities import invoices
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.invoice_rules import DRAFT, to_minor
from meterstream.entities.subscriptions import list_subscriptions
from meterstream.invoice_emitter.issue import Issuing, issue_draft
from meterstream.invoice_emitter.store_terms import with_store_terms
from meterstream.schemas.invoice import InvoiceDoc, encode

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
# Lago previews this layer does not make: the field named in the 422
_NOT_YET = {
    "plan_code": "previews of a new subscription are not supported yet: preview an existing one",
    "subscription_at": "previews of a new subscription are not supported yet",
    "billing_time": "previews of a new subscription are not supported yet",
    "coupons": "previews with coupons to try are not supported yet (the customer's applied coupons are applied)",
    "billing_entity_code": "billing entities are not supported",
}
_SUBSCRIPTIONS_NOT_YET = {
    "plan_code": "previews of a plan change are not supported yet",
    "terminated_at": "previews of a termination are not supported yet",
}


def subscription_to_preview(sf: Any, tenant: str, body: Any, now: datetime) -> tuple[str, str]:
    """(customer, subscription external id) the preview body names; Invalid naming the field, LagoNotFound."""
    if not isinstance(body, dict):
        raise Invalid("customer", "the body must be a JSON object with customer and subscriptions")
    for name, reason in _NOT_YET.items():
        if body.get(name):
            raise Invalid(name, reason)
    customer = body.get("customer")
    external_id = customer.get("external_id") if isinstance(customer, dict) else None
    if not isinstance(external_id, str) or not external_id:
        raise Invalid("customer.external_id", "required: the external id of a stored customer (previews for a "
                      "customer not stored yet are not supported yet)")  # fmt: skip
    subscriptions = body.get("subscriptions") or {}
    if not isinstance(subscriptions, dict):
        raise Invalid("subscriptions", "an object with external_ids")
    for name, reason in _SUBSCRIPTIONS_NOT_YET.items():
        if subscriptions.get(name):
            raise Invalid(f"subscriptions.{name}", reason)
    try:
        get_customer_doc(sf, tenant, external_id)
    except NotFound:
        raise LagoNotFound("customer_not_found", f"customer {external_id!r} not found") from None
    ids = subscriptions.get("external_ids")
    if ids is None:
        active = [s.external_id for s in list_subscriptions(sf, tenant, external_id) if status_of(s, now) == "active"]
        if len(active) != 1:
            raise Invalid("subscriptions.external_ids", f"name the subscription to preview (customer {external_id!r} "
                          f"has {len(active)} active)")  # fmt: skip
        return external_id, active[0]
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids) or not ids:
        raise Invalid("subscriptions.external_ids", "a list of subscription external ids")
    if len(ids) > 1:
        raise Invalid("subscriptions.external_ids", "one subscription per preview (several on one invoice are not "
                      "supported yet)")  # fmt: skip
    _customer, sub = customer_subscription(sf, tenant, external_id, ids[0])
    return external_id, sub.external_id


def preview_record(doc: InvoiceDoc, now: datetime) -> invoices.Invoice:
    """An in-memory draft record of an issued draft document (never stored), for `stored_invoice_object`."""
    encoded = encode(doc).decode()
    total, due = to_minor("total", doc.total, doc.currency), to_minor("amount_due", doc.amount_due, doc.currency)
    return invoices.Invoice(
        tenant=doc.tenant, invoice_id=doc.id, customer=doc.customer, period=doc.period, currency=doc.currency,
        status=DRAFT, total_minor=total, billed_minor=due, credited_minor=0, paid_minor=0, amount_due_minor=due,
        issue_date=doc.issue_date, due_date=doc.due_date, document=encoded, issuer=None, series=None, number=None,
        finalized_at=None, voided_at=None, void_reason=None, version=0, created_at=now, updated_at=now,
    )  # fmt: skip


class PreviewCustomer(BaseModel):
    external_id: str


class PreviewSubscriptions(BaseModel):
    external_ids: list[str] | None = None


class PreviewInput(BaseModel):
    customer: PreviewCustomer
    subscriptions: PreviewSubscriptions | None = None


@router.post("/invoices/preview", summary="Preview a subscription's current invoice (Lago: invoicePreview)",
             responses=m.answers(InvoiceOut, 400, *AUTH, 404, 422, 503),
             openapi_extra=m.body_schema(PreviewInput))  # fmt: skip
async def preview_route(request: Request, principal: Read) -> Response:
    """The invoice the subscription's current billing period would get from the usage so far (module docstring);
    nothing is written. 404 `customer_not_found` / `subscription_not_found`; 503 while ClickHouse is unreachable."""
    body = decode_json(await read_body(request, request.app.state.settings.api_max_body_bytes))
    compat = _compat(request)
    sf, queries, settings = compat.state.sessions, compat.state.queries, request.app.state.settings
    tenant = principal.tenant

    def run() -> dict[str, Any]:
        now = datetime.now(UTC)
        customer, subscription = subscription_to_preview(sf, tenant, body, now)
        v1 = compat.draft_usage(queries.client(), queries.db, sf, tenant, subscription, now)
        # issued as the close issues its drafts: taxes, the customer's coupons, pending late fees, dates
        issuing = with_store_terms(Issuing.from_settings(settings), sf, v1["period"])
        doc = issue_draft(v1, issuing, get_customer_doc(sf, tenant, customer))
        return stored_invoice_object(sf, preview_record(doc, now), {})

    try:
        invoice = await run_in_threadpool(run)
    except LagoNotFound as exc:
        return _json(error_body(404, exc.code), 404)
    except Invalid as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))
    except ClickHouseUnavailable as exc:
        raise ApiError(503, "unavailable", f"usage store unavailable: {exc}", headers={"Retry-After": "1"}) from None
    except ValueError as exc:  # the close cannot bill it (e.g. a plan it cannot resolve): said, not a 500
        return _invalid("subscriptions.external_ids", str(exc))
    return _json({"invoice": invoice})
