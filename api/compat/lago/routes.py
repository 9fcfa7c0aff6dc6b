"""Lago-compatible routes at /compat/lago/api/v1 (thin: parse the body, call the service, shape the answer).

`Client(api_key=key, api_url=f"{base}/compat/lago/")` of lago-python-client works unchanged (the SDK
joins "api/v1/..." onto api_url, so the trailing slash matters). Errors come in Lago's shape:
`{"status", "error", "code", "error_details"?}`. See docs/lago.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.auth import require
from meterstream.api.body import decode_json, read_body
from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.compat import LagoCompat
from meterstream.api.compat.lago.metrics import meter_from_billable_metric
from meterstream.api.compat.lago.responses import (
    error_body,
    event_object,
    field_errors,
    metric_object,
    page_meta,
    refused_event_object,
    validation_error,
)
from meterstream.api.compat.lago.service import LagoOutcome
from meterstream.api.errors import ApiError, register_error_format
from meterstream.api.ingest import Unavailable
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.entities.common import Conflict, NotFound
from meterstream.entities.keys import Principal
from meterstream.ingest.translate import MeterDefinition
from meterstream.schemas.event import InvalidEvent

PREFIX = "/compat/lago"
MAX_BATCH = 100  # Lago's own limit per batch request
TAG = "lago compatibility"


def render_lago(_request: Request, err: ApiError) -> Response:
    details = {err.field: [err.message]} if err.field else {"message": [err.message]}
    body = error_body(err.status, err.code, details)
    return Response(_encode(body), err.status, err.headers, media_type="application/json")


_encode = msgspec.json.Encoder().encode  # any int a request carried, echoed back (orjson stops at 64 bits)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_encode(body), status, media_type="application/json")


def _compat(request: Request) -> LagoCompat:
    return request.app.state.lago


async def _body(request: Request, root: str) -> Any:
    data = decode_json(await read_body(request, request.app.state.settings.api_max_body_bytes))
    if not isinstance(data, dict) or root not in data:
        raise ApiError(400, "bad_request", f"param is missing or the value is empty: {root}", field=root)
    return data[root]


async def _submit(request: Request, tenant: str, raw_events: list[Any]) -> list[LagoOutcome]:
    try:
        return await run_in_threadpool(_compat(request).events.submit, tenant, raw_events)
    except Unavailable as exc:
        raise ApiError(503, "unavailable", f"{exc.reason}; nothing is reported stored, retry the request",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip


AUTH = (401, 403, 429)
WRITE = (400, *AUTH, 413, 422, 503)


router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
Ingest = Annotated[Principal, Depends(require("ingest"))]
Read = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require())]


@router.post(
    "/events",
    summary="Send a usage event (Lago: createEvent)",
    responses=m.answers(m.EventOut, *WRITE),
    openapi_extra=m.body_schema(m.EventInput),
)
async def create_event(request: Request, principal: Ingest) -> Response:
    """One Lago event. 200 with the event (also for a duplicate transaction id, and for a code no billable
    metric has yet: kept and replayed later, `meterstream.status` says which); 422 `validation_errors`
    with the field and reason (the event is dead-lettered); 503 + Retry-After when Kafka did not
    acknowledge (nothing stored)."""
    raw = await _body(request, "event")
    [outcome] = await _submit(request, principal.tenant, [raw])
    if outcome.status == "rejected":
        return _json(validation_error(field_errors(outcome.error)), 422)  # type: ignore[arg-type]
    return _json({"event": event_object(outcome, datetime.now(UTC))})


@router.post(
    "/events/batch",
    summary="Send up to 100 usage events (Lago: createBatchEvents)",
    responses=m.answers(m.EventsOut, *WRITE, unprocessable=m.BatchError),
    openapi_extra=m.body_schema(m.EventBatchInput),
)
async def create_batch(request: Request, principal: Ingest) -> Response:
    """1 to 100 Lago events. A duplicate transaction id is a success, never a batch failure (Lago #3049).
    200 `{"events": [...]}` when none is refused. Otherwise 422 `validation_errors` with
    `error_details` = {index: {field: [reason]}} for the refused ones only, and `events` listing every
    event with its `meterstream.status`: the valid events of that batch ARE stored (unlike Lago), so
    resending the whole batch after a fix is safe (they come back as duplicates)."""
    raw = await _body(request, "events")
    if not isinstance(raw, list) or not raw:
        raise ApiError(422, "validation_errors", "must be a non-empty array of events", field="events")
    if len(raw) > MAX_BATCH:
        raise ApiError(422, "validation_errors", f"at most {MAX_BATCH} events per batch (got {len(raw)})",
                       field="events")  # fmt: skip
    outcomes = await _submit(request, principal.tenant, raw)
    now = datetime.now(UTC)
    events = [event_object(o, now) if o.event is not None else refused_event_object(raw[o.index], o.error)  # type: ignore[arg-type]
              for o in outcomes]  # fmt: skip
    refused = {str(o.index): field_errors(o.error) for o in outcomes if o.status == "rejected" and o.error}
    if refused:
        return _json({**validation_error(refused), "events": events}, 422)
    return _json({"events": events})


@router.get(
    "/events/{transaction_id:path}",
    summary="Retrieve an event (Lago: findEvent)",
    responses=m.answers(m.EventOut, 400, *AUTH, 404, 503),
)
async def find_event(request: Request, principal: Read, transaction_id: str) -> Response:
    """The event of a transaction id, from rated usage (ClickHouse, FINAL), the events kept unmatched, or
    the dead letters (`meterstream.status`: rated, unmatched, dead_lettered). 404 until the pipeline has
    rated an accepted event (about a second)."""
    try:
        found = await run_in_threadpool(_compat(request).lookup.find, principal.tenant, transaction_id)
    except ClickHouseUnavailable as exc:
        raise ApiError(503, "unavailable", f"usage store unavailable: {exc}", headers={"Retry-After": "1"}) from None
    if found is None:
        return _json(error_body(404, "event_not_found"), 404)
    return _json({"event": found})


@router.post(
    "/billable_metrics",
    summary="Create a billable metric (= a meter definition)",
    responses=m.answers(m.BillableMetricOut, *WRITE),
    openapi_extra=m.body_schema(m.BillableMetricInput),
)
async def create_billable_metric(request: Request, principal: Admin) -> Response:
    """A billable metric is a meter definition: event_type = slug = `code`, value_property = `$.<field_name>`.
    Kept events of that code are replayed. 422 for what has no meter equivalent (field + reason)."""
    raw = await _body(request, "billable_metric")
    compat = _compat(request)
    try:
        spec = meter_from_billable_metric(raw)
        definition = MeterDefinition(slug=spec.slug, event_type=spec.event_type, aggregation=spec.aggregation,
                                     value_property=spec.value_property)  # fmt: skip
        meter = await run_in_threadpool(
            compat.meters.create, principal.tenant, definition, name=spec.name, description=spec.description
        )
    except InvalidEvent as exc:
        return _json(validation_error(field_errors(exc)), 422)
    except Conflict:
        return _json(validation_error({"code": ["value_already_exist"]}), 422)
    try:
        await run_in_threadpool(compat.replay, principal.tenant, spec.event_type)
    except Unavailable as exc:  # the metric exists; its kept events are replayed before the next of its code
        raise ApiError(503, "unavailable", f"billable metric created, replay of kept events failed: {exc.reason}",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip
    return _json({"billable_metric": metric_object(meter)})


@router.get("/billable_metrics", summary="List billable metrics", responses=m.answers(m.BillableMetricsOut, *AUTH))
async def list_billable_metrics(request: Request, principal: Read) -> Response:
    meters = await run_in_threadpool(_compat(request).meters.list, principal.tenant)
    metrics = [obj for obj in (metric_object(x) for x in meters) if obj is not None]
    return _json({"billable_metrics": metrics, "meta": page_meta(len(metrics))})


@router.get(
    "/billable_metrics/{code}",
    summary="Retrieve a billable metric",
    responses=m.answers(m.BillableMetricOut, 400, *AUTH, 404),
)
async def get_billable_metric(request: Request, principal: Read, code: str) -> Response:
    return await _metric(request, principal.tenant, code, delete=False)


@router.put(
    "/billable_metrics/{code}",
    summary="Update a billable metric's name and description (what it meters stays)",
    responses=m.answers(m.BillableMetricOut, *WRITE, 404),
    openapi_extra=m.body_schema(m.BillableMetricInput),
)
async def update_billable_metric(request: Request, principal: Admin, code: str) -> Response:
    """Lago's `billable_metrics.update`: `name` and `description` change; `code`, `aggregation_type` and
    `field_name` may be sent but must be the metric's own (they decide the usage already produced: another value
    is a 422 naming the field; a new metric is created instead); the rest as `create` refuses it."""
    raw = await _body(request, "billable_metric")
    meters = _compat(request).meters

    def run() -> Response:
        try:
            meter = meters.get(principal.tenant, code)
        except NotFound:
            return _json(error_body(404, "billable_metric_not_found"), 404)
        current = metric_object(meter)
        if current is None:  # a meter Lago cannot show (AVG, MIN... made through the OpenMeter API)
            return _json(error_body(404, "billable_metric_not_found"), 404)
        if not isinstance(raw, dict):
            return _json(validation_error({"billable_metric": ["must be a JSON object"]}), 422)
        kept = {k: current[k] for k in ("code", "name", "description", "aggregation_type", "field_name")}
        try:
            spec = meter_from_billable_metric({**kept, **raw})
        except InvalidEvent as exc:
            return _json(validation_error(field_errors(exc)), 422)
        fixed = (("code", meter.slug, spec.slug), ("aggregation_type", meter.aggregation, spec.aggregation),
                 ("field_name", meter.value_property, spec.value_property))  # fmt: skip
        for name, mine, theirs in fixed:
            if mine != theirs:
                reason = "cannot change: it decides the usage already produced; create a new billable metric instead"
                return _json(validation_error({name: [reason]}), 422)
        updated = meters.describe(principal.tenant, meter.id, name=spec.name, description=spec.description)
        return _json({"billable_metric": metric_object(updated)})

    return await run_in_threadpool(run)


@router.delete(
    "/billable_metrics/{code}",
    summary="Delete a billable metric: its events are no longer metered (kept, as events of an unknown code)",
    responses=m.answers(m.BillableMetricOut, 400, *AUTH, 404),
)
async def delete_billable_metric(request: Request, principal: Admin, code: str) -> Response:
    return await _metric(request, principal.tenant, code, delete=True)


async def _metric(request: Request, tenant: str, code: str, *, delete: bool) -> Response:
    """The billable metric of `code` (a meter Lago can show), deleted first when `delete`."""
    meters = _compat(request).meters

    def run() -> dict[str, Any] | None:
        metric = metric_object(meters.get(tenant, code))
        if metric is not None and delete:
            meters.delete(tenant, code)
        return metric

    try:
        metric = await run_in_threadpool(run)
    except NotFound:
        metric = None
    if metric is None:
        return _json(error_body(404, "billable_metric_not_found"), 404)
    return _json({"billable_metric": metric})


def mount(app: FastAPI) -> None:
    app.state.lago = LagoCompat(app)
    app.include_router(router)
    from meterstream.api.compat.lago.entity_routes import router as entities_router

    app.include_router(entities_router)
    from meterstream.api.compat.lago.invoices import router as invoices_router

    app.include_router(invoices_router)  # invoices and credit notes over the invoice store
    from meterstream.api.compat.lago.one_off import router as one_off_router

    app.include_router(one_off_router)  # one-off invoices of add-on fees (docs/add-ons.md)
    from meterstream.api.compat.lago.preview import router as preview_router

    app.include_router(preview_router)  # the invoice a subscription's current period would get
    from meterstream.api.compat.lago.fees import router as fees_router
    from meterstream.api.compat.lago.past_usage import router as past_usage_router

    app.include_router(fees_router)  # the fees of issued invoices
    app.include_router(past_usage_router)  # a subscription's invoiced usage, per period
    from meterstream.api.compat.lago.files import router as files_router

    app.include_router(files_router)  # invoices.download and the signed URLs of their PDFs
    from meterstream.api.compat.lago.add_ons import router as add_ons_router
    from meterstream.api.compat.lago.coupons import router as coupons_router
    from meterstream.api.compat.lago.taxes import router as taxes_router

    app.include_router(coupons_router)  # coupons and applied coupons (docs/coupons.md)
    app.include_router(add_ons_router)  # add-ons, billed on one-off invoices (docs/add-ons.md)
    app.include_router(taxes_router)  # taxes; customers' tax_codes are in customers.py
    from meterstream.api.compat.lago.wallets import router as wallets_router

    app.include_router(wallets_router)  # wallets and wallet transactions (docs/wallets.md)
    from meterstream.api.compat.lago.analytics import router as analytics_router

    app.include_router(analytics_router)  # analytics: gross revenue, collections, overdue, invoiced usage, MRR
    from meterstream.api.compat.lago import webhooks as lago_webhooks

    app.include_router(lago_webhooks.router)  # webhook endpoints and the signing key
    app.state.webhook_renderers["lago"] = lago_webhooks.render  # Lago's payloads, for the webhook dispatcher
    register_error_format(app, PREFIX, render_lago)
