"""Coupons of the key's tenant and the coupons applied to its customers (docs/coupons.md). Writes need an
`admin` key, reads `read`.

- POST /v1/coupons creates a coupon (409 naming `code` when a live one has it); GET /v1/coupons lists them,
  GET /v1/coupons/{code} reads one; DELETE /v1/coupons/{code} terminates it: it can no longer be applied,
  customers who have it keep it.
- POST /v1/customers/{external_id}/coupons applies a coupon to the customer (optional overrides of its
  amount, percentage and duration); GET lists the customer's applied coupons with their use so far (derived
  from its issued invoices); DELETE /v1/customers/{external_id}/coupons/{id} removes one: no later close
  applies it.
Errors: 422 `invalid` naming the field, 404 `not_found`, 409 `conflict` (entity_common.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from meterstream.api.auth import require
from meterstream.api.coupons_models import (
    AppliedCouponList,
    AppliedCouponOut,
    CouponApply,
    CouponCreate,
    CouponList,
    CouponOut,
    applied_out,
    coupon_out,
)
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.entities import coupons
from meterstream.entities.common import NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.keys import Principal

router = APIRouter(tags=["coupons"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_WRITE = errors(401, 403, 404, 409, 422, 429)
_READ = errors(401, 403, 404, 422, 429)


@router.post("/v1/coupons", response_model=CouponOut, status_code=201, responses=_WRITE, summary="Create a coupon")
async def create_coupon(request: Request, principal: Admin, body: CouponCreate) -> dict:
    return coupon_out(await store(coupons.create_coupon, request.app.state.sessions, body.to_spec(principal.tenant)))


@router.get("/v1/coupons", response_model=CouponList, responses=_READ, summary="List the live coupons")
async def list_coupons(
    request: Request,
    principal: Reader,
    page: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    found, total = await store(coupons.list_coupons, request.app.state.sessions, principal.tenant, page=page,
                               per_page=per_page)  # fmt: skip
    return {"items": [coupon_out(c) for c in found], "page": page, "per_page": per_page, "total": total}


@router.get("/v1/coupons/{code}", response_model=CouponOut, responses=_READ, summary="One coupon")
async def get_coupon(request: Request, principal: Reader, code: str) -> dict:
    return coupon_out(await store(coupons.get_coupon, request.app.state.sessions, principal.tenant, code))


@router.delete("/v1/coupons/{code}", response_model=CouponOut, responses=_WRITE,
               summary="Terminate a coupon (customers who have it keep it)")  # fmt: skip
async def terminate_coupon(request: Request, principal: Admin, code: str) -> dict:
    return coupon_out(await store(coupons.terminate_coupon, request.app.state.sessions, principal.tenant, code))


@router.post("/v1/customers/{external_id}/coupons", response_model=AppliedCouponOut, status_code=201,
             responses=_WRITE, summary="Apply a coupon to a customer")  # fmt: skip
async def apply_coupon(request: Request, principal: Admin, external_id: str, body: CouponApply) -> dict:
    applied = await store(coupons.apply_coupon, request.app.state.sessions, principal.tenant, external_id,
                          body.coupon_code, body.overrides())  # fmt: skip
    return applied_out(applied)


@router.get("/v1/customers/{external_id}/coupons", response_model=AppliedCouponList, responses=_READ,
            summary="A customer's applied coupons, with their use so far")  # fmt: skip
async def list_applied(
    request: Request,
    principal: Reader,
    external_id: str,
    status: Annotated[str | None, Query(description="active or terminated")] = None,
) -> dict:
    sf = request.app.state.sessions
    await store(get_customer_doc, sf, principal.tenant, external_id)  # an unknown customer is 404, not no coupons
    found = await store(coupons.list_applied, sf, principal.tenant, external_id, status)
    return {"items": [applied_out(a) for a in found]}


def _one(sessions, tenant: str, customer: str, applied_id: str):  # type: ignore[no-untyped-def]
    for a in coupons.list_applied(sessions, tenant, customer):
        if a.id == applied_id:
            return a
    raise NotFound(f"applied coupon {applied_id!r} of customer {customer!r} not found")


@router.get("/v1/customers/{external_id}/coupons/{applied_id}", response_model=AppliedCouponOut, responses=_READ,
            summary="One applied coupon")  # fmt: skip
async def get_applied(request: Request, principal: Reader, external_id: str, applied_id: str) -> dict:
    return applied_out(await store(_one, request.app.state.sessions, principal.tenant, external_id, applied_id))


@router.delete("/v1/customers/{external_id}/coupons/{applied_id}", response_model=AppliedCouponOut, responses=_WRITE,
               summary="Remove a coupon from a customer (no later close applies it)")  # fmt: skip
async def terminate_applied(request: Request, principal: Admin, external_id: str, applied_id: str) -> dict:
    done = await store(coupons.terminate_applied, request.app.state.sessions, principal.tenant, external_id,
                       applied_id)  # fmt: skip
    return applied_out(done)
