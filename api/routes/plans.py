"""Plans with versions, of the key's tenant: /v1/plans. Writes need an `admin` key, reads `read`.

POST /v1/plans publishes: a new immutable version N+1 (201) when the plan differs from its newest
version, else the newest version unchanged (200), so sending the same plan twice changes nothing.
A published version is never edited (PUT on it: 409 "published versions are immutable"); subscriptions
move to a new version with POST /v1/subscriptions/{id}/change. DELETE is refused (409) while a
subscription phase that has not ended uses the plan.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from meterstream.api.auth import require
from meterstream.api.entities_models import MAX_INT, PlanCreate, PlanList, PlanOut, doc_body
from meterstream.api.errors import ApiError
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.entities import plans
from meterstream.entities.keys import Principal

router = APIRouter(prefix="/v1/plans", tags=["plans"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
VersionPath = Annotated[int, Path(ge=1, le=MAX_INT)]
_READ_ERRORS = errors(401, 403, 404, 422, 429)


@router.post(
    "",
    response_model=PlanOut,
    status_code=201,
    responses={
        200: {"model": PlanOut, "description": "Identical to the newest version: nothing was published"},
        **errors(401, 403, 409, 422, 429),
    },
    summary="Publish a plan version (only when it differs from the newest one)",
)
async def publish_plan(request: Request, response: Response, principal: Admin, body: PlanCreate) -> dict:
    doc, created = await store(plans.publish_plan, request.app.state.sessions, body.to_doc(principal.tenant))
    if not created:
        response.status_code = 200
    return doc_body(doc)


@router.get("", response_model=PlanList, responses=errors(401, 403, 422, 429), summary="Plans (newest version of each)")
async def list_plans(request: Request, principal: Reader) -> dict:
    docs = await store(plans.list_plans, request.app.state.sessions, principal.tenant)
    return {"items": [doc_body(d) for d in docs]}


@router.get("/{code}", response_model=PlanOut, responses=_READ_ERRORS, summary="A plan's newest version")
async def get_plan(request: Request, principal: Reader, code: str) -> dict:
    return doc_body(await store(plans.get_plan, request.app.state.sessions, principal.tenant, code, None))


@router.get("/{code}/versions", response_model=PlanList, responses=_READ_ERRORS, summary="Every version of a plan")
async def plan_versions(request: Request, principal: Reader, code: str) -> dict:
    docs = await store(plans.plan_versions, request.app.state.sessions, principal.tenant, code)
    if not docs:
        raise ApiError(404, "not_found", f"plan {code!r} not found")
    return {"items": [doc_body(d) for d in docs]}


@router.get("/{code}/versions/{version}", response_model=PlanOut, responses=_READ_ERRORS, summary="One plan version")
async def get_plan_version(request: Request, principal: Reader, code: str, version: VersionPath) -> dict:
    return doc_body(await store(plans.get_plan, request.app.state.sessions, principal.tenant, code, version))


@router.put(
    "/{code}/versions/{version}",
    responses=errors(401, 403, 404, 409, 422, 429),
    summary="Refused: published versions are immutable (POST /v1/plans publishes a new one)",
)
async def put_plan_version(request: Request, principal: Admin, code: str, version: VersionPath) -> Response:
    await store(plans.get_plan, request.app.state.sessions, principal.tenant, code, version)  # 404 when missing
    msg = "published versions are immutable; POST /v1/plans publishes a new version"
    raise ApiError(409, "conflict", msg, field="version")


@router.delete(
    "/{code}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404, 409, 422, 429),
    summary="Delete a plan (refused while a subscription that has not ended uses it)",
)
async def delete_plan(request: Request, principal: Admin, code: str) -> Response:
    await store(plans.delete_plan, request.app.state.sessions, principal.tenant, code)
    return Response(status_code=204)
