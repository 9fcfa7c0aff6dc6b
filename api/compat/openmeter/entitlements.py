"""OpenMeter's features, customer entitlements (v2) and grants at /compat/openmeter (docs/entitlements.md).

The SDK calls answered: `features.create/list/get/delete`; `customer_entitlements_v2.post/list/get/delete`;
`customer_entitlement_v2.create_customer_entitlement_grant/get_grants/get_customer_entitlement_value`;
`customer_entitlement.get_customer_entitlement_value` (v1); `customer.get_customer_access`;
`customer_entitlement_v2.reset_customer_entitlement`, `get_customer_entitlement_history`;
`customer_entitlements_v2.override`; `entitlements_v2.list/get`; `entitlements.list/get` and `grants.list` (v1:
subject keys); `grants.delete` (void). Not answered (404): the v1 subject-scoped write paths.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from meterstream.api.errors import ApiError, time_param
from meterstream.api.queries import QueryError, check_tz
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
from meterstream.entitlements.periods import WINDOW_SIZES, expires_at, minute, minute_up, parse_interval, period_at

from .entitlement_models import (
    EntitlementIn,
    FeatureIn,
    GrantIn,
    ResetIn,
    current_period,
    entitlement_json,
    feature_json,
    grant_json,
    paginated,
)
from .entitlement_values import history, metered_value, now_utc, value_json
from .routes import _ERRORS, PREFIX, Admin, Reader, _body, _call, _json, _optional_body, _parse, _service

v1 = APIRouter(prefix=f"{PREFIX}/api/v1", tags=["openmeter"])
v2 = APIRouter(prefix=f"{PREFIX}/api/v2", tags=["openmeter"])
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")
_BURNABLE = ("SUM", "COUNT")  # meters whose usage adds up (what a grant's amount is burnt by)
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=1000)]


def _repo(request: Request) -> EntitlementRepository:
    return _service(request).entitlements


# -- features ----------------------------------------------------------------------------------------
@v1.post("/features", status_code=201, responses=_ERRORS, summary="Create a feature")
async def create_feature(request: Request, principal: Admin) -> Response:
    body = _parse(FeatureIn, await _body(request))
    if _ULID.fullmatch(body.key):
        raise ApiError(400, "invalid", "a feature key cannot be a valid ULID", field="key")
    service = _service(request)

    def _create() -> Feature:
        if body.meter_slug is not None:
            meter = service.meters.get(principal.tenant, body.meter_slug)
            for k in body.meter_group_by_filters or {}:
                if k not in meter.group_by:
                    raise Invalid(f"meterGroupByFilters.{k}", f"not a group-by of meter {meter.slug}")
        elif body.meter_group_by_filters:
            raise Invalid("meterGroupByFilters", "needs a meterSlug")
        return service.entitlements.create_feature(principal.tenant, body.key, body.name, body.meter_slug,
                                                   body.meter_group_by_filters, body.metadata)  # fmt: skip

    return _json(feature_json(await _call(_create)), 201)


@v1.get("/features", responses=_ERRORS, summary="List features")
async def list_features(
    request: Request,
    principal: Reader,
    meter_slug: Annotated[list[str] | None, Query(alias="meterSlug")] = None,
    include_archived: Annotated[bool, Query(alias="includeArchived")] = False,
    page: Page | None = None,
    page_size: Annotated[int | None, Query(alias="pageSize", ge=1, le=1000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    features = await _call(_repo(request).features, principal.tenant, include_archived, tuple(meter_slug or ()))
    items = [feature_json(f) for f in features]
    if page is None and page_size is None:  # OpenMeter: a plain array unless a page is asked for
        return _json(items[offset : offset + limit])
    return _json(paginated(items, page or 1, page_size or 100))


@v1.get("/features/{featureId}", responses=_ERRORS, summary="Get a feature by id or key")
async def get_feature(request: Request, principal: Reader, featureId: str) -> Response:
    return _json(feature_json(await _call(_repo(request).feature, principal.tenant, featureId)))


@v1.delete("/features/{featureId}", status_code=204, responses=_ERRORS, summary="Archive a feature")
async def delete_feature(request: Request, principal: Admin, featureId: str) -> Response:
    await _call(_repo(request).archive_feature, principal.tenant, featureId)
    return Response(status_code=204)


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
        return [_render(service, principal.tenant, e, customer.key, now) for e in found]

    return _json(paginated(await _call(_list), page, page_size))


def _render(service: Any, tenant: str, e: Entitlement, customer_key: str | None, now: datetime) -> dict[str, Any]:
    """An entitlement's JSON, its current usage period and last reset from its recorded resets."""
    resets = service.entitlements.resets(tenant, e.id) if e.type == "metered" else []
    return entitlement_json(e, customer_key, now, resets)


