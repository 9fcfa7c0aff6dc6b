"""POST /v1/events: one event or an array (at most Settings.api_max_events, 10,000 by default).

Status codes (documented in the OpenAPI description):
- 200: the request was processed; every event has a result, in input order: `accepted` (stored in
  Kafka, acknowledged), `duplicate` (an id this API already stored, or earlier in the request:
  not stored again) or `rejected` (`field` + `reason`; also written to the dead letters). A batch is
  never refused as a whole for one bad event or a duplicate (Lago #3049): 200 with per-event results,
  even when every event is rejected. Retrying the same request is always safe.
- 400 body is not JSON / not an event or array / empty; 401 no or bad key; 403 key may not ingest,
  or an event names another tenant (nothing of that request is stored); 413 body or event count over
  the limit; 429 the key's rate is exceeded (Retry-After); 503 Kafka did not acknowledge in time
  (Retry-After; nothing is reported stored: retry the whole request).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from meterstream.api.auth import require
from meterstream.api.body import decode_json, event_list, read_body
from meterstream.api.errors import ApiError
from meterstream.api.ingest import Unavailable
from meterstream.api.metrics import count_events
from meterstream.api.models import ErrorBody, IngestResponse
from meterstream.entities.keys import Principal

_encode = msgspec.json.Encoder().encode
_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "usage_event.v1.json"


def event_schema(max_events: int) -> dict[str, Any]:
    """The request body's schema: usage event v1 without `tenant` required (the key decides it)."""
    event = json.loads(_SCHEMA.read_text())
    for k in ("$schema", "$id"):
        event.pop(k, None)
    event["required"] = [r for r in event["required"] if r != "tenant"]
    event["properties"]["tenant"]["description"] = "Optional; must equal the API key's tenant (else 403)."
    return {
        "oneOf": [
            event,
            {"type": "array", "items": event, "minItems": 1, "maxItems": max_events},
        ]
    }


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


async def ingest_events(request: Request, principal: Principal) -> Response:
    settings = request.app.state.settings
    body = await read_body(request, settings.api_max_body_bytes)
    events = event_list(decode_json(body), settings.api_max_events)
    for i, ev in enumerate(events):
        if isinstance(ev, dict) and ev.get("tenant") not in (None, principal.tenant):
            raise ApiError(403, "forbidden", "an event names a tenant other than the API key's; nothing was stored",
                           field=f"[{i}].tenant")  # fmt: skip
    try:
        results = await request.app.state.ingest.asubmit(principal.tenant, events)
    except Unavailable as exc:
        raise ApiError(503, "unavailable", f"{exc.reason}; nothing is reported stored, retry the request",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None  # fmt: skip
    count_events(results)
    accepted = sum(1 for r in results if r.status == "accepted")
    rejected = sum(1 for r in results if r.status == "rejected")
    out = {"accepted": accepted, "duplicates": len(results) - accepted - rejected, "rejected": rejected,
           "results": results}  # fmt: skip
    return Response(_encode(out), 200, media_type="application/json")


def make_router(settings: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["events"])

    @router.post(
        "/events",
        response_model=IngestResponse,
        responses=_errors(400, 401, 403, 413, 429, 503),
        summary="Send usage events",
        description=__doc__,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": event_schema(settings.api_max_events)}},
            }
        },
    )
    async def post_events(request: Request, principal: Annotated[Principal, Depends(require("ingest"))]) -> Response:
        return await ingest_events(request, principal)

    return router
