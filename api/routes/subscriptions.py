"""Subscriptions of the key's tenant: /v1/subscriptions. Writes need an `admin` key, reads `read`.

A subscription is a list of phases, each a plan version over [start, end). POST creates one (one phase,
on the plan's newest version unless `plan_version` says otherwise); `/change` ends the phase in effect at
`at` and starts the new plan's phase there (`at` in the future: a pending change); `/cancel` ends it at
`at`. Optimistic locking as for customers: `version` in the body or `If-Match`; stale -> 409 `version`.
Two subscriptions of one customer on one plan may not overlap in time (409). Nothing may take effect inside
a period the close has invoiced (entities/finalization.py): a `start` or `at` before the end of the customer's
newest finalized period answers 422 `invalid` naming `start` / `at` and the instant from which it may (the store
reads the boundary in the write's own transaction). That boundary is also the end of the newest month closed
for every customer (api/closed_periods.py), for a customer the close did not invoice (no subscription then);
a back-dated change into a period not yet invoiced is accepted. PATCH renames a subscription, moves its end
(`end`: null = it runs on) or, before it starts, its start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from meterstream.api.auth import require
from meterstream.api.closed_periods import closed_until
from meterstream.api.entities_models import (
    Cancel,
    PlanChange,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionUpdate,
    doc_body,
)
from meterstream.api.routes.entity_common import EntityRoute, errors, etag, expected_version, store
from meterstream.entities import plans, subscriptions
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.keys import Principal
from meterstream.schemas.entities import SubscriptionDoc

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
IfMatch = Annotated[str | None, Header(alias="If-Match", description='The version you read, e.g. "3"')]
_WRITE_ERRORS = errors(401, 403, 404, 409, 422, 429, 503)  # 503: the closed months cannot be read (ClickHouse)


def _body(doc: SubscriptionDoc, response: Response) -> dict:
    response.headers["ETag"] = etag(doc.version)
    return doc_body(doc)


def _body_field(field: str) -> str:
    """The store's field path of a one-phase subscription or a change, as the request body names it."""
    for prefix in ("phases[0].", "change."):
        field = field.removeprefix(prefix)
    return {"plan_code": "plan"}.get(field, field)


def _create(state, tenant: str, body: SubscriptionCreate) -> SubscriptionDoc:  # type: ignore[no-untyped-def]
    sessions = state.sessions
    version = body.plan_version
    if version is None:
        try:
            version = plans.get_plan(sessions, tenant, body.plan).version
        except NotFound:
            raise Invalid("plan", f"no plan {body.plan!r}") from None
    try:
        doc = body.to_doc(tenant, version, datetime.now(UTC))
        floor = closed_until(state, tenant, doc.customer, doc.phases[0].start)
        return subscriptions.create_subscription(sessions, doc, finalized_until=floor)
    except Invalid as exc:
        raise Invalid(_body_field(exc.field), exc.reason) from None


def _closed_for(state, tenant: str, external_id: str, at: datetime) -> datetime | None:  # type: ignore[no-untyped-def]
    """The closed-month boundary of the subscription's customer for a write at `at` (api/closed_periods.py); None
    for a subscription the store does not have (the write answers 404)."""
    try:
        customer = subscriptions.get_subscription(state.sessions, tenant, external_id).customer
    except NotFound:
        return None
    return closed_until(state, tenant, customer, at)


def _change(state, tenant: str, external_id: str, plan: str, at: datetime, **kwargs) -> SubscriptionDoc:  # type: ignore[no-untyped-def]
    floor = _closed_for(state, tenant, external_id, at)
    try:
        return subscriptions.change_plan(state.sessions, tenant, external_id, plan, at, finalized_until=floor, **kwargs)
    except Invalid as exc:
        raise Invalid(_body_field(exc.field), exc.reason) from None


def _cancel(state, tenant: str, external_id: str, at: datetime, **kwargs) -> SubscriptionDoc:  # type: ignore[no-untyped-def]
    floor = _closed_for(state, tenant, external_id, at)
    return subscriptions.cancel_subscription(state.sessions, tenant, external_id, at, finalized_until=floor, **kwargs)


