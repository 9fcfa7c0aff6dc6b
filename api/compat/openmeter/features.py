"""OpenMeter's features at /compat/openmeter (docs/entitlements.md): `features.create/list/get/delete` (delete
archives)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from meterstream.api.errors import ApiError
from meterstream.entities.common import Invalid
from meterstream.entities.entitlements import Feature

from .entitlement_models import FeatureIn, Limit, Offset, V1Page, V1PageSize, feature_json, v1_page
from .routes import _ERRORS, PREFIX, Admin, Reader, _body, _call, _json, _parse, _service

v1 = APIRouter(prefix=f"{PREFIX}/api/v1", tags=["openmeter"])
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")


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
    page: V1Page = None,
    page_size: V1PageSize = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Response:
    repo = _service(request).entitlements
    features = await _call(repo.features, principal.tenant, include_archived, tuple(meter_slug or ()))
    return _json(v1_page([feature_json(f) for f in features], page, page_size, offset, limit))


@v1.get("/features/{featureId}", responses=_ERRORS, summary="Get a feature by id or key")
async def get_feature(request: Request, principal: Reader, featureId: str) -> Response:
    return _json(feature_json(await _call(_service(request).entitlements.feature, principal.tenant, featureId)))


@v1.delete("/features/{featureId}", status_code=204, responses=_ERRORS, summary="Archive a feature")
async def delete_feature(request: Request, principal: Admin, featureId: str) -> Response:
    await _call(_service(request).entitlements.archive_feature, principal.tenant, featureId)
    return Response(status_code=204)


def mount(app: FastAPI) -> None:
    app.include_router(v1)


__all__ = ["mount"]
