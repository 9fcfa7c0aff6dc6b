"""OpenMeter-compatible API at /compat/openmeter: the paths the OpenMeter SDKs call, thin over the services.

`openmeter.Client(endpoint=f"{base}/compat/openmeter", token=key)` works unchanged for events
(ingest_event, ingest_events, ingest_events_json, list), meters (create, get, list, update, delete, query_json,
query_csv, query, query_csv_post, list_subjects, list_group_by_values), subjects (upsert, list, get, delete) and
customers (create, get, list, update, delete); features, entitlements and grants are in entitlements.py. Errors are
RFC 7807 `application/problem+json`. Roles: ingest sends events, read reads, admin manages meters, subjects and
customers. What differs from OpenMeter: docs/openmeter.md.
"""

from __future__ import annotations

import ast
import json
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from meterstream.api.auth import require
from meterstream.api.body import read_body
from meterstream.api.errors import ApiError, register_error_format, time_param
from meterstream.api.ingest import Unavailable
from meterstream.api.queries import ClickHouseUnavailable, QueryError
from meterstream.api.routes.entity_common import etag, expected_version
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import Customer, CustomerCreate, delete_customer
from meterstream.entities.keys import Principal
from meterstream.entities.subjects import SubjectUpsert
from meterstream.ingest.translate import MeterDefinition
from meterstream.schemas.event import InvalidEvent

from . import query as meter_query
from .models import (
    CustomerCreateIn,
    MeterCreateIn,
    MeterQueryIn,
    MeterUpdateIn,
    SubjectUpsertIn,
    customer_json,
    json_number,
    meter_json,
    openmeter_field,
    subject_json,
)
from .service import BadEnvelopes, EventFilter, OpenMeterService

PREFIX = "/compat/openmeter"
PROBLEM = "application/problem+json"
CONTENT_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json", "application/json")
router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=["openmeter"])
Ingester = Annotated[Principal, Depends(require("ingest"))]
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
_decode = msgspec.json.Decoder().decode
_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "extensions": {"type": "object"},
    },
}  # fmt: skip
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"description": HTTPStatus(c).phrase, "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
    for c in (400, 401, 403, 404, 409, 413, 415, 429, 503)
}


def render_problem(request: Request, err: ApiError) -> Response:
    """RFC 7807 problem details, as OpenMeter answers errors (`extensions` carries the field)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(err.status).phrase if err.status in HTTPStatus._value2member_map_ else "Error",
        "status": err.status,
        "detail": err.message,
        "instance": request.url.path,
    }
    extensions: dict[str, Any] = {"code": err.code}
    if err.field is not None:
        extensions["field"] = err.field
    problems = getattr(err, "problems", None)
    if problems:
        extensions["validationErrors"] = problems
    extensions.update(getattr(err, "extensions", None) or {})  # e.g. a 409's conflictingEntityId
    body["extensions"] = extensions
    return Response(orjson.dumps(body), err.status, err.headers, media_type=PROBLEM)


def _service(request: Request) -> OpenMeterService:
    return request.app.state.openmeter


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run blocking work (SQL, Kafka, ClickHouse) in a thread; map domain errors onto HTTP problems."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc), field=openmeter_field(exc.field) if exc.field else None) from None
    except Invalid as exc:  # the entity store's rules; fields as OpenMeter names them
        field = openmeter_field(exc.field) if exc.field else None
        raise ApiError(400, "invalid", exc.reason, field=field) from None
    except InvalidEvent as exc:
        raise ApiError(400, "invalid", exc.reason, field=exc.field) from None
    except QueryError as exc:
        raise ApiError(400, "invalid", exc.reason, field=exc.field) from None
    except Unavailable as exc:
        raise ApiError(503, "unavailable", f"{exc.reason}; nothing is reported stored, retry the request",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip
    except ClickHouseUnavailable as exc:
        msg = f"ClickHouse is not reachable: {exc}"
        raise ApiError(503, "unavailable", msg, headers={"Retry-After": "5"}) from None
    except ValueError as exc:  # the repositories' "field: reason"
        field, _, reason = str(exc).partition(": ")
        raise ApiError(400, "invalid", reason or str(exc), field=field if reason else None) from None


def _parse(model: Any, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, "invalid", first["msg"], field=field) from None


async def _body(request: Request) -> Any:
    body = await read_body(request, request.app.state.settings.api_max_body_bytes)
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty", field="$")
    try:
        return _decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON ({exc})", field="$") from None


async def _optional_body(request: Request, model: Any) -> Any:
    """The body as `model`, or the model's defaults when there is none (some SDK calls send no body)."""
    return _parse(model, await _body(request)) if (await request.body()).strip() else model()


