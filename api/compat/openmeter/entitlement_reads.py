"""OpenMeter's entitlement reads at /compat/openmeter (docs/entitlements.md): values
(`customer_entitlement_v2.get_customer_entitlement_value`, `customer_entitlement.get_customer_entitlement_value`),
`customer.get_customer_access`, `get_customer_entitlement_history`, `entitlements_v2.list/get`, and OpenMeter's v1
reads by subject (`entitlements.list/get`, `grants.list`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from meterstream.api.errors import ApiError, time_param
from meterstream.api.queries import QueryError, check_tz
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.customers import Customer
from meterstream.entities.entitlements import Entitlement
from meterstream.entitlements.periods import WINDOW_SIZES, minute, minute_up

from .entitlement_models import Limit, Offset, Page, PageSize, V1Page, V1PageSize, grant_json, paginated, v1_page
from .entitlement_values import history, metered_value, now_utc, value_json
from .entitlements import customer_entitlement, render
from .routes import _ERRORS, PREFIX, Reader, _call, _json, _service

v1 = APIRouter(prefix=f"{PREFIX}/api/v1", tags=["openmeter"])
v2 = APIRouter(prefix=f"{PREFIX}/api/v2", tags=["openmeter"])


# -- values ------------------------------------------------------------------------------------------
def _value(service: Any, tenant: str, customer_id_or_key: str, key: str, at: datetime, v2: bool) -> dict[str, Any]:
    """The value at `at` of the entitlement the path names now (by id, or the feature key's entitlement active now;
    as OpenMeter resolves it), or of the one that was active at `at` when none is now."""
    customer = service.customers.get(tenant, customer_id_or_key)
    named = [e for e in service.entitlements.entitlements(tenant, (customer.id,), include_deleted=True)
             if e.feature_key == key or e.id == key]  # fmt: skip
    now = now_utc()
    found = [e for e in named if e.active_at(now)] or [e for e in named if e.active_at(at)]
    if not found:
        return value_json(None, None, v2)  # no entitlement for the feature: no access (200, as OpenMeter)
    return _entitlement_value(service, tenant, customer, found[-1], at, v2)


def _entitlement_value(
    service: Any, tenant: str, customer: Customer, e: Entitlement, at: datetime, v2: bool
) -> dict[str, Any]:
    if e.type != "metered":
        return value_json(e, None, v2)
    feature = service.entitlements.feature(tenant, e.feature_id, archived=True)
    meter = service.meters.get(tenant, feature.meter_slug)
    return value_json(e, metered_value(service, tenant, customer, e, feature, meter, at), v2)


@v2.get("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value", responses=_ERRORS,
        summary="The value of a customer's entitlement (access, balance, usage, overage)")  # fmt: skip
async def entitlement_value_v2(
    request: Request, principal: Reader, customerIdOrKey: str, entitlementIdOrFeatureKey: str, time: str | None = None
) -> Response:
    at = time_param("time", time) or now_utc()
    return _json(await _call(_value, _service(request), principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey,
                             at, True))  # fmt: skip


@v1.get("/customers/{customerIdOrKey}/entitlements/{featureKey}/value", responses=_ERRORS,
        summary="The value of a customer's entitlement to a feature")  # fmt: skip
async def entitlement_value_v1(
    request: Request, principal: Reader, customerIdOrKey: str, featureKey: str, time: str | None = None
) -> Response:
    at = time_param("time", time) or now_utc()
    return _json(await _call(_value, _service(request), principal.tenant, customerIdOrKey, featureKey, at, False))


@v2.get("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/history", responses=_ERRORS,
        summary="A metered entitlement's usage and balance per window, and its burn-down")  # fmt: skip
async def entitlement_history(
    request: Request, principal: Reader, customerIdOrKey: str, entitlementIdOrFeatureKey: str,
    window_size: Annotated[str, Query(alias="windowSize")],
    from_: Annotated[str | None, Query(alias="from")] = None, to: str | None = None,
    window_time_zone: Annotated[str, Query(alias="windowTimeZone", max_length=64)] = "UTC",
) -> Response:  # fmt: skip
    if window_size not in WINDOW_SIZES:
        raise ApiError(400, "invalid", f"must be one of {', '.join(WINDOW_SIZES)}", field="windowSize")
    try:
        zone = check_tz(window_time_zone)
    except QueryError as exc:
        raise ApiError(400, "invalid", exc.reason, field="windowTimeZone") from None
    start, end = time_param("from", from_), time_param("to", to)
    service = _service(request)

    def _history() -> dict[str, Any]:
        customer, e = customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
        if e.type != "metered":
            raise Invalid("entitlementIdOrFeatureKey", f"only metered entitlements have a history, not {e.type} ones")
        timeline = e.timeline(service.entitlements.resets(principal.tenant, e.id))
        frm = minute(start) if start is not None else timeline.last_reset
        until = minute_up(end or now_utc())
        if frm < timeline.start:
            raise Invalid("from", "must not be before the entitlement's measureUsageFrom")
        if until <= frm:
            raise Invalid("to", "must be after from")
        feature = service.entitlements.feature(principal.tenant, e.feature_id, archived=True)
        meter = service.meters.get(principal.tenant, feature.meter_slug)
        return history(service, principal.tenant, customer, e, feature, meter, frm, until, window_size, zone)

    return _json(await _call(_history))


@v1.get("/customers/{customerIdOrKey}/access", responses=_ERRORS, summary="A customer's access to every feature")
async def customer_access(request: Request, principal: Reader, customerIdOrKey: str) -> Response:
    service = _service(request)

    def _access() -> dict[str, Any]:
        now = now_utc()
        customer = service.customers.get(principal.tenant, customerIdOrKey)
        active = [e for e in service.entitlements.entitlements(principal.tenant, (customer.id,)) if e.active_at(now)]
        return {"entitlements": {e.feature_key: _entitlement_value(service, principal.tenant, customer, e, now, False)
                                 for e in active}}  # fmt: skip

    return _json(await _call(_access))


# -- all entitlements --------------------------------------------------------------------------------
@v2.get("/entitlements", responses=_ERRORS, summary="List entitlements")
async def list_entitlements(
    request: Request, principal: Reader, page: Page = 1, page_size: PageSize = 100,
    feature: Annotated[list[str] | None, Query()] = None,
    customer_keys: Annotated[list[str] | None, Query(alias="customerKeys")] = None,
    customer_ids: Annotated[list[str] | None, Query(alias="customerIds")] = None,
    entitlement_type: Annotated[list[str] | None, Query(alias="entitlementType")] = None,
    exclude_inactive: Annotated[bool, Query(alias="excludeInactive")] = False,
) -> Response:  # fmt: skip
    service = _service(request)

    def _list() -> list[dict[str, Any]]:
        ids = list(customer_ids or ())
        for key in customer_keys or ():
            try:
                ids.append(service.customers.get(principal.tenant, key).id)
            except NotFound:
                ids.append(f"\x00{key}")  # matches nothing
        for t in entitlement_type or ():
            if t not in ("metered", "boolean", "static"):
                raise Invalid("entitlementType", "must be metered, boolean or static")
        now = now_utc()
        found = service.entitlements.entitlements(
            principal.tenant, tuple(ids), tuple(feature or ()), tuple(entitlement_type or ()),
            include_deleted=not exclude_inactive,
        )  # fmt: skip
        keys = _customer_keys(service, principal.tenant, {e.customer_id for e in found})
        return [render(service, principal.tenant, e, keys.get(e.customer_id), now) for e in found]

    return _json(paginated(await _call(_list), page, page_size))


def _customer_keys(service: Any, tenant: str, ids: set[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for cid in ids:
        try:
            out[cid] = service.customers.get(tenant, cid).key
        except NotFound:
            out[cid] = None  # a deleted customer
    return out


@v2.get("/entitlements/{entitlementId}", responses=_ERRORS, summary="Get an entitlement by id")
async def get_entitlement(request: Request, principal: Reader, entitlementId: str) -> Response:
    service = _service(request)

    def _get() -> dict[str, Any]:
        e = service.entitlements.entitlement_by_id(principal.tenant, entitlementId)
        keys = _customer_keys(service, principal.tenant, {e.customer_id})
        return render(service, principal.tenant, e, keys[e.customer_id], now_utc())

    return _json(await _call(_get))


# -- OpenMeter's v1 reads (subject-keyed) ------------------------------------------------------------
def _v1(body: dict[str, Any], subjects: tuple[str, ...]) -> dict[str, Any]:
    """A v2 entitlement as v1's (OpenMeter's `Entitlement`): the customer as its first subject key."""
    out = {k: v for k, v in body.items() if k not in ("customerId", "customerKey", "issue")}
    out["subjectKey"] = subjects[0] if subjects else ""
    if body["type"] == "metered":
        out["isUnlimited"] = False
    return out


def _v1_entitlements(
    service: Any, tenant: str, features: tuple[str, ...], subjects: tuple[str, ...], types: tuple[str, ...],
    include_deleted: bool,
) -> list[Entitlement]:  # fmt: skip
    """The entitlements of the customers whose usage attribution holds one of `subjects` (all, when none given)."""
    found = service.entitlements.entitlements(tenant, (), features, types, include_deleted=include_deleted)
    if subjects:
        owners = set()
        for subject in subjects:
            claimed, _ = service.customers.list(tenant, subject=subject, include_deleted=True, page_size=1000)
            owners |= {c.id for c in claimed}
        found = [e for e in found if e.customer_id in owners]
    return found


def _subject_keys(service: Any, tenant: str, customer_id: str) -> tuple[str, ...]:
    try:
        return service.customers.get(tenant, customer_id).subject_keys
    except NotFound:  # a deleted customer: its entitlements stay listed
        return ()


@v1.get("/entitlements", responses=_ERRORS, summary="List entitlements (OpenMeter v1: subject keys)")
async def list_entitlements_v1(
    request: Request, principal: Reader, feature: Annotated[list[str] | None, Query()] = None,
    subject: Annotated[list[str] | None, Query()] = None,
    entitlement_type: Annotated[list[str] | None, Query(alias="entitlementType")] = None,
    exclude_inactive: Annotated[bool, Query(alias="excludeInactive")] = False,
    page: V1Page = None, page_size: V1PageSize = None, offset: Offset = 0, limit: Limit = 100,
) -> Response:  # fmt: skip
    service = _service(request)

    def _list() -> list[dict[str, Any]]:
        now = now_utc()
        found = _v1_entitlements(service, principal.tenant, tuple(feature or ()), tuple(subject or ()),
                                 tuple(entitlement_type or ()), not exclude_inactive)  # fmt: skip
        keys = {cid: _subject_keys(service, principal.tenant, cid) for cid in {e.customer_id for e in found}}
        return [_v1(render(service, principal.tenant, e, None, now), keys[e.customer_id]) for e in found]

    return _json(v1_page(await _call(_list), page, page_size, offset, limit))


@v1.get("/entitlements/{entitlementId}", responses=_ERRORS, summary="Get an entitlement by id (OpenMeter v1)")
async def get_entitlement_v1(request: Request, principal: Reader, entitlementId: str) -> Response:
    service = _service(request)

    def _get() -> dict[str, Any]:
        e = service.entitlements.entitlement_by_id(principal.tenant, entitlementId)
        keys = _subject_keys(service, principal.tenant, e.customer_id)
        return _v1(render(service, principal.tenant, e, None, now_utc()), keys)

    return _json(await _call(_get))


@v1.get("/grants", responses=_ERRORS, summary="List grants (OpenMeter v1: by feature and subject)")
async def list_grants_v1(
    request: Request, principal: Reader, feature: Annotated[list[str] | None, Query()] = None,
    subject: Annotated[list[str] | None, Query()] = None,
    include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
    page: V1Page = None, page_size: V1PageSize = None, offset: Offset = 0, limit: Limit = 100,
) -> Response:  # fmt: skip
    service = _service(request)

    def _list() -> list[dict[str, Any]]:
        now = now_utc()
        found = _v1_entitlements(service, principal.tenant, tuple(feature or ()), tuple(subject or ()),
                                 ("metered",), True)  # fmt: skip
        grants = service.entitlements.grants(principal.tenant, tuple(e.id for e in found)) if found else []
        return [grant_json(g, now) for g in grants if include_deleted or g.grant.voided_at is None]

    return _json(v1_page(await _call(_list), page, page_size, offset, limit))


def mount(app: FastAPI) -> None:
    app.include_router(v1)
    app.include_router(v2)


__all__ = ["mount"]
