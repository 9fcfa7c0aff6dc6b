"""OpenMeter's customer entitlements (v2) and grants at /compat/openmeter (docs/entitlements.md): creating,
overriding, reading and deleting a customer's entitlements (`customer_entitlements_v2.post/override/get/list/delete`),
granting (`customer_entitlement_v2.create_customer_entitlement_grant/get_grants`, `grants.delete`: void) and resetting
(`reset_customer_entitlement`). Values, access, history and the lists across customers: entitlement_reads.py;
features: features.py. Not answered (404): the v1 subject-scoped writes and values.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from meterstream.api.errors import ApiError, time_param
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.customers import Customer
from meterstream.entities.entitlements import (
    Entitlement,
    EntitlementCreate,
    EntitlementExists,
    EntitlementRepository,
    Feature,
    GrantCreate,
    Reset,
)
from meterstream.entitlements.periods import expires_at, minute, parse_interval, period_at

from .entitlement_models import (
    EntitlementIn,
    GrantIn,
    Page,
    PageSize,
    ResetIn,
    current_period,
    entitlement_json,
    grant_json,
    paginated,
)
from .entitlement_values import now_utc
from .routes import _ERRORS, PREFIX, Admin, Reader, _body, _call, _json, _optional_body, _parse, _service

v1 = APIRouter(prefix=f"{PREFIX}/api/v1", tags=["openmeter"])
v2 = APIRouter(prefix=f"{PREFIX}/api/v2", tags=["openmeter"])
_BURNABLE = ("SUM", "COUNT")  # meters whose usage adds up (what a grant's amount is burnt by)


def _repo(request: Request) -> EntitlementRepository:
    return _service(request).entitlements


# -- customer entitlements -----------------------------------------------------------------------------
def _measure_from(value: Any, anchor: datetime, interval: Any, now: datetime) -> datetime:
    if value is None or value == "NOW":
        return minute(now)
    if value == "CURRENT_PERIOD_START":
        return period_at(anchor, interval, now)[0]
    if isinstance(value, datetime):
        return minute(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Invalid("measureUsageFrom", "must be CURRENT_PERIOD_START, NOW or a date-time with an offset")
    return minute(parsed)


def _grant_create(g: GrantIn, where: str, period_start: datetime | None) -> GrantCreate:
    if g.amount <= 0:
        raise Invalid(f"{where}amount", "a grant's amount must be positive")
    effective = minute(g.effective_at)
    if period_start is not None and effective < period_start:
        raise Invalid(f"{where}effectiveAt", "must not be before the start of the current usage period")
    expiration = ends = None
    if g.expiration is not None:
        expiration = (g.expiration.duration, g.expiration.count)
        ends = expires_at(effective, *expiration)
    recurrence = None
    if g.recurrence is not None:
        try:
            interval = parse_interval(g.recurrence.interval)
        except ValueError as exc:
            raise Invalid(f"{where}recurrence.interval", str(exc)) from None
        recurrence = (interval, minute(g.recurrence.anchor) if g.recurrence.anchor else effective)
    if g.max_rollover_amount is not None and g.max_rollover_amount < g.min_rollover_amount:
        raise Invalid(f"{where}maxRolloverAmount", "must not be below minRolloverAmount")
    return GrantCreate(
        amount=g.amount, effective_at=effective, priority=g.priority, expiration=expiration, expires_at=ends,
        max_rollover=g.max_rollover_amount, min_rollover=g.min_rollover_amount, recurrence=recurrence,
        metadata=g.metadata, annotations=g.annotations,
    )  # fmt: skip


def _entitlement_create(
    service: Any, tenant: str, body: EntitlementIn, now: datetime
) -> tuple[EntitlementCreate, Feature, list[GrantCreate]]:
    """The entitlement to store (validated against its feature and meter) and the grants that come with it."""
    repo: EntitlementRepository = service.entitlements
    if body.feature_id is None and body.feature_key is None:
        raise Invalid("featureKey", "featureKey or featureId is required")
    feature = repo.feature(tenant, body.feature_id or body.feature_key)  # type: ignore[arg-type]
    interval = anchor = None
    if body.usage_period is not None:
        try:
            interval = parse_interval(body.usage_period.interval)
        except ValueError as exc:
            raise Invalid("usagePeriod.interval", str(exc)) from None
        anchor = minute(body.usage_period.anchor or now)
    if body.type != "metered":
        for name, value in (("isSoftLimit", body.is_soft_limit), ("issueAfterReset", body.issue_after_reset),
                            ("issue", body.issue), ("grants", body.grants),
                            ("measureUsageFrom", body.measure_usage_from)):  # fmt: skip
            if value is not None:
                raise Invalid(name, f"not a field of a {body.type} entitlement")
        if body.type == "boolean" and body.config is not None:
            raise Invalid("config", "not a field of a boolean entitlement")
        if body.type == "static":
            if body.config is None:
                raise Invalid("config", "a static entitlement needs its config: a JSON object, as a JSON string")
            try:
                parsed = json.loads(body.config)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise Invalid("config", "must be a JSON string holding a JSON object")
        item = EntitlementCreate(type=body.type, feature_id=feature.id, feature_key=feature.key, config=body.config,
                                 usage_interval=interval, usage_anchor=anchor, metadata=body.metadata)  # fmt: skip
        return item, feature, []
    if feature.meter_slug is None:
        raise Invalid("featureKey", f"feature {feature.key} has no meter: a metered entitlement needs one")
    meter = service.meters.get(tenant, feature.meter_slug)
    if meter.aggregation not in _BURNABLE:
        raise Invalid("featureKey", f"meter {meter.slug} is a {meter.aggregation} meter: metered entitlements here "
                                    f"burn grants down with {' or '.join(_BURNABLE)} meters")  # fmt: skip
    if interval is None or anchor is None:
        raise Invalid("usagePeriod", "a metered entitlement needs its usagePeriod")
    measure_from = _measure_from(body.measure_usage_from, anchor, interval, now)
    issue_amount, issue_priority = body.issue_after_reset, body.issue_after_reset_priority or 1
    if body.issue is not None:
        issue_amount, issue_priority = body.issue.amount, body.issue.priority
    grants = [_grant_create(g, f"grants[{i}].", None) for i, g in enumerate(body.grants or ())]
    if grants and issue_amount is not None:
        raise Invalid("grants", "grants cannot be given with issue or issueAfterReset")
    if issue_amount is not None and issue_amount > 0:  # a grant that refills at every reset (OpenMeter's)
        grants.append(GrantCreate(amount=issue_amount, effective_at=measure_from, priority=issue_priority,
                                  max_rollover=issue_amount, min_rollover=issue_amount,
                                  annotations={"issueAfterReset": True}))  # fmt: skip
    item = EntitlementCreate(
        type="metered", feature_id=feature.id, feature_key=feature.key, usage_interval=interval, usage_anchor=anchor,
        is_soft_limit=bool(body.is_soft_limit), preserve_overage=bool(body.preserve_overage_at_reset),
        measure_usage_from=measure_from, issue_amount=issue_amount,
        issue_priority=issue_priority if issue_amount is not None else None, metadata=body.metadata,
    )  # fmt: skip
    return item, feature, grants


async def _store_entitlement(request: Request, principal: Any, customer_id_or_key: str,
                             replacing: str | None = None) -> Response:  # fmt: skip
    body = _parse(EntitlementIn, await _body(request))
    service = _service(request)

    def _create() -> tuple[Entitlement, Customer]:
        now = now_utc()
        customer = service.customers.get(principal.tenant, customer_id_or_key)
        item, feature, grants = _entitlement_create(service, principal.tenant, body, now)
        try:
            e = service.entitlements.create_entitlement(principal.tenant, customer.id, item, feature, now, grants,
                                                        replacing)  # fmt: skip
        except EntitlementExists as exc:  # OpenMeter names the entitlement in the way
            err = ApiError(409, "conflict", str(exc), field="featureKey")
            err.extensions = {"conflictingEntityId": exc.existing}  # type: ignore[attr-defined]
            raise err from None
        return e, customer

    e, customer = await _call(_create)
    return _json(entitlement_json(e, customer.key, now_utc()), 201)  # no reset yet


@v2.post("/customers/{customerIdOrKey}/entitlements", status_code=201, responses=_ERRORS,
         summary="Create a customer entitlement")  # fmt: skip
async def create_entitlement(request: Request, principal: Admin, customerIdOrKey: str) -> Response:
    return await _store_entitlement(request, principal, customerIdOrKey)


@v2.put("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/override", status_code=201,
        responses=_ERRORS, summary="Replace a customer's entitlement (the old one is deleted)")  # fmt: skip
async def override_entitlement(
    request: Request, principal: Admin, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    return await _store_entitlement(request, principal, customerIdOrKey, replacing=entitlementIdOrFeatureKey)


@v2.get("/customers/{customerIdOrKey}/entitlements", responses=_ERRORS, summary="List a customer's entitlements")
async def list_customer_entitlements(
    request: Request, principal: Reader, customerIdOrKey: str, page: Page = 1, page_size: PageSize = 100,
    include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
) -> Response:  # fmt: skip
    service = _service(request)

    def _list() -> list[dict[str, Any]]:
        customer = service.customers.get(principal.tenant, customerIdOrKey)
        now = now_utc()
        found = service.entitlements.entitlements(principal.tenant, (customer.id,), include_deleted=include_deleted)
        return [render(service, principal.tenant, e, customer.key, now) for e in found]

    return _json(paginated(await _call(_list), page, page_size))


def render(service: Any, tenant: str, e: Entitlement, customer_key: str | None, now: datetime) -> dict[str, Any]:
    """An entitlement's JSON, its current usage period and last reset from its recorded resets."""
    resets = service.entitlements.resets(tenant, e.id) if e.type == "metered" else []
    return entitlement_json(e, customer_key, now, resets)