# -- events ------------------------------------------------------------------------------------------
_INGEST_DOC = """Ingest one CloudEvent (`application/cloudevents+json`), a batch (`application/cloudevents-batch+json`)
or either as `application/json`. 204 once every usage event derived from them is acknowledged by Kafka.
A malformed CloudEvent refuses the whole request (400, each bad event named in `extensions.validationErrors`;
nothing stored). Duplicates by (source, id) are successes. Events of a type no meter has are kept and
replayed when such a meter is created; events a meter cannot measure are dead-lettered and listed by
`GET /api/v1/events` with their `validationError`."""


@router.post(
    "/events",
    status_code=204,
    responses=_ERRORS,
    summary="Ingest events (CloudEvents)",
    description=_INGEST_DOC,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/cloudevents+json": {"schema": {"type": "object"}},
                "application/cloudevents-batch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            },
        }
    },
)
async def ingest_events(request: Request, principal: Ingester) -> Response:
    ctype = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", f"content type must be one of {', '.join(CONTENT_TYPES)}")
    data = await _body(request)
    if ctype == "application/cloudevents+json" and not isinstance(data, dict):
        raise ApiError(400, "invalid", "application/cloudevents+json carries one CloudEvent object", field="$")
    if ctype == "application/cloudevents-batch+json" and not isinstance(data, list):
        raise ApiError(400, "invalid", "application/cloudevents-batch+json carries an array of CloudEvents", field="$")
    events = data if isinstance(data, list) else [data]
    if not events:
        raise ApiError(400, "invalid", "the batch holds no events", field="$")
    limit = request.app.state.settings.api_max_events
    if len(events) > limit:
        raise ApiError(413, "too_many_events", f"{len(events)} events in one request; at most {limit}", field="$")
    try:
        await _call(_service(request).ingest_events, principal.tenant, events)
    except BadEnvelopes as exc:
        err = ApiError(400, "invalid_event", f"malformed CloudEvent(s), nothing was stored: {exc}",
                       field=f"[{exc.problems[0][0]}].{exc.problems[0][1]}")  # fmt: skip
        err.problems = [{"index": i, "field": f, "reason": r} for i, f, r in exc.problems]  # type: ignore[attr-defined]
        raise err from None
    return Response(status_code=204)


