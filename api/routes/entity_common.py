"""What the entity routes (customers, plans, subscriptions) share: their route class, the store call and its
error mapping, the optimistic-lock version from the body or `If-Match`, and the documented error codes.

Errors, in the own API's format `{"error": {"code", "message", "field"}}`:
- 422 `invalid`: the request or the entity is invalid (a body that does not have the documented shape,
  a bad parameter, or what the store's rules refuse: tiers, currencies, overlaps, ...), `field` names it;
- 404 `not_found`; 409 `conflict`: a stale `version`, a taken id, an overlap, a plan still in use,
  an edit of a published plan version (`field` names what conflicts).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from meterstream.api.errors import ApiError
from meterstream.api.models import ErrorBody
from meterstream.entities.common import Conflict, Invalid, NotFound

T = TypeVar("T")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = list(loc[1:] if loc and loc[0] in ("query", "path", "body", "header") else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


class EntityRoute(APIRoute):
    """Request validation errors of these routes answer 422 `invalid` naming the field (the store's rules
    answer the same way), not the 400 the ingest routes use for a body that is not an event."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
                loc = tuple(first.get("loc", ()))
                if first.get("type") == "extra_forbidden":
                    message = "unknown field"
                if first.get("type") == "json_invalid":
                    at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
                    raise ApiError(422, "invalid", f"the body is not valid JSON{at}") from None
                raise ApiError(422, "invalid", message, field=_field(loc)) from None
            except HTTPException as exc:  # a body FastAPI cannot read at all (not UTF-8, ...)
                if exc.status_code != 400:
                    raise
                raise ApiError(422, "invalid", f"the body is not a JSON document ({exc.detail})") from None

        return route_handler


async def store(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a repository function off the event loop; its errors become the API's."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc.args[0]) if exc.args else str(exc)) from None  # as raised
    except Invalid as exc:
        raise ApiError(422, "invalid", str(exc), field=getattr(exc, "field", None)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc), field=exc.field) from None


def expected_version(if_match: str | None, body_version: int | None) -> int | None:
    """The version the client read: `If-Match` (`"3"`, `3` or `W/"3"`) or the body's `version`; both must agree."""
    header = None
    if if_match is not None:
        raw = if_match.strip().removeprefix("W/").strip('"')
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
            raise ApiError(422, "invalid", 'must be a version number such as "3"', field="If-Match")
        header = int(raw)
    if header is not None and body_version is not None and header != body_version:
        raise ApiError(422, "invalid", f"If-Match {header} and body version {body_version} differ", field="version")
    return header if header is not None else body_version


def etag(version: int) -> str:
    return f'"{version}"'
