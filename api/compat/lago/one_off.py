"""Lago's one-off invoice (`POST /invoices`, lago-python-client `invoices.create(OneOffInvoice(...))`) over
`invoice_emitter/one_off_store.py`: add-on fees billed once, finalized and numbered at once (docs/add-ons.md).

The body is Lago's `{"invoice": {external_customer_id, currency, fees: [{add_on_code, units, unit_amount_cents,
invoice_display_name, description, from_datetime, to_datetime, tax_codes}]}}`; the answer is the invoice object
the invoice routes give (`invoice_type: one_off`, each fee's item an `add_on`). Choices where Lago's differ:
- `units` may be a decimal (the SDK sends floats: read by their shortest text, 1.5 stays 1.5); default 1;
- `currency` defaults to the customer's; the add-on's `amount_cents` is the default unit amount only when the
  add-on is priced in the invoice's currency (else `unit_amount_cents` is required: 422 naming it);
- the customer's taxes apply to every fee, as on every invoice: a fee's own `tax_codes` are refused (422
  naming `fees[i].tax_codes`) rather than silently ignored;
- no payment is attempted (Meterstream has no payment provider): the invoice waits for a payment like any other.
Errors: 404 `customer_not_found` / `add_on_not_found`, 422 `validation_errors` naming the field.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.coupons import lago_decimal
from meterstream.api.compat.lago.invoices import InvoiceOut, _invalid, _json, _object
from meterstream.api.compat.lago.responses import error_body
from meterstream.api.compat.lago.routes import PREFIX, TAG, WRITE, Admin, _body, _compat
from meterstream.entities import invoices
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.invoice_rules import check_currency, from_minor
from meterstream.invoice_emitter.one_off_store import FeeRequest, issue_one_off

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])


class OneOffFeeIn(BaseModel):
    add_on_code: str
    units: float | str | None = None
    unit_amount_cents: int | None = None
    invoice_display_name: str | None = None
    description: str | None = None
    from_datetime: str | None = None
    to_datetime: str | None = None
    tax_codes: list[str] | None = None


class OneOffIn(BaseModel):
    external_customer_id: str
    currency: str | None = None
    fees: list[OneOffFeeIn] = Field(min_length=1)


class OneOffInput(BaseModel):
    invoice: OneOffIn


def _text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Invalid(field, "a non-empty string")
    return value


def _instant(field: str, value: Any) -> datetime | None:
    text = _text(field, value)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(field, f"an ISO 8601 time such as 2026-12-01T00:00:00Z (got {text!r})") from None
    if at.tzinfo is None:
        raise Invalid(field, "an ISO 8601 time with a zone (Z or an offset)")
    return at


def _units(field: str, value: Any) -> Decimal:
    """Units as the SDK sends them (a float): 2.0 is 2 units, 1.50 is 1.5 (the line shows the plain number)."""
    units = lago_decimal(field, value)
    if not units.is_finite():
        raise Invalid(field, f"a decimal number (got {value!r})")
    return Decimal(int(units)) if units == units.to_integral_value() else units.normalize()


def _fees(raw: Any, currency: str | None) -> list[FeeRequest]:
    if not isinstance(raw, list) or not raw:
        raise Invalid("fees", "a non-empty list of fees")
    out = []
    for i, fee in enumerate(raw):
        at = f"fees[{i}]"
        if not isinstance(fee, dict):
            raise Invalid(at, "an object with add_on_code")
        code = _text(f"{at}.add_on_code", fee.get("add_on_code"))
        if code is None:
            raise Invalid(f"{at}.add_on_code", "required")
        if fee.get("tax_codes"):
            raise Invalid(f"{at}.tax_codes", "per-fee taxes are not supported: the customer's taxes apply to every "
                                             "fee (docs/add-ons.md)")  # fmt: skip
        units = fee.get("units")
        cents = fee.get("unit_amount_cents")
        if cents is not None and (isinstance(cents, bool) or not isinstance(cents, int) or cents < 0):
            raise Invalid(f"{at}.unit_amount_cents", f"a whole number of cents, 0 or more (got {cents!r})")
        if cents is not None and currency is None:
            raise Invalid("currency", "the customer has no currency: give the invoice's")
        out.append(FeeRequest(
            add_on_code=code, units=None if units is None else _units(f"{at}.units", units),
            unit_amount=None if cents is None else from_minor(cents, currency),  # type: ignore[arg-type]
            name=_text(f"{at}.invoice_display_name", fee.get("invoice_display_name")),
            description=_text(f"{at}.description", fee.get("description")),
            start=_instant(f"{at}.from_datetime", fee.get("from_datetime")),
            end=_instant(f"{at}.to_datetime", fee.get("to_datetime")),
        ))  # fmt: skip
    return out


@router.post("/invoices", summary="Create a one-off invoice (Lago: createInvoice)",
             responses=m.answers(InvoiceOut, *WRITE, 404), openapi_extra=m.body_schema(OneOffInput))  # fmt: skip
async def create_one_off_route(request: Request, principal: Admin) -> Response:
    """Add-on fees billed once (module docstring); the invoice is finalized and numbered at once."""
    raw = await _body(request, "invoice")
    compat = _compat(request)
    sf, settings = compat.state.sessions, request.app.state.settings

    def run() -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise Invalid("invoice", "an object")
        customer = _text("external_customer_id", raw.get("external_customer_id"))
        if customer is None:
            raise Invalid("external_customer_id", "required")
        currency = _text("currency", raw.get("currency"))
        currency = check_currency(currency.upper()) if currency else get_customer_doc(sf, principal.tenant,
                                                                                       customer).currency  # fmt: skip
        issued = issue_one_off(sf, settings, principal.tenant, customer, _fees(raw.get("fees"), currency),
                               currency=currency)  # fmt: skip
        return _object(compat, invoices.get(sf, principal.tenant, issued.doc.id), {})

    try:
        return _json({"invoice": await run_in_threadpool(run)})
    except NotFound as exc:
        code = "add_on_not_found" if "add-on" in str(exc) else "customer_not_found"
        return _json(error_body(404, code), 404)
    except (Invalid, Conflict) as exc:
        return _invalid(exc.field or "base", getattr(exc, "reason", None) or str(exc))


__all__ = ["router"]
