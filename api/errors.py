"""One error type for every route; each API surface renders it in its own shape.

Own API v1: `{"error": {"code", "message", "field"?}}`. A compat layer registers its renderer for its
path prefix with `register_error_format(app, "/compat/openmeter", render)` (RFC 7807, Lago's shape, ...);
auth, rate-limit and size errors raised by the shared dependencies then come out in that shape.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from meterstream.schemas.event import parse_time


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


Renderer = Callable[[Request, ApiError], Response]


def time_param(name: str, value: str | None) -> datetime | None:
    """A query parameter holding an RFC 3339 time (the event schema's form), or a 400 naming it."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ApiError(400, "invalid", str(exc), field=name) from None


def render_own(_request: Request, err: ApiError) -> Response:
    body: dict = {"code": err.code, "message": err.message}
    if err.field is not None:
        body["field"] = err.field
    return Response(orjson.dumps({"error": body}), err.status, err.headers, media_type="application/json")


def register_error_format(app: FastAPI, prefix: str, renderer: Renderer) -> None:
    """Errors on paths under `prefix` are rendered by `renderer` (longest prefix wins)."""
    app.state.error_renderers[prefix] = renderer


def _renderer(request: Request) -> Renderer:
    renderers: dict[str, Renderer] = request.app.state.error_renderers
    path = request.url.path
    best = ""
    for prefix in renderers:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return renderers.get(best, render_own)


_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited", 503: "unavailable",
}  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    app.state.error_renderers = {}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> Response:
        return _renderer(request)(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err = ApiError(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail), headers=exc.headers)
        return _renderer(request)(request, err)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in ("query", "path", "body", "header") else loc) or None
        err = ApiError(400, "invalid", str(first.get("msg", "invalid request")), field=field)
        return _renderer(request)(request, err)