@router.post(
    "", response_model=SubscriptionOut, status_code=201, responses=_WRITE_ERRORS, summary="Create a subscription"
)
async def create_subscription(request: Request, response: Response, principal: Admin, body: SubscriptionCreate) -> dict:
    return _body(await store(_create, request.app.state, principal.tenant, body), response)


@router.get("", response_model=SubscriptionList, responses=errors(401, 403, 422, 429), summary="List subscriptions")
async def list_subscriptions(
    request: Request,
    principal: Reader,
    customer: Annotated[str | None, Query(min_length=1, max_length=256, description="only this customer's")] = None,
) -> dict:
    docs = await store(subscriptions.list_subscriptions, request.app.state.sessions, principal.tenant, customer)
    return {"items": [doc_body(d) for d in docs]}


@router.get(
    "/{external_id}",
    response_model=SubscriptionOut,
    responses=errors(401, 403, 404, 422, 429),
    summary="One subscription",
)
async def get_subscription(request: Request, response: Response, principal: Reader, external_id: str) -> dict:
    doc = await store(subscriptions.get_subscription, request.app.state.sessions, principal.tenant, external_id)
    return _body(doc, response)


@router.post(
    "/{external_id}/change",
    response_model=SubscriptionOut,
    responses=_WRITE_ERRORS,
    summary="Upgrade, downgrade or schedule a plan change at `at`",
)
async def change_plan(
    request: Request,
    response: Response,
    principal: Admin,
    external_id: str,
    body: PlanChange,
    if_match: IfMatch = None,
) -> dict:
    at = (body.at or datetime.now(UTC)).astimezone(UTC)
    doc = await store(
        _change, request.app.state, principal.tenant, external_id, body.plan, at,
        plan_version=body.plan_version, expected_version=expected_version(if_match, body.version),
    )  # fmt: skip
    return _body(doc, response)


@router.post(
    "/{external_id}/cancel",
    response_model=SubscriptionOut,
    responses=_WRITE_ERRORS,
    summary="Cancel a subscription at `at` (default now)",
)
async def cancel_subscription(
    request: Request,
    response: Response,
    principal: Admin,
    external_id: str,
    body: Cancel,
    if_match: IfMatch = None,
) -> dict:
    at = (body.at or datetime.now(UTC)).astimezone(UTC)
    doc = await store(
        _cancel, request.app.state, principal.tenant, external_id, at,
        expected_version=expected_version(if_match, body.version),
    )  # fmt: skip
    return _body(doc, response)


def _update(state, tenant: str, external_id: str, changes: dict, expected: int | None) -> SubscriptionDoc:  # type: ignore[no-untyped-def]
    if "start" in changes and changes["start"] is None:
        raise Invalid("start", "an instant (a subscription cannot lose its start)")
    at = min((changes[k] for k in ("start", "end") if changes.get(k) is not None), default=datetime.now(UTC))
    floor = _closed_for(state, tenant, external_id, at)
    return subscriptions.update_subscription(state.sessions, tenant, external_id, expected_version=expected,
                                             finalized_until=floor, **changes)  # fmt: skip


@router.patch(
    "/{external_id}",
    response_model=SubscriptionOut,
    responses=_WRITE_ERRORS,
    summary="Rename a subscription, move its end, or its start before it starts",
)
async def update_subscription(
    request: Request,
    response: Response,
    principal: Admin,
    external_id: str,
    body: SubscriptionUpdate,
    if_match: IfMatch = None,
) -> dict:
    """Only the fields in the body change: `{"end": null}` removes the end, a body without `end` keeps it."""
    changes = {k: getattr(body, k) for k in ("name", "start", "end") if k in body.model_fields_set}
    changes = {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in changes.items()}
    doc = await store(_update, request.app.state, principal.tenant, external_id, changes,
                      expected_version(if_match, body.version))  # fmt: skip
    return _body(doc, response)