@router.get("/events", responses=_ERRORS, summary="List ingested events (newest first)")
async def list_events(
    request: Request,
    principal: Reader,
    id: Annotated[str | None, Query(max_length=256)] = None,
    subject: Annotated[str | None, Query(max_length=256)] = None,
    customer_id: Annotated[list[str] | None, Query(alias="customerId")] = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    ingested_at_from: Annotated[str | None, Query(alias="ingestedAtFrom")] = None,
    ingested_at_to: Annotated[str | None, Query(alias="ingestedAtTo")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
) -> Response:
    f = EventFilter(
        id=id, subject=subject, customer_ids=tuple(customer_id or ()),
        start=time_param("from", from_), end=time_param("to", to),
        ingested_from=time_param("ingestedAtFrom", ingested_at_from),
        ingested_to=time_param("ingestedAtTo", ingested_at_to),
        limit=limit,
    )  # fmt: skip
    return _json(await _call(_service(request).list_events, principal.tenant, f))


# -- meters ------------------------------------------------------------------------------------------
@router.get("/meters", responses=_ERRORS, summary="List meters")
async def list_meters(
    request: Request,
    principal: Reader,
    include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
    page: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    page_size: Annotated[int | None, Query(alias="pageSize", ge=1, le=1000)] = None,
) -> Response:
    meters = await _call(_service(request).meters.list, principal.tenant, include_deleted)
    if page is not None or page_size is not None:
        size = page_size or 100
        start = ((page or 1) - 1) * size
        meters = meters[start : start + size]
    return _json([meter_json(m) for m in meters])


@router.post("/meters", status_code=201, responses=_ERRORS, summary="Create a meter (replays unmatched events)")
async def create_meter(request: Request, principal: Admin) -> Response:
    body = _parse(MeterCreateIn, await _body(request))
    definition = MeterDefinition(
        slug=body.slug, event_type=body.event_type, aggregation=body.aggregation, value_property=body.value_property,
        group_by=body.group_by, event_from=body.event_from,
    )  # fmt: skip
    service = _service(request)
    meter = await _call(service.meters.create, principal.tenant, definition, name=body.name,
                        description=body.description, metadata=body.metadata)  # fmt: skip
    # Events of this type that arrived before the meter existed: metered now (their ids are derived, so a
    # replay that repeats after a failure is a duplicate). A Kafka outage here leaves them stored for later.
    try:
        await _call(service.replay_unmatched, principal.tenant, meter.event_type)
    except ApiError as exc:
        if exc.status != 503:
            raise
    return _json(meter_json(meter), 201)


@router.get("/meters/{meterIdOrSlug}", responses=_ERRORS, summary="Get a meter by id or slug")
async def get_meter(request: Request, principal: Reader, meterIdOrSlug: str) -> Response:
    return _json(meter_json(await _call(_service(request).meters.get, principal.tenant, meterIdOrSlug)))


@router.put("/meters/{meterIdOrSlug}", responses=_ERRORS, summary="Update a meter (name, metadata, groupBy)")
async def update_meter(request: Request, principal: Admin, meterIdOrSlug: str) -> Response:
    body = _parse(MeterUpdateIn, await _body(request))
    meter = await _call(_service(request).meters.describe, principal.tenant, meterIdOrSlug, name=body.name,
                        description=body.description, metadata=body.metadata, group_by=body.group_by)  # fmt: skip
    return _json(meter_json(meter))


@router.delete("/meters/{meterIdOrSlug}", status_code=204, responses=_ERRORS, summary="Delete a meter")
async def delete_meter(request: Request, principal: Admin, meterIdOrSlug: str) -> Response:
    await _call(_service(request).meters.delete, principal.tenant, meterIdOrSlug)
    return Response(status_code=204)


def filter_group_by(request: Request) -> dict[str, str]:
    """`filterGroupBy[key]=value` (OpenMeter's deepObject form), or one `filterGroupBy` holding a JSON
    object, or the Python dict text the SDK 1.0.0b236 sends for it (`{'key': 'value'}`)."""
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.startswith("filterGroupBy[") and name.endswith("]"):
            out[name[len("filterGroupBy[") : -1]] = value
        elif name == "filterGroupBy":
            parsed: Any = None
            try:
                parsed = json.loads(value)
            except ValueError:
                try:
                    parsed = ast.literal_eval(value)  # literals only: never evaluates code
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    parsed = None
            if not isinstance(parsed, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in parsed.items()):  # fmt: skip
                raise ApiError(400, "invalid", "must be filterGroupBy[key]=value or a JSON object of strings",
                               field="filterGroupBy")  # fmt: skip
            out.update(parsed)
    return out


async def _meter_query(
    request: Request, principal: Principal, slug: str, from_: str | None, to: str | None, window_size: str | None,
    window_time_zone: str, subject: list[str] | None, filter_customer_id: list[str] | None, group_by: list[str] | None,
    filters: dict[str, str] | None = None,
) -> tuple[meter_query.MeterQuery, list[str], list[dict[str, Any]]]:  # fmt: skip
    """One meter query, from GET's parameters or POST's body; `filters` (POST) instead of `filterGroupBy[...]`."""
    service = _service(request)
    meter = await _call(service.meters.get, principal.tenant, slug)
    customers: list[str] = []
    for cid in filter_customer_id or ():
        try:
            customers.append((await run_in_threadpool(service.customers.get, principal.tenant, cid)).meterstream_id)
        except NotFound:
            customers.append(cid)  # a customer Meterstream knows only from events (a subject no customer claims)
    q = meter_query.MeterQuery(
        tenant=principal.tenant, meter=meter.slug, aggregation=meter.aggregation, meter_group_by=tuple(meter.group_by),
        start=time_param("from", from_), end=time_param("to", to), window_size=window_size, tz=window_time_zone,
        subjects=tuple(subject or ()), customers=tuple(customers),
        filter_group_by=filter_group_by(request) if filters is None else filters,
        group_by=tuple(group_by or ()),
    )  # fmt: skip

    def _run() -> tuple[list[str], list[dict[str, Any]]]:
        sql, params, names = meter_query.plan(q, service.queries.db)
        data = meter_query.rows(q, names, service.queries.query(sql, params))
        ids = {r["customerId"] for r in data if r["customerId"]}
        known = service.customers.by_meterstream_ids(principal.tenant, ids) if ids else {}
        for r in data:
            if r["customerId"] in known:
                r["customerId"] = known[r["customerId"]].id  # OpenMeter's customer id, not the key
        return names, data

    names, data = await _call(_run)
    return q, names, data


@router.get(
    "/meters/{meterIdOrSlug}/query",
    responses={**_ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
    summary="Query a meter (JSON or CSV by Accept)",
)
async def query_meter(
    request: Request,
    principal: Reader,
    meterIdOrSlug: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    window_size: Annotated[str | None, Query(alias="windowSize")] = None,
    window_time_zone: Annotated[str, Query(alias="windowTimeZone", max_length=64)] = "UTC",
    subject: Annotated[list[str] | None, Query()] = None,
    filter_customer_id: Annotated[list[str] | None, Query(alias="filterCustomerId")] = None,
    group_by: Annotated[list[str] | None, Query(alias="groupBy")] = None,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
) -> Response:
    q, names, data = await _meter_query(request, principal, meterIdOrSlug, from_, to, window_size, window_time_zone,
                                        subject, filter_customer_id, group_by)  # fmt: skip
    return _query_answer(request, q, names, data, from_, to)


def _query_answer(
    request: Request, q: meter_query.MeterQuery, names: list[str], data: list[dict[str, Any]], from_: str | None,
    to: str | None,
) -> Response:  # fmt: skip
    if "text/csv" in request.headers.get("accept", ""):
        return Response(meter_query.to_csv(names, data), media_type="text/csv")
    rows = [{**r, "value": json_number(r["value"]) if isinstance(r["value"], Decimal) else r["value"]} for r in data]
    body: dict[str, Any] = {"data": rows}
    if q.start is not None:
        body["from"] = from_
    if q.end is not None:
        body["to"] = to
    if q.window_size is not None:
        body["windowSize"] = q.window_size
    return _json(body)


@router.post(
    "/meters/{meterIdOrSlug}/query",
    responses={**_ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
    summary="Query a meter with the query in the body (JSON or CSV by Accept)",
)
async def query_meter_post(request: Request, principal: Reader, meterIdOrSlug: str) -> Response:
    body = await _optional_body(request, MeterQueryIn)  # the SDK's query_csv_post sends none: the whole meter
    from_, to = _text_time(body.from_), _text_time(body.to)
    q, names, data = await _meter_query(request, principal, meterIdOrSlug, from_, to, body.window_size,
                                        body.window_time_zone, body.subject, body.filter_customer_id, body.group_by,
                                        filters=body.filter_group_by or {})  # fmt: skip
    return _query_answer(request, q, names, data, from_, to)


def _text_time(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@router.get("/meters/{meterIdOrSlug}/group-by/{groupByKey}/values", responses=_ERRORS,
            summary="The values of a meter's group-by in its usage")  # fmt: skip
async def group_by_values(
    request: Request,
    principal: Reader,
    meterIdOrSlug: str,
    groupByKey: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> Response:
    service = _service(request)
    meter = await _call(service.meters.get, principal.tenant, meterIdOrSlug)
    if groupByKey != "subject" and groupByKey not in meter.group_by:
        allowed = ", ".join(["subject", *meter.group_by])
        raise ApiError(400, "invalid", f"not a group-by of meter {meter.slug} (use {allowed})", field="groupByKey")
    key = None if groupByKey == "subject" else groupByKey
    start, end = time_param("from", from_), time_param("to", to)
    return _json(await _call(service.group_values, principal.tenant, meter.slug, key, start, end))


@router.get("/meters/{meterIdOrSlug}/subjects", responses=_ERRORS, summary="Subjects with usage of a meter")
async def meter_subjects(
    request: Request,
    principal: Reader,
    meterIdOrSlug: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> Response:
    service = _service(request)
    meter = await _call(service.meters.get, principal.tenant, meterIdOrSlug)
    start, end = time_param("from", from_), time_param("to", to)
    subjects = await _call(service.meter_subjects, principal.tenant, meter.slug, start, end)
    return _json(subjects)


# -- subjects ----------------------------------------------------------------------------------------
@router.get("/subjects", responses=_ERRORS, summary="List subjects")
async def list_subjects(request: Request, principal: Reader) -> Response:
    return _json([subject_json(s) for s in await _call(_service(request).subjects.list, principal.tenant)])


@router.post("/subjects", responses=_ERRORS, summary="Upsert subjects (by key)")
async def upsert_subjects(request: Request, principal: Admin) -> Response:
    data = await _body(request)
    if not isinstance(data, list):
        raise ApiError(400, "invalid", "the body must be an array of subjects", field="$")
    items = []
    for i, raw in enumerate(data):
        try:
            s = SubjectUpsertIn.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = f"[{i}]." + ".".join(str(p) for p in first["loc"])
            raise ApiError(400, "invalid", first["msg"], field=field) from None
        items.append(SubjectUpsert(s.key, s.display_name, s.metadata, s.current_period_start, s.current_period_end,
                                   s.stripe_customer_id))  # fmt: skip
    out = await _call(_service(request).subjects.upsert, principal.tenant, items)
    return _json([subject_json(s) for s in out])


@router.get("/subjects/{subjectIdOrKey}", responses=_ERRORS, summary="Get a subject by id or key")
async def get_subject(request: Request, principal: Reader, subjectIdOrKey: str) -> Response:
    return _json(subject_json(await _call(_service(request).subjects.get, principal.tenant, subjectIdOrKey)))


@router.delete("/subjects/{subjectIdOrKey}", status_code=204, responses=_ERRORS, summary="Delete a subject")
async def delete_subject(request: Request, principal: Admin, subjectIdOrKey: str) -> Response:
    await _call(_service(request).subjects.delete, principal.tenant, subjectIdOrKey)
    return Response(status_code=204)


# -- customers ---------------------------------------------------------------------------------------
def _customer_input(body: CustomerCreateIn) -> CustomerCreate:
    return CustomerCreate(
        name=body.name, key=body.key, description=body.description, primary_email=body.primary_email,
        currency=body.currency, metadata=body.metadata,
        subject_keys=tuple(body.usage_attribution.subject_keys) if body.usage_attribution else (),
        billing_address=body.billing_address.to_address() if body.billing_address else None, timezone=body.timezone,
    )  # fmt: skip


def _customer_response(customer: Customer, status: int = 200) -> Response:
    response = _json(customer_json(customer), status)
    response.headers["ETag"] = etag(customer.version)
    return response


IfMatch = Annotated[str | None, Header(alias="If-Match", description='Optional: the version you read, e.g. "3"')]


@router.post("/customers", status_code=201, responses=_ERRORS, summary="Create a customer")
async def create_customer(request: Request, principal: Admin) -> Response:
    body = _parse(CustomerCreateIn, await _body(request))
    customer = await _call(_service(request).customers.create, principal.tenant, _customer_input(body))
    return _customer_response(customer, 201)


@router.put("/customers/{customerIdOrKey}", responses=_ERRORS, summary="Replace a customer's OpenMeter fields")
async def update_customer(
    request: Request, principal: Admin, customerIdOrKey: str, if_match: IfMatch = None
) -> Response:
    body = _parse(CustomerCreateIn, await _body(request))
    subjects = body.usage_attribution.subject_keys if body.usage_attribution else None
    customer = await _call(_service(request).customers.replace, principal.tenant, customerIdOrKey,
                           _customer_input(body), subject_keys=subjects,
                           expected_version=expected_version(if_match, None))  # fmt: skip
    return _customer_response(customer)


@router.delete("/customers/{customerIdOrKey}", status_code=204, responses=_ERRORS, summary="Delete a customer")
async def delete_customer_route(
    request: Request, principal: Admin, customerIdOrKey: str, if_match: IfMatch = None
) -> Response:
    service = _service(request)
    expected = expected_version(if_match, None)

    def _delete() -> None:
        external_id = service.customers.get(principal.tenant, customerIdOrKey).meterstream_id
        delete_customer(service.sessions, principal.tenant, external_id, expected)

    await _call(_delete)
    return Response(status_code=204)


@router.get("/customers", responses=_ERRORS, summary="List customers (paginated)")
async def list_customers(
    request: Request,
    principal: Reader,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=1000)] = 100,
    key: str | None = None,
    name: str | None = None,
    primary_email: Annotated[str | None, Query(alias="primaryEmail")] = None,
    subject: str | None = None,
    include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
) -> Response:
    items, total = await _call(_service(request).customers.list, principal.tenant, page=page, page_size=page_size,
                               key=key, name=name, subject=subject, primary_email=primary_email,
                               include_deleted=include_deleted)  # fmt: skip
    return _json({"totalCount": total, "page": page, "pageSize": page_size, "items": [customer_json(c) for c in items]})


@router.get("/customers/{customerIdOrKey}", responses=_ERRORS, summary="Get a customer by id or key")
async def get_customer(request: Request, principal: Reader, customerIdOrKey: str) -> Response:
    return _customer_response(await _call(_service(request).customers.get, principal.tenant, customerIdOrKey))


def mount(app: FastAPI) -> None:
    """Mounted by api/app.py's create_app: the service on app.state, the routes, RFC 7807 errors."""
    app.state.openmeter = OpenMeterService(app.state)
    app.include_router(router)
    from . import entitlement_reads, entitlements, features, portal  # their routes import this module's helpers

    for module in (features, entitlements, entitlement_reads, portal):
        module.mount(app)
    register_error_format(app, PREFIX, render_problem)
