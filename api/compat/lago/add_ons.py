"""Lago's add-ons at /compat/lago/api/v1 over the add-on store (entities/add_ons.py, docs/add-ons.md, docs/lago.md).

`add_ons.create/find/find_all/update/destroy` of lago-python-client work unchanged. Mapping: amount_cents (the
currency's minor units: cents, yen, fils) + amount_currency -> the add-on's amount and currency; tax_codes -> the
tenant's taxes (api/compat/lago/taxes.py: an unknown code is 422 naming `tax_codes`), answered as Lago tax objects
in `taxes` (a tax deleted since is left out). `lago_id` is the add-on's id. `PUT /add_ons/{code}` changes the
fields sent (`code` renames it; amount_currency alone keeps amount_cents); `DELETE` deletes it and answers it.
Errors: 404 `add_on_not_found`, 422 `validation_errors` naming Lago's field (a taken code too, as Lago answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.coupons import Page, PerPage, lago_text
from meterstream.api.compat.lago.responses import error_body, page_of, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body
from meterstream.api.compat.lago.taxes import _json, tax_object
from meterstream.entities import add_ons as store
from meterstream.entities import tax_objects
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.invoice_rules import check_currency, from_minor
from meterstream.schemas.event import format_time

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)
_LAGO_FIELD = {"amount": "amount_cents", "currency": "amount_currency"}  # the store's names -> Lago's


def _cents(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("amount_cents", f"a whole number of the currency's minor units (got {value!r})")
    return value


def _currency(value: Any) -> str:
    try:
        return check_currency(value.upper() if isinstance(value, str) else value)
    except Invalid as exc:
        raise Invalid("amount_currency", exc.reason) from None


def _tax_codes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise Invalid("tax_codes", "an array of tax codes")
    return tuple(value)


def changes_from_lago(raw: Any, current: store.AddOn | None = None) -> dict[str, Any]:
    """The keyword arguments of `store.create_add_on` (`current` None) or `store.update_add_on` an `add_on` body
    makes. For an update only the fields sent change: amount_currency alone keeps amount_cents."""
    if not isinstance(raw, Mapping):
        raise Invalid("add_on", "must be a JSON object")
    out: dict[str, Any] = {}
    for name in ("name", "code"):
        if name in raw or current is None:
            out[name] = lago_text(name, raw.get(name), required=True)
    for name in ("invoice_display_name", "description"):
        if name in raw:
            out[name] = lago_text(name, raw[name]) or None  # Lago: "" is no value
    if current is None:
        currency = _currency(lago_text("amount_currency", raw.get("amount_currency"), required=True))
        if raw.get("amount_cents") is None:
            raise Invalid("amount_cents", "required")
    else:
        sent = raw.get("amount_currency")
        currency = current.currency if sent is None else _currency(sent)
    if raw.get("amount_cents") is not None:
        out["amount"] = from_minor(_cents(raw["amount_cents"]), currency)
    elif current is not None and currency != current.currency:
        out["amount"] = from_minor(current.amount_minor, currency)  # the same amount_cents in the new currency
    if current is None or currency != current.currency:
        out["currency"] = currency
    if raw.get("tax_codes") is not None:
        out["tax_codes"] = _tax_codes(raw["tax_codes"])
    if current is not None and "code" in out:
        out["new_code"] = out.pop("code")
    return out


def taxes_by_code(sf: sessionmaker, tenant: str, found: Iterable[store.AddOn]) -> dict[str, tax_objects.StoredTax]:
    """The tenant's taxes the add-ons name (one query)."""
    codes = sorted({c for a in found for c in a.tax_codes})
    if not codes:
        return {}
    with sf() as s:
        rows = s.scalars(select(tax_objects.TaxRow).where(tax_objects.TaxRow.tenant == tenant,
                                                          tax_objects.TaxRow.code.in_(codes)))  # fmt: skip
        return {r.code: tax_objects._stored(r) for r in rows}


def add_on_object(a: store.AddOn, taxes: Mapping[str, tax_objects.StoredTax]) -> dict[str, Any]:
    return {
        "lago_id": a.add_on_id, "name": a.name, "invoice_display_name": a.invoice_display_name, "code": a.code,
        "amount_cents": a.amount_minor, "amount_currency": a.currency, "description": a.description,
        "created_at": format_time(a.created_at),
        "taxes": [tax_object(taxes[c]) for c in a.tax_codes if c in taxes],
    }  # fmt: skip


def _one(sf: sessionmaker, a: store.AddOn) -> Response:
    return _json({"add_on": add_on_object(a, taxes_by_code(sf, a.tenant, [a]))})


# --- answers (OpenAPI only: the routes answer plain JSON) ---------------------------------------------------


class AddOnOut(BaseModel):
    add_on: dict[str, Any]


class AddOnsOut(BaseModel):
    add_ons: list[dict[str, Any]]
    meta: dict[str, Any]


async def _run(fn: Any) -> Response:
    try:
        return await run_in_threadpool(fn)
    except NotFound:
        return _json(error_body(404, "add_on_not_found"), 404)
    except (Invalid, Conflict) as exc:
        field = _LAGO_FIELD.get(exc.field, exc.field) if exc.field else "base"
        return _json(validation_error({field: [getattr(exc, "reason", None) or str(exc)]}), 422)


@router.post("/add_ons", summary="Create an add-on", responses=m.answers(AddOnOut, *WRITE))
async def create_add_on(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "add_on")
    sf = request.app.state.sessions
    return await _run(lambda: _one(sf, store.create_add_on(sf, principal.tenant, **changes_from_lago(raw))))


@router.get("/add_ons", summary="List add-ons", responses=m.answers(AddOnsOut, *AUTH, 400))
async def list_add_ons(request: Request, principal: Read, page: Page = 1, per_page: PerPage = 100) -> Response:
    sf = request.app.state.sessions

    def run() -> Response:
        found, total = store.list_add_ons(sf, principal.tenant, page=page, per_page=per_page)
        taxes = taxes_by_code(sf, principal.tenant, found)
        return _json({"add_ons": [add_on_object(a, taxes) for a in found],
                      "meta": page_of(found, total, page, per_page)})  # fmt: skip

    return await _run(run)


@router.get("/add_ons/{code}", summary="Retrieve an add-on", responses=m.answers(AddOnOut, *READ))
async def get_add_on(request: Request, principal: Read, code: str) -> Response:
    sf = request.app.state.sessions
    return await _run(lambda: _one(sf, store.get_add_on(sf, principal.tenant, code)))


@router.put("/add_ons/{code}", summary="Update an add-on", responses=m.answers(AddOnOut, *WRITE, 404))
async def update_add_on(request: Request, principal: Admin, code: str) -> Response:
    raw = await _body(request, "add_on")
    sf = request.app.state.sessions

    def run() -> Response:
        current = store.get_add_on(sf, principal.tenant, code)
        return _one(sf, store.update_add_on(sf, principal.tenant, code, **changes_from_lago(raw, current)))

    return await _run(run)


@router.delete("/add_ons/{code}", summary="Delete an add-on", responses=m.answers(AddOnOut, *READ))
async def delete_add_on(request: Request, principal: Admin, code: str) -> Response:
    sf = request.app.state.sessions
    return await _run(lambda: _one(sf, store.delete_add_on(sf, principal.tenant, code)))
