"""Lago's analytics at /compat/lago/api/v1/analytics (lago-python-client 1.55: `gross_revenues`,
`invoice_collections`, `overdue_balances`, `invoiced_usages`, `mrrs`, each `find_all({...})`).

The figures are the own API's (`/v1/analytics/...`, entities/invoice_figures.py; docs/lago.md says where they
differ from Lago's): query `currency` (upper-cased, as Lago), `months` (the current month and the `months - 1`
before it; 1 or less: the current month), and `external_customer_id` (Lago reads it on gross revenue and overdue
balances; here on every figure). `month` is the month's first instant in UTC (`2026-11-01T00:00:00.000Z`), amounts
in integer cents. As Lago, `invoice_collection` and `mrr` answer every month of the window, a month without figures
as one row with `currency` null (dropped when a currency is asked for).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago.invoices import _invalid, _json
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, Read
from meterstream.api.routes.analytics import today
from meterstream.entities import figures
from meterstream.entities.invoice_figures import add_months, month_window
from meterstream.schemas.event import format_time

router = APIRouter(prefix=f"{PREFIX}/api/v1/analytics", tags=[TAG])
_INTEGER = re.compile(r"-?[0-9]{1,9}")  # Lago reads `months` with to_i: 1 or less is the current month
_ANSWERS = {code: {"description": "Lago's error body"} for code in (*AUTH, 422)}


def _month(month: date) -> str:
    return format_time(datetime(month.year, month.month, 1, tzinfo=UTC))


def _gross(r: Any) -> dict[str, Any]:
    return {"month": _month(r.month), "amount_cents": r.amount_minor, "currency": r.currency,
            "invoices_count": r.invoices}  # fmt: skip


def _collection(r: Any) -> dict[str, Any]:
    return {"month": _month(r.month), "payment_status": r.payment_status, "currency": r.currency,
            "invoices_count": r.invoices, "amount_cents": r.amount_minor}  # fmt: skip


def _overdue(r: Any) -> dict[str, Any]:
    return {"month": _month(r.month), "amount_cents": r.amount_minor, "currency": r.currency,
            "lago_invoice_ids": list(r.invoice_ids)}  # fmt: skip


def _usage(r: Any) -> dict[str, Any]:
    return {"month": _month(r.month), "code": r.meter, "currency": r.currency, "amount_cents": r.amount_minor}


def _mrr(r: Any) -> dict[str, Any]:
    return {"month": _month(r.month), "amount_cents": r.amount_minor, "currency": r.currency}


def _mrr_months(rows: list[Any], when: date, months: int | None, currency: str | None) -> list[dict[str, Any]]:
    """Every month of the window (from the first with MRR when `months` is not given), a month without MRR as
    `{"amount_cents": null, "currency": null}` unless a currency was asked for (Lago's LEFT JOIN)."""
    out = [_mrr(r) for r in rows]
    if currency is not None:
        return out
    first, last = month_window(when, months)
    if first is None:
        first = min((r.month for r in rows), default=last)
    have = {r.month for r in rows}
    month = first
    while month <= last:
        if month not in have:
            out.append({"month": _month(month), "amount_cents": None, "currency": None})
        month = add_months(month, 1)
    out.sort(key=lambda body: (body["month"], body["currency"] or ""))
    return out


_SHAPES: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "gross_revenue": ("gross_revenues", _gross),
    "invoice_collection": ("invoice_collections", _collection),
    "overdue_balance": ("overdue_balances", _overdue),
    "invoiced_usage": ("invoiced_usages", _usage),
    "mrr": ("mrrs", _mrr),
}


async def _answer(request: Request, tenant: str, name: str, currency: str | None, months: str | None,
                  customer: str | None) -> Response:  # fmt: skip
    count = None
    if months is not None:
        if _INTEGER.fullmatch(months) is None:
            return _invalid("months", f"an integer (got {months!r})")
        count = int(months)
    code = currency.upper() if currency else None
    when = today()
    rows = await run_in_threadpool(figures.figure, request.app.state.sessions, tenant, name, when, count, code,
                                   customer or None)  # fmt: skip
    root, shape = _SHAPES[name]
    body = _mrr_months(rows, when, count, code) if name == "mrr" else [shape(r) for r in rows]
    return _json({root: body})


Currency = Annotated[str | None, Query(description="ISO 4217 (upper-cased)")]
Months = Annotated[str | None, Query(description="The current month and the months - 1 before it")]
CustomerId = Annotated[str | None, Query(description="One customer's invoices (or subscriptions: mrr)")]


@router.get("/gross_revenue", summary="Gross revenue by month (Lago: findAllGrossRevenues)", responses=_ANSWERS)
async def gross_revenue_route(request: Request, principal: Read, currency: Currency = None, months: Months = None,
                              external_customer_id: CustomerId = None) -> Response:  # fmt: skip
    return await _answer(request, principal.tenant, "gross_revenue", currency, months, external_customer_id)


@router.get("/invoice_collection", summary="Finalized invoices by month and payment status "
            "(Lago: findAllInvoiceCollections)", responses=_ANSWERS)  # fmt: skip
async def invoice_collection_route(request: Request, principal: Read, currency: Currency = None, months: Months = None,
                                   external_customer_id: CustomerId = None) -> Response:  # fmt: skip
    return await _answer(request, principal.tenant, "invoice_collection", currency, months, external_customer_id)


@router.get("/overdue_balance", summary="Overdue balances by month (Lago: findAllOverdueBalances)",
            responses=_ANSWERS)  # fmt: skip
async def overdue_balance_route(request: Request, principal: Read, currency: Currency = None, months: Months = None,
                                external_customer_id: CustomerId = None) -> Response:  # fmt: skip
    return await _answer(request, principal.tenant, "overdue_balance", currency, months, external_customer_id)


@router.get("/invoiced_usage", summary="Invoiced usage by month and metric (Lago: findAllInvoicedUsages)",
            responses=_ANSWERS)  # fmt: skip
async def invoiced_usage_route(request: Request, principal: Read, currency: Currency = None, months: Months = None,
                               external_customer_id: CustomerId = None) -> Response:  # fmt: skip
    return await _answer(request, principal.tenant, "invoiced_usage", currency, months, external_customer_id)


@router.get("/mrr", summary="Monthly recurring revenue (Lago: findAllMrrs)", responses=_ANSWERS)
async def mrr_route(request: Request, principal: Read, currency: Currency = None, months: Months = None,
                    external_customer_id: CustomerId = None) -> Response:  # fmt: skip
    return await _answer(request, principal.tenant, "mrr", currency, months, external_customer_id)
