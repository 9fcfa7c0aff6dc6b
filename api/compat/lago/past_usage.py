"""Lago's past usage: `GET /compat/lago/api/v1/customers/{external_customer_id}/past_usage`
(lago-python-client: `customers.past_usage(external_customer_id, external_subscription_id, {...})`).

The usage a subscription was invoiced for, one entry per issued invoice that billed one of its periods (finalized,
partially paid, paid or overdue; not drafts, whose period is still open or in grace: that is `current_usage`, nor
voided invoices), newest period first. Each entry is the `customer_usage` object of `current_usage`
(api/compat/lago/usage.py: `charges_usage` per billable metric with `units`, `events_count`, `amount_cents`) over
the invoice's usage lines of that subscription, as they were invoiced, with:

- `from_datetime` / `to_datetime`: the subscription's billing period on that invoice (its last second, Lago's
  convention), `issuing_date` the invoice's issue date, `lago_invoice_id` the invoice;
- `amount_cents` the usage lines' amounts (before coupons, as Lago), `taxes_amount_cents` the tax invoiced on them,
  `total_amount_cents` their sum.

Query: `external_subscription_id` (required; 404 `subscription_not_found` when it is not the customer's),
`billable_metric_code` (only that meter's charge; a period where it had no usage still answers, with no charge),
`periods_count` (the newest N periods; an integer >= 1, else 422), `page` / `per_page` as the lists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import sessionmaker

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.compat import LagoCompat
from meterstream.api.compat.lago.entity_routes import charge_models, customer_subscription
from meterstream.api.compat.lago.fees import issued
from meterstream.api.compat.lago.invoices import READ, _call, _cents, _invalid, _json, page_meta, paging
from meterstream.api.compat.lago.responses import error_body, validation_error
from meterstream.api.compat.lago.routes import PREFIX, TAG, Read, _compat
from meterstream.api.compat.lago.subscriptions import LagoNotFound
from meterstream.api.compat.lago.usage import ChargeModel, MetricInfo, usage_object
from meterstream.documents.stored import StoredDocumentError, document_of
from meterstream.entities import invoices
from meterstream.schemas.event import format_time
from meterstream.schemas.invoice import InvoiceDoc

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])


class PastUsageOut(BaseModel):
    usage_periods: list[m.CustomerUsageObject]
    meta: m.Meta


# --- pure ----------------------------------------------------------------------------------------------


def usage_period(
    record: invoices.Invoice, doc: InvoiceDoc, subscription: str, metric_code: str | None, tenant: str,
    metric: MetricInfo, charge_model: ChargeModel,
) -> dict[str, Any] | None:  # fmt: skip
    """Lago's usage object of `subscription` on one issued invoice (None: the invoice billed none of its periods)."""
    period = next((p for p in doc.billing_periods if p.subscription == subscription), None)
    lines = [line for line in doc.lines if line.subscription == subscription]
    if period is None and not lines:
        return None
    start, end = (period.start, period.end) if period is not None else (doc.period_start, doc.period_end)
    usage = [line for line in lines if line.kind == "usage" and (metric_code is None or line.code == metric_code)]
    invoice = {
        "currency": doc.currency, "period": doc.period, "plan": doc.plan, "total": format(doc.total, "f"),
        "period_start": format_time(start), "period_end": format_time(end),
        "lines": [{"meter": line.code, "kind": "usage", "quantity": format(line.quantity, "f"),
                   "amount": format(line.amount, "f"), "events": line.events, "plan": line.plan} for line in usage],
    }  # fmt: skip
    body = usage_object(invoice, tenant, metric, charge_model, doc.timezone)
    taxes = 0
    for line in usage:
        taxes += _cents(line.tax_amount, doc.currency)
    body.update({
        "issuing_date": record.issue_date.isoformat(), "lago_invoice_id": record.invoice_id,
        "taxes_amount_cents": taxes, "total_amount_cents": body["amount_cents"] + taxes,
        "meterstream": {"period": doc.period, "period_start": format_time(start), "period_end": format_time(end),
                        "invoice_number": record.number},
    })  # fmt: skip
    return body


# --- store reads ---------------------------------------------------------------------------------------


def _issued_newest_first(sf: sessionmaker, tenant: str, customer: str) -> list[invoices.Invoice]:
    return sorted(issued(sf, tenant, customer), key=lambda r: (r.period, r.issue_date, r.number or ""), reverse=True)


def past_usage(compat: LagoCompat, tenant: str, customer: str, subscription: str, metric_code: str | None,
               periods: int | None, page: int, per_page: int) -> dict[str, Any]:  # fmt: skip
    sf = compat.state.sessions
    customer_subscription(sf, tenant, customer, subscription)  # LagoNotFound naming the unknown one
    metric, charge_model = compat.metric_info(tenant), charge_models(sf, tenant)
    found: list[dict[str, Any]] = []
    for record in _issued_newest_first(sf, tenant, customer):
        if periods is not None and len(found) >= periods:
            break
        try:
            doc = document_of(record.document)
        except StoredDocumentError:
            continue
        entry = usage_period(record, doc, subscription, metric_code, tenant, metric, charge_model)
        if entry is not None:
            found.append(entry)
    start = (page - 1) * per_page
    return {"usage_periods": found[start : start + per_page], "meta": page_meta(page, per_page, len(found))}


# --- route ---------------------------------------------------------------------------------------------


@router.get("/customers/{external_customer_id}/past_usage",
            summary="Usage of the subscription's invoiced periods, as invoiced (Lago: findAllCustomerPastUsage)",
            responses=m.answers(PastUsageOut, *READ, 422))  # fmt: skip
async def past_usage_route(
    request: Request, principal: Read, external_customer_id: str,
    external_subscription_id: Annotated[str | None, Query()] = None,
    billable_metric_code: Annotated[str | None, Query()] = None,
    periods_count: Annotated[str | None, Query()] = None,
    page: Annotated[str | None, Query(description="Default 1")] = None,
    per_page: Annotated[str | None, Query(description="Default 100, at most 1000")] = None,
) -> Response:  # fmt: skip
    """One entry per issued invoice of the subscription, newest period first (api/compat/lago/past_usage.py)."""
    if not external_subscription_id:
        return _json(validation_error({"external_subscription_id": ["required"]}), 422)
    periods = None
    if periods_count is not None:
        ok = periods_count.isascii() and periods_count.isdigit() and len(periods_count) <= 9
        periods = int(periods_count) if ok else 0
        if periods < 1:
            return _invalid("periods_count", f"an integer >= 1 (got {periods_count!r})")
    paged = paging(page, per_page)
    if isinstance(paged, Response):
        return paged
    try:
        body = await _call(past_usage, _compat(request), principal.tenant, external_customer_id,
                           external_subscription_id, billable_metric_code, periods, *paged)  # fmt: skip
    except LagoNotFound as exc:
        return _json(error_body(404, exc.code), 404)
    return _json(body)
