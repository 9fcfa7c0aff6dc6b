"""Monthly finance figures of the key's tenant (docs/analytics.md, "Monthly finance figures"):

- `GET /v1/analytics/gross_revenue`: issued invoices by issue month and currency, what they ask for less refunds;
- `GET /v1/analytics/invoice_collection`: the same by payment status (`succeeded` paid in full, `pending`);
- `GET /v1/analytics/overdue_balance`: what is still due on overdue invoices, by due month, with their ids;
- `GET /v1/analytics/invoiced_usage`: usage lines of issued invoices by issue month, meter and currency;
- `GET /v1/analytics/mrr`: the subscriptions' monthly recurring revenue at each month's end.

Query: `months` (the current month and the `months - 1` before it; default: every month), `currency`, `customer`.
Amounts as decimal text with the currency's digits and as integer minor units. Computed in entities/
invoice_figures.py (pure) from entities/figures.py's reads; Lago's `/analytics/...` answer the same figures.
A `read` key.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from meterstream.api.auth import require
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.entities import figures
from meterstream.entities.invoice_rules import from_minor
from meterstream.entities.keys import Principal

router = APIRouter(route_class=EntityRoute)
Reader = Annotated[Principal, Depends(require("read"))]
Figure = Literal["gross_revenue", "invoice_collection", "overdue_balance", "invoiced_usage", "mrr"]
Months = Annotated[int | None, Query(ge=1, le=1200, description="The current month and the months - 1 before it "
                                     "(default: every month)")]  # fmt: skip
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. EUR")]
Customer = Annotated[str | None, Query(min_length=1, max_length=256)]
assert set(Figure.__args__) == set(figures.FIGURES)  # type: ignore[attr-defined]


class FigureRow(BaseModel):
    month: str  # YYYY-MM
    currency: str | None
    amount: str | None  # decimal text with the currency's digits (None: a month without invoices)
    amount_minor: int
    invoices: int | None = None  # gross_revenue, invoice_collection
    payment_status: Literal["succeeded", "pending"] | None = None  # invoice_collection
    invoice_ids: list[str] | None = None  # overdue_balance
    meter: str | None = None  # invoiced_usage


class FigureList(BaseModel):
    figure: Figure
    months: int | None
    currency: str | None
    customer: str | None
    data: list[FigureRow]


def today() -> date:
    return datetime.now(UTC).date()


def row_body(row: Any) -> dict[str, Any]:
    """One figure row (entities/invoice_figures.py, entities/figures.MonthMrr) as the own API answers it."""
    body: dict[str, Any] = {"month": f"{row.month:%Y-%m}", "currency": row.currency,
                            "amount": None if row.currency is None else str(from_minor(row.amount_minor, row.currency)),
                            "amount_minor": row.amount_minor}  # fmt: skip
    for attr, key in (("invoices", "invoices"), ("payment_status", "payment_status"),
                      ("invoice_ids", "invoice_ids"), ("meter", "meter")):  # fmt: skip
        if hasattr(row, attr):
            value = getattr(row, attr)
            body[key] = list(value) if isinstance(value, tuple) else value
    return body


@router.get("/v1/analytics/{name}", tags=["analytics"], response_model=FigureList, response_model_exclude_none=False,
            responses=errors(401, 403, 422, 429), summary="A monthly finance figure of the tenant")  # fmt: skip
async def analytics_figure(
    request: Request, principal: Reader, name: Figure, months: Months = None, currency: Currency = None,
    customer: Customer = None,
) -> dict[str, Any]:  # fmt: skip
    rows = await store(figures.figure, request.app.state.sessions, principal.tenant, name, today(), months, currency,
                       customer)  # fmt: skip
    return {"figure": name, "months": months, "currency": currency, "customer": customer,
            "data": [row_body(r) for r in rows]}  # fmt: skip
