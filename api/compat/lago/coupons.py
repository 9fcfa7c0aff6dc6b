"""Lago's coupons and applied coupons at /compat/lago/api/v1 over the coupon store (entities/coupons.py,
docs/coupons.md, docs/lago.md).

`coupons.create/find/find_all/update/destroy` and `applied_coupons.create/find_all/destroy` of
lago-python-client work unchanged. Mapping: coupon_type fixed_amount|percentage -> kind fixed|percentage;
amount_cents + amount_currency -> amount_off in the currency's minor units; percentage_rate (10 = 10 %; the SDK
sends a JSON number, read by its shortest decimal text) -> percent_off; frequency once|recurring|forever ->
duration once|repeating|forever; frequency_duration -> duration_periods; expiration time_limit +
expiration_at -> expires_at; reusable; applies_to.billable_metric_codes -> the line codes (a billable
metric's code is its meter's, the code of its usage lines). applies_to.plan_codes is refused (422) rather than
accepted and ignored. `DELETE /coupons/{code}` terminates the coupon (customers who have it keep it, as in
Lago). An applied coupon's amount_cents_remaining and frequency_duration_remaining are derived from the
customer's issued invoices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.api.compat.lago.responses import error_body, page_of, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body, _json
from meterstream.billing.allocation import from_units, to_units
from meterstream.entities import coupons as store
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.rating.money import to_decimal
from meterstream.schemas.event import format_time, parse_time

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)

_FREQUENCY = {"once": "once", "recurring": "repeating", "forever": "forever"}
_LAGO_FREQUENCY = {v: k for k, v in _FREQUENCY.items()}
_KIND = {"fixed_amount": "fixed", "percentage": "percentage"}


def lago_decimal(field: str, value: Any) -> Decimal:
    """A decimal Lago sends as a string or a JSON number (the SDK's floats: read by their shortest text)."""
    if isinstance(value, float):
        value = repr(value)
    try:
        return to_decimal(value)
    except (TypeError, ValueError):
        raise Invalid(field, f"a decimal number such as 10 or 7.25 (got {value!r})") from None


def lago_text(field: str, value: Any, *, required: bool = False) -> str | None:
    """A string field of a Lago body (None when absent; `required`: 422 naming it when absent)."""
    if value is None:
        if required:
            raise Invalid(field, "required")
        return None
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string (got {type(value).__name__})")
    return value


def _int(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(field, f"a whole number (got {value!r})")
    return value


def _amount(raw: Mapping[str, Any], currency: str | None) -> tuple[Decimal | None, str | None]:
    cents = _int("amount_cents", raw.get("amount_cents"))
    if cents is None:
        return None, currency
    if not currency:
        raise Invalid("amount_currency", "required with amount_cents")
    try:
        return from_units(cents, currency.upper()), currency.upper()
    except ValueError as exc:
        raise Invalid("amount_currency", str(exc)) from None


def spec_from_lago(raw: Any, tenant: str, stored: store.CouponSpec | None = None) -> store.CouponSpec:
    """The coupon a Lago `coupon` body makes (over the stored one for an update: fields left out stay)."""
    if not isinstance(raw, Mapping):
        raise Invalid("coupon", "must be a JSON object")
    changes: dict[str, Any] = {}
    for lago, ours in (("code", "code"), ("name", "name"), ("description", "description")):
        if lago in raw:
            changes[ours] = lago_text(lago, raw[lago], required=lago != "description")
    if "coupon_type" in raw:
        kind = _KIND.get(raw["coupon_type"]) if isinstance(raw["coupon_type"], str) else None
        if kind is None:
            raise Invalid("coupon_type", f"fixed_amount or percentage (got {raw['coupon_type']!r})")
        changes["kind"] = kind
    currency = lago_text("amount_currency", raw.get("amount_currency")) or (stored.currency if stored else None)
    if "amount_cents" in raw:
        changes["amount_off"], changes["currency"] = _amount(raw, currency)
    if raw.get("percentage_rate") is not None:
        changes["percent_off"] = lago_decimal("percentage_rate", raw["percentage_rate"])
    if "frequency" in raw:
        duration = _FREQUENCY.get(raw["frequency"]) if isinstance(raw["frequency"], str) else None
        if duration is None:
            raise Invalid("frequency", f"once, recurring or forever (got {raw['frequency']!r})")
        changes["duration"] = duration
    if "frequency_duration" in raw or "frequency" in raw:
        periods = _int("frequency_duration", raw.get("frequency_duration"))
        duration = changes.get("duration", stored.duration if stored else "once")
        changes["duration_periods"] = periods if duration == "repeating" else None
    if "reusable" in raw and raw["reusable"] is not None:
        if not isinstance(raw["reusable"], bool):
            raise Invalid("reusable", "true or false")
        changes["reusable"] = raw["reusable"]
    if "expiration" in raw:
        if raw["expiration"] is None or raw["expiration"] == "no_expiration":
            changes["expires_at"] = None
        elif raw["expiration"] == "time_limit":
            at = lago_text("expiration_at", raw.get("expiration_at"), required=True)
            try:
                changes["expires_at"] = parse_time(at)
            except ValueError as exc:
                raise Invalid("expiration_at", str(exc)) from None
        else:
            raise Invalid("expiration", f"no_expiration or time_limit (got {raw['expiration']!r})")
    if "applies_to" in raw:
        limits = raw["applies_to"] or {}
        if not isinstance(limits, Mapping):
            raise Invalid("applies_to", "must be a JSON object")
        if limits.get("plan_codes"):
            reason = "coupons limited to plans are not supported (use billable_metric_codes, or the whole invoice)"
            raise Invalid("applies_to.plan_codes", reason)
        codes = limits.get("billable_metric_codes")
        if codes is not None and not (isinstance(codes, list) and all(isinstance(c, str) for c in codes)):
            raise Invalid("applies_to.billable_metric_codes", "an array of billable metric codes")
        changes["applies_to"] = tuple(codes) if codes else None
    if stored is None:
        for name in ("code", "name", "kind"):
            if changes.get(name) is None:
                raise Invalid({"kind": "coupon_type"}.get(name, name), "required")
        if changes["kind"] == "percentage":
            changes.pop("currency", None)
        return store.CouponSpec(tenant=tenant, **changes)
    return replace(stored, **changes)


def _percent(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def coupon_object(c: store.StoredCoupon) -> dict[str, Any]:
    s = c.spec
    return {
        "lago_id": lago_uuid(s.tenant, "coupon", c.id), "name": s.name, "code": s.code,
        "description": s.description, "coupon_type": "fixed_amount" if s.kind == "fixed" else "percentage",
        "amount_cents": to_units(s.amount_off, s.currency) if s.amount_off is not None and s.currency else None,
        "amount_currency": s.currency, "percentage_rate": _percent(s.percent_off),
        "frequency": _LAGO_FREQUENCY[s.duration], "frequency_duration": s.duration_periods,
        "expiration": "time_limit" if s.expires_at else "no_expiration",
        "expiration_at": format_time(s.expires_at) if s.expires_at else None, "reusable": s.reusable,
        "limited_plans": False, "plan_codes": [], "limited_billable_metrics": s.applies_to is not None,
        "billable_metric_codes": list(s.applies_to or ()), "created_at": format_time(c.created_at),
        "terminated_at": format_time(c.terminated_at) if c.terminated_at else None,
    }  # fmt: skip


def applied_object(a: store.AppliedCoupon) -> dict[str, Any]:
    t = a.terms
    fixed = t.kind == "fixed" and t.amount_off is not None and t.currency is not None
    return {
        "lago_id": lago_uuid(a.tenant, "applied_coupon", a.id),
        "lago_coupon_id": lago_uuid(a.tenant, "coupon", a.coupon.id), "coupon_code": t.code,
        "coupon_name": a.coupon.spec.name, "lago_customer_id": lago_uuid(a.tenant, "customer", a.customer),
        "external_customer_id": a.customer, "status": a.status,
        "amount_cents": to_units(t.amount_off, t.currency) if fixed else None,  # type: ignore[arg-type]
        "amount_cents_remaining": to_units(a.amount_remaining, t.currency)  # type: ignore[arg-type]
        if a.amount_remaining is not None else None,
        "amount_currency": t.currency, "percentage_rate": _percent(t.percent_off),
        "frequency": _LAGO_FREQUENCY[t.duration], "frequency_duration": t.duration_periods,
        "frequency_duration_remaining": a.periods_remaining,
        "expiration_at": format_time(a.coupon.spec.expires_at) if a.coupon.spec.expires_at else None,
        "created_at": format_time(a.applied_at),
        "terminated_at": format_time(a.terminated_at) if a.terminated_at else None,
    }  # fmt: skip


def overrides_from_lago(raw: Mapping[str, Any]) -> store.CouponOverrides:
    currency = lago_text("amount_currency", raw.get("amount_currency"))
    amount, currency = _amount(raw, currency) if raw.get("amount_cents") is not None else (None, None)
    duration = None
    if raw.get("frequency") is not None:
        duration = _FREQUENCY.get(raw["frequency"]) if isinstance(raw["frequency"], str) else None
        if duration is None:
            raise Invalid("frequency", f"once, recurring or forever (got {raw['frequency']!r})")
    rate = raw.get("percentage_rate")
    percent = lago_decimal("percentage_rate", rate) if rate is not None else None
    return store.CouponOverrides(percent, amount, currency, duration,  # type: ignore[arg-type]
                                 _int("frequency_duration", raw.get("frequency_duration")))  # fmt: skip


# --- answers (OpenAPI only: the routes answer plain JSON) ---------------------------------------------------


class CouponOut(BaseModel):
    coupon: dict[str, Any]


class CouponsOut(BaseModel):
    coupons: list[dict[str, Any]]
    meta: dict[str, Any]


class AppliedCouponOut(BaseModel):
    applied_coupon: dict[str, Any]


class AppliedCouponsOut(BaseModel):
    applied_coupons: list[dict[str, Any]]
    meta: dict[str, Any]


async def _run(fn: Any, *args: Any, not_found: str = "coupon_not_found") -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except NotFound as exc:
        code = "customer_not_found" if "customer" in str(exc) and "applied" not in str(exc) else not_found
        return _json(error_body(404, code), 404)
    except (Invalid, Conflict) as exc:
        return _json(validation_error({exc.field or "base": [getattr(exc, "reason", None) or str(exc)]}), 422)


Page = Annotated[int, Query(ge=1, le=2**31 - 1)]
PerPage = Annotated[int, Query(ge=1, le=1000)]


@router.post("/coupons", summary="Create a coupon", responses=m.answers(CouponOut, *WRITE))
async def create_coupon(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "coupon")
    sf = request.app.state.sessions

    def run() -> Response:
        return _json({"coupon": coupon_object(store.create_coupon(sf, spec_from_lago(raw, principal.tenant)))})

    return await _run(run)


@router.get("/coupons", summary="List coupons", responses=m.answers(CouponsOut, *AUTH, 400))
async def list_coupons(request: Request, principal: Read, page: Page = 1, per_page: PerPage = 100) -> Response:
    found, total = await run_in_threadpool(store.list_coupons, request.app.state.sessions, principal.tenant,
                                           page=page, per_page=per_page)  # fmt: skip
    return _json({"coupons": [coupon_object(c) for c in found], "meta": page_of(found, total, page, per_page)})


@router.get("/coupons/{code}", summary="Retrieve a coupon", responses=m.answers(CouponOut, *READ))
async def get_coupon(request: Request, principal: Read, code: str) -> Response:
    def run() -> Response:
        return _json({"coupon": coupon_object(store.get_coupon(request.app.state.sessions, principal.tenant, code))})

    return await _run(run)


@router.put("/coupons/{code}", summary="Update a coupon", responses=m.answers(CouponOut, *WRITE, 404))
async def update_coupon(request: Request, principal: Admin, code: str) -> Response:
    raw = await _body(request, "coupon")
    sf = request.app.state.sessions

    def run() -> Response:
        current = store.get_coupon(sf, principal.tenant, code)
        spec = spec_from_lago(raw, principal.tenant, current.spec)
        return _json({"coupon": coupon_object(store.update_coupon(sf, principal.tenant, code, spec))})

    return await _run(run)


@router.delete("/coupons/{code}", summary="Terminate a coupon", responses=m.answers(CouponOut, *READ))
async def delete_coupon(request: Request, principal: Admin, code: str) -> Response:
    def run() -> Response:
        stored = store.terminate_coupon(request.app.state.sessions, principal.tenant, code)
        return _json({"coupon": coupon_object(stored)})

    return await _run(run)


@router.post("/applied_coupons", summary="Apply a coupon to a customer",
             responses=m.answers(AppliedCouponOut, *WRITE, 404))  # fmt: skip
async def apply_coupon(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "applied_coupon")

    def run() -> Response:
        if not isinstance(raw, Mapping):
            raise Invalid("applied_coupon", "must be a JSON object")
        customer = lago_text("external_customer_id", raw.get("external_customer_id"), required=True)
        code = lago_text("coupon_code", raw.get("coupon_code"), required=True)
        applied = store.apply_coupon(request.app.state.sessions, principal.tenant, customer, code,  # type: ignore[arg-type]
                                     overrides_from_lago(raw))  # fmt: skip
        return _json({"applied_coupon": applied_object(applied)})

    return await _run(run)


async def _applied_list(request: Request, tenant: str, customer: str | None, status: str | None, page: int,
                        per_page: int, *, known: bool = False) -> Response:  # fmt: skip
    """`known`: the customer is the path's (/customers/{id}/applied_coupons), so an unknown one is 404
    customer_not_found, as Lago's customer routes answer; the `external_customer_id` filter only filters."""

    def run() -> Response:
        if known:
            get_customer_doc(request.app.state.sessions, tenant, customer)  # type: ignore[arg-type]
        found = store.list_applied(request.app.state.sessions, tenant, customer, status)
        chunk = found[(page - 1) * per_page : page * per_page]
        return _json({"applied_coupons": [applied_object(a) for a in chunk],
                      "meta": page_of(chunk, len(found), page, per_page)})  # fmt: skip

    return await _run(run)


@router.get("/applied_coupons", summary="List applied coupons (filters: external_customer_id, status)",
            responses=m.answers(AppliedCouponsOut, *AUTH, 400, 422))  # fmt: skip
async def list_applied(
    request: Request, principal: Read, page: Page = 1, per_page: PerPage = 100,
    external_customer_id: Annotated[str | None, Query()] = None, status: Annotated[str | None, Query()] = None,
) -> Response:  # fmt: skip
    return await _applied_list(request, principal.tenant, external_customer_id, status, page, per_page)


@router.get("/customers/{external_customer_id}/applied_coupons", summary="A customer's applied coupons",
            responses=m.answers(AppliedCouponsOut, *AUTH, 400, 404, 422))  # fmt: skip
async def customer_applied(
    request: Request, principal: Read, external_customer_id: str, page: Page = 1, per_page: PerPage = 100,
    status: Annotated[str | None, Query()] = None,
) -> Response:  # fmt: skip
    return await _applied_list(request, principal.tenant, external_customer_id, status, page, per_page, known=True)


@router.delete("/customers/{external_customer_id}/applied_coupons/{applied_coupon_id}",
               summary="Remove a coupon from a customer", responses=m.answers(AppliedCouponOut, *READ))  # fmt: skip
async def remove_applied(request: Request, principal: Admin, external_customer_id: str,
                         applied_coupon_id: str) -> Response:  # fmt: skip
    sf = request.app.state.sessions

    def run() -> Response:
        get_customer_doc(sf, principal.tenant, external_customer_id)  # Lago: customer_not_found first
        for a in store.list_applied(sf, principal.tenant, external_customer_id):
            if applied_coupon_id in (a.id, lago_uuid(principal.tenant, "applied_coupon", a.id)):
                done = store.terminate_applied(sf, principal.tenant, external_customer_id, a.id)
                return _json({"applied_coupon": applied_object(done)})
        return _json(error_body(404, "applied_coupon_not_found"), 404)

    return await _run(run)
