"""Lago's taxes at /compat/lago/api/v1 over the tax store (entities/tax_objects.py, docs/taxes.md "Explicit
taxes", docs/lago.md).

`taxes.create/find/find_all/update/destroy` of lago-python-client work unchanged: code, name, rate (percent:
20 = 20 %; the SDK sends a JSON number, read by its shortest decimal text, and the answer carries the stored
decimal as a JSON number written exactly), description, applied_to_organization (one of the tenant's default
taxes: they tax every customer without tax codes of its own, instead of the automatic VAT/sales-tax rules).
A customer's own taxes are its `tax_codes` (api/compat/lago/customers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.coupons import lago_decimal
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.api.compat.lago.responses import error_body, page_of, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body
from meterstream.entities import tax_objects as store
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.schemas.event import format_time

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)
_encode = msgspec.json.Encoder(decimal_format="number").encode  # a rate as a JSON number, digit for digit


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_encode(body), status, media_type="application/json")


def spec_from_lago(raw: Any, tenant: str, stored: store.TaxSpec | None = None) -> store.TaxSpec:
    if not isinstance(raw, Mapping):
        raise Invalid("tax", "must be a JSON object")
    changes: dict[str, Any] = {}
    for name in ("code", "name", "description"):
        if name in raw:
            value = raw[name]
            if value is not None and not isinstance(value, str):
                raise Invalid(name, f"must be a string (got {type(value).__name__})")
            changes[name] = value
    if raw.get("rate") is not None:
        changes["rate"] = lago_decimal("rate", raw["rate"])
    if raw.get("applied_to_organization") is not None:
        if not isinstance(raw["applied_to_organization"], bool):
            raise Invalid("applied_to_organization", "true or false")
        changes["applied_to_organization"] = raw["applied_to_organization"]
    if stored is not None:
        return replace(stored, **changes)
    for name in ("code", "name", "rate"):
        if changes.get(name) is None:
            raise Invalid(name, "required")
    return store.TaxSpec(tenant=tenant, **changes)


def tax_object(t: store.StoredTax) -> dict[str, Any]:
    s = t.spec
    return {
        "lago_id": lago_uuid(s.tenant, "tax", t.id), "name": s.name, "code": s.code, "rate": s.rate,
        "description": s.description, "applied_to_organization": s.applied_to_organization,
        "applied_to_billing_entities_codes": [], "add_ons_count": 0, "charges_count": 0, "customers_count": 0,
        "plans_count": 0, "created_at": format_time(t.created_at),
    }  # fmt: skip


class TaxOut(BaseModel):
    tax: dict[str, Any]


class TaxesOut(BaseModel):
    taxes: list[dict[str, Any]]
    meta: dict[str, Any]


async def _run(fn: Any) -> Response:
    try:
        return await run_in_threadpool(fn)
    except NotFound:
        return _json(error_body(404, "tax_not_found"), 404)
    except (Invalid, Conflict) as exc:
        return _json(validation_error({exc.field or "base": [getattr(exc, "reason", None) or str(exc)]}), 422)


@router.post("/taxes", summary="Create a tax", responses=m.answers(TaxOut, *WRITE))
async def create_tax(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "tax")
    sf = request.app.state.sessions
    return await _run(lambda: _json({"tax": tax_object(store.create_tax(sf, spec_from_lago(raw, principal.tenant)))}))


@router.get("/taxes", summary="List taxes", responses=m.answers(TaxesOut, *AUTH, 400))
async def list_taxes(
    request: Request, principal: Read, page: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:  # fmt: skip
    found, total = await run_in_threadpool(store.list_taxes, request.app.state.sessions, principal.tenant,
                                           page=page, per_page=per_page)  # fmt: skip
    return _json({"taxes": [tax_object(t) for t in found], "meta": page_of(found, total, page, per_page)})


@router.get("/taxes/{code}", summary="Retrieve a tax", responses=m.answers(TaxOut, *READ))
async def get_tax(request: Request, principal: Read, code: str) -> Response:
    sf = request.app.state.sessions
    return await _run(lambda: _json({"tax": tax_object(store.get_tax(sf, principal.tenant, code))}))


@router.put("/taxes/{code}", summary="Update a tax", responses=m.answers(TaxOut, *WRITE, 404))
async def update_tax(request: Request, principal: Admin, code: str) -> Response:
    raw = await _body(request, "tax")
    sf = request.app.state.sessions

    def run() -> Response:
        current = store.get_tax(sf, principal.tenant, code)
        spec = spec_from_lago(raw, principal.tenant, current.spec)
        return _json({"tax": tax_object(store.update_tax(sf, principal.tenant, code, spec))})

    return await _run(run)


@router.delete("/taxes/{code}", summary="Delete a tax (customers holding it lose it)",
               responses=m.answers(TaxOut, *READ))  # fmt: skip
async def delete_tax(request: Request, principal: Admin, code: str) -> Response:
    sf = request.app.state.sessions
    return await _run(lambda: _json({"tax": tax_object(store.delete_tax(sf, principal.tenant, code))}))
