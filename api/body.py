"""Request bodies of the ingest routes: a size limit while reading, one JSON decode with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request

from meterstream.api.errors import ApiError

_decode = msgspec.json.Decoder().decode


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed `limit` bytes (Content-Length or while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty", field="$")
    try:
        return _decode(body)
    except msgspec.DecodeError as exc:  # also numbers out of range (1e400)
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON ({exc})", field="$") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply", field="$") from None


def event_list(data: Any, max_events: int) -> list[Any]:
    """One event object or an array of them, as a list (1 to `max_events` items)."""
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise ApiError(400, "invalid", "the body must be an event object or an array of events", field="$")
    if not data:
        raise ApiError(400, "invalid", "the array holds no events", field="$")
    if len(data) > max_events:
        raise ApiError(413, "too_many_events", f"{len(data)} events in one request; at most {max_events}", field="$")
    return data