def customer_entitlement(service: Any, tenant: str, customer_id_or_key: str, id_or_key: str) -> tuple:
    customer = service.customers.get(tenant, customer_id_or_key)
    return customer, service.entitlements.entitlement(tenant, customer.id, id_or_key)


@v2.get("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}", responses=_ERRORS,
        summary="Get a customer entitlement by id or feature key")  # fmt: skip
async def getcustomer_entitlement(
    request: Request, principal: Reader, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    service = _service(request)

    def _get() -> dict[str, Any]:
        customer, e = customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
        return render(service, principal.tenant, e, customer.key, now_utc())

    return _json(await _call(_get))


@v2.delete("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}", status_code=204,
           responses=_ERRORS, summary="Delete a customer entitlement")  # fmt: skip
async def deletecustomer_entitlement(
    request: Request, principal: Admin, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    service = _service(request)

    def _delete() -> None:
        customer = service.customers.get(principal.tenant, customerIdOrKey)
        service.entitlements.delete_entitlement(principal.tenant, customer.id, entitlementIdOrFeatureKey)

    await _call(_delete)
    return Response(status_code=204)


# -- grants ------------------------------------------------------------------------------------------
def _active_metered(service: Any, tenant: str, customer_id_or_key: str, id_or_key: str, what: str) -> Entitlement:
    """The customer's entitlement the path names, not deleted and metered (only those are granted or reset)."""
    _, e = customer_entitlement(service, tenant, customer_id_or_key, id_or_key)
    if e.deleted_at is not None:
        raise NotFound(f"entitlement {id_or_key!r} not found")
    if e.type != "metered":
        raise Invalid("entitlementIdOrFeatureKey", f"only metered entitlements are {what}, not {e.type} ones")
    return e


@v2.post("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants", status_code=201,
         responses=_ERRORS, summary="Grant an amount of a metered entitlement")  # fmt: skip
async def create_grant(
    request: Request, principal: Admin, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    body = _parse(GrantIn, await _body(request))
    service = _service(request)

    def _create() -> Any:
        now = now_utc()
        e = _active_metered(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey, "granted")
        period = current_period(e, now, service.entitlements.resets(principal.tenant, e.id))
        grant = _grant_create(body, "", period[0] if period else None)
        return service.entitlements.create_grant(principal.tenant, e.id, grant, now)

    return _json(grant_json(await _call(_create), now_utc()), 201)


@v2.get("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants", responses=_ERRORS,
        summary="List an entitlement's grants")  # fmt: skip
async def list_grants(
    request: Request, principal: Reader, customerIdOrKey: str, entitlementIdOrFeatureKey: str, page: Page = 1,
    page_size: PageSize = 100, include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
) -> Response:  # fmt: skip
    service = _service(request)

    def _list() -> list[dict[str, Any]]:
        _, e = customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
        now = now_utc()
        grants = service.entitlements.grants(principal.tenant, (e.id,))
        return [grant_json(g, now) for g in grants if include_deleted or g.grant.voided_at is None]

    return _json(paginated(await _call(_list), page, page_size))


@v2.post("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/reset", status_code=204,
         responses=_ERRORS, summary="Reset a metered entitlement's usage: a new usage period begins")  # fmt: skip
async def reset_entitlement(
    request: Request, principal: Admin, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    body = await _optional_body(request, ResetIn)
    service = _service(request)

    def _reset() -> None:
        now = now_utc()
        e = _active_metered(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey, "reset")
        at = minute(body.effective_at or now)
        if at > now:
            raise Invalid("effectiveAt", "must not be in the future")
        resets = service.entitlements.resets(principal.tenant, e.id)
        timeline = e.timeline(resets)
        assert timeline is not None
        if at < timeline.period_at(now)[0]:
            raise Invalid("effectiveAt", "must not be before the start of the current usage period")
        if at <= timeline.last_reset:
            raise Invalid("effectiveAt", "must be after the entitlement's last reset")
        anchor = timeline.segments[-1][1] if body.retain_anchor else at
        preserve = e.preserve_overage if body.preserve_overage is None else body.preserve_overage
        service.entitlements.add_reset(principal.tenant, e.id, Reset(at, anchor, preserve))

    await _call(_reset)
    return Response(status_code=204)


@v1.delete("/grants/{grantId}", status_code=204, responses=_ERRORS, summary="Void a grant")
async def void_grant(request: Request, principal: Admin, grantId: str, at: str | None = None) -> Response:
    when = time_param("at", at)
    now = now_utc()
    voided = minute(when or now)
    if voided > now:
        raise ApiError(400, "invalid", "must not be in the future", field="at")
    await _call(_repo(request).void_grant, principal.tenant, grantId, voided)
    return Response(status_code=204)


def mount(app: FastAPI) -> None:
    """Mounted by routes.mount (the OpenMeter layer's service holds the repository)."""
    app.state.openmeter.entitlements = EntitlementRepository(app.state.sessions)
    app.include_router(v1)
    app.include_router(v2)


__all__ = ["customer_entitlement", "mount", "render"]
