"""OpenMeter's portal at /compat/openmeter (docs/openmeter.md, "Portal tokens"): `portal.portal_tokens.create`,
`list`, `invalidate` (admin keys) and `portal.portal_meters.query_json` / `query_csv`, which a portal token itself
calls: the meter query (routes.py) restricted to the token's subject and allowed meters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import Field

from meterstream.api.auth import bearer
from meterstream.api.errors import ApiError
from meterstream.entities.keys import Principal
from meterstream.entities.portal_tokens import PortalToken, PortalTokenRepository

from .entitlement_values import now_utc
from .models import _In
from .routes import _ERRORS, PREFIX, Admin, _body, _call, _json, _meter_query, _optional_body, _parse, _query_answer

router = APIRouter(prefix=f"{PREFIX}/api/v1/portal", tags=["openmeter"])
TOKEN_LIFETIME = timedelta(hours=24)  # how long a new portal token is good for


class PortalTokenIn(_In):
    subject: str = Field(min_length=1, max_length=256)
    allowed_meter_slugs: list[str] | None = Field(None, alias="allowedMeterSlugs", max_length=100)


class InvalidateIn(_In):
    id: str | None = Field(None, max_length=26)
    subject: str | None = Field(None, max_length=256)


def _t(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_json(t: PortalToken, now: datetime, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": t.id, "subject": t.subject, "expiresAt": _t(t.expires_at),
                            "expired": not t.valid_at(now), "createdAt": _t(t.created_at)}  # fmt: skip
    if t.allowed_meter_slugs is not None:
        body["allowedMeterSlugs"] = list(t.allowed_meter_slugs)
    if token is not None:
        body["token"] = token  # only when created
    return body


def _repo(request: Request) -> PortalTokenRepository:
    return request.app.state.openmeter.portal_tokens


@router.post("/tokens", responses=_ERRORS, summary="Create a portal token for one subject")
async def create_token(request: Request, principal: Admin) -> Response:
    body = _parse(PortalTokenIn, await _body(request))
    now = now_utc()
    token, text = await _call(_repo(request).create, principal.tenant, body.subject, body.allowed_meter_slugs, now,
                              TOKEN_LIFETIME)  # fmt: skip
    return _json(token_json(token, now, text))


@router.get("/tokens", responses=_ERRORS, summary="List portal tokens, newest first")
async def list_tokens(request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 25) -> Response:
    now = now_utc()
    return _json([token_json(t, now) for t in await _call(_repo(request).list, principal.tenant, limit)])


@router.post("/tokens/invalidate", status_code=204, responses=_ERRORS, summary="Invalidate portal tokens")
async def invalidate_tokens(request: Request, principal: Admin) -> Response:
    body = await _optional_body(request, InvalidateIn)
    await _call(_repo(request).invalidate, principal.tenant, body.id, body.subject)
    return Response(status_code=204)


async def portal_token(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> PortalToken:
    """The caller's portal token (401 when missing, unknown, invalidated or expired)."""
    token = None
    if creds is not None:
        token = await _call(_repo(request).authenticate, creds.credentials, now_utc())
    if token is None:
        raise ApiError(401, "unauthenticated", "missing, unknown, invalidated or expired portal token",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    wait = request.app.state.rate_limiter.take(f"portal:{token.id}")
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many requests for this portal token")
    return token


@router.get(
    "/meters/{meterSlug}/query",
    responses={**_ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
    summary="Query a meter as the portal token's subject (JSON or CSV by Accept)",
)
async def portal_query(
    request: Request,
    token: Annotated[PortalToken, Depends(portal_token)],
    meterSlug: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    window_size: Annotated[str | None, Query(alias="windowSize")] = None,
    window_time_zone: Annotated[str, Query(alias="windowTimeZone", max_length=64)] = "UTC",
    group_by: Annotated[list[str] | None, Query(alias="groupBy")] = None,
) -> Response:
    if not token.allows(meterSlug):
        raise ApiError(403, "forbidden", f"this portal token may not read meter {meterSlug}")
    reader = Principal(token.tenant, "read", f"portal:{token.id}")
    q, names, data = await _meter_query(request, reader, meterSlug, from_, to, window_size, window_time_zone,
                                        [token.subject], None, group_by)  # fmt: skip
    return _query_answer(request, q, names, data, from_, to)


def mount(app: FastAPI) -> None:
    """Mounted by routes.mount."""
    app.state.openmeter.portal_tokens = PortalTokenRepository(app.state.sessions)
    app.include_router(router)


__all__ = ["mount"]