def _customer_entitlement(service: Any, tenant: str, customer_id_or_key: str, id_or_key: str) -> tuple:
    customer = service.customers.get(tenant, customer_id_or_key)
    return customer, service.entitlements.entitlement(tenant, customer.id, id_or_key)


@v2.get("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}", responses=_ERRORS,
        summary="Get a customer entitlement by id or feature key")  # fmt: skip
async def get_customer_entitlement(
    request: Request, principal: Reader, customerIdOrKey: str, entitlementIdOrFeatureKey: str
) -> Response:
    service = _service(request)

    def _get() -> dict[str, Any]:
        customer, e = _customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
        return _render(service, principal.tenant, e, customer.key, now_utc())

    return _json(await _call(_get))


@v2.delete("/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}", status_code=204,
           responses=_ERRORS, summary="Delete a customer entitlement")  # fmt: skip
async def delete_customer_entitlement(
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
    _, e = _customer_entitlement(service, tenant, customer_id_or_key, id_or_key)
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
        _, e = _customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
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
        customer, e = _customer_entitlement(service, principal.tenant, customerIdOrKey, entitlementIdOrFeatureKey)
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
        return [_render(service, principal.tenant, e, keys.get(e.customer_id), now) for e in found]

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
        return _render(service, principal.tenant, e, keys[e.customer_id], now_utc())

    return _json(await _call(_get))


# -- OpenMeter's v1 reads (subject-keyed) ------------------------------------------------------------
def _v1(body: dict[str, Any], subjects: tuple[str, ...]) -> dict[str, Any]:
    """A v2 entitlement as v1's (OpenMeter's `Entitlement`): the customer as its first subject key."""
    out = {k: v for k, v in body.items() if k not in ("customerId", "customerKey", "issue")}
    out["subjectKey"] = subjects[0] if subjects else ""
    if body["type"] == "metered":
        out["isUnlimited"] = False
    return out


def _v1_page(items: list[Any], page: int | None, page_size: int | None, offset: int, limit: int) -> Any:
    if page is None and page_size is None:  # OpenMeter's v1 lists: a plain array unless a page is asked for
        return items[offset : offset + limit]
    return paginated(items, page or 1, page_size or 100)


def _v1_entitlements(
    service: Any, tenant: str, features: tuple[str, ...], subjects: tuple[str, ...], types: tuple[str, ...],
    include_deleted: bool,
) -> list[tuple[Entitlement, tuple[str, ...]]]:  # fmt: skip
    """The entitlements of the customers whose usage attribution holds one of `subjects` (all, when none given),
    each with its customer's subject keys."""
    found = service.entitlements.entitlements(tenant, (), features, types, include_deleted=include_deleted)
    if subjects:
        owners = set()
        for subject in subjects:
            claimed, _ = service.customers.list(tenant, subject=subject, include_deleted=True, page_size=1000)
            owners |= {c.id for c in claimed}
        found = [e for e in found if e.customer_id in owners]
    return [(e, _subject_keys(service, tenant, e.customer_id)) for e in found]


def _subject_keys(service: Any, tenant: str, customer_id: str) -> tuple[str, ...]:
    try:
        return service.customers.get(tenant, customer_id).subject_keys
    except NotFound:  # a deleted customer: its entitlements stay listed
        return ()


V1Page = Annotated[int | None, Query(ge=1, le=1_000_000)]
V1PageSize = Annotated[int | None, Query(alias="pageSize", ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=1000)]


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
        return [_v1(_render(service, principal.tenant, e, None, now), ks) for e, ks in found]

    return _json(_v1_page(await _call(_list), page, page_size, offset, limit))


@v1.get("/entitlements/{entitlementId}", responses=_ERRORS, summary="Get an entitlement by id (OpenMeter v1)")
async def get_entitlement_v1(request: Request, principal: Reader, entitlementId: str) -> Response:
    service = _service(request)

    def _get() -> dict[str, Any]:
        e = service.entitlements.entitlement_by_id(principal.tenant, entitlementId)
        keys = _subject_keys(service, principal.tenant, e.customer_id)
        return _v1(_render(service, principal.tenant, e, None, now_utc()), keys)

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
        grants = service.entitlements.grants(principal.tenant, tuple(e.id for e, _ in found)) if found else []
        return [grant_json(g, now) for g in grants if include_deleted or g.grant.voided_at is None]

    return _json(_v1_page(await _call(_list), page, page_size, offset, limit))


def mount(app: FastAPI) -> None:
    """Mounted by routes.mount (the OpenMeter layer's service holds the repository)."""
    app.state.openmeter.entitlements = EntitlementRepository(app.state.sessions)
    app.include_router(v1)
    app.include_router(v2)


__all__ = ["mount"]
