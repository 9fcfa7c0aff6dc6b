"""Lago's webhooks at /compat/lago/api/v1 (docs/lago.md "Webhooks"): endpoints and the signing key, and the payloads
their receivers get.

`webhook_endpoints.create/find/find_all/update/destroy` and `webhooks.public_key` of lago-python-client work
unchanged (also `GET /webhooks/public_key`, the key as text). An endpoint registered here is a Lago-format endpoint
of the tenant's (webhooks/endpoints.py): the webhook dispatcher sends it Lago's messages,
`{"webhook_type": ..., "object_type": ..., <object_type>: <the object>}`, for the events Lago has
(webhooks/events.py LAGO_TYPES), signed as its `signature_algo` says (webhooks/lago_signing.py), the object being
what the matching GET answers (an invoice: `GET /invoices/{lago_id}`), as it is when the message is first sent.
A JWT names as issuer the URL this API was reached at when the endpoint was created (`<origin>/compat/lago`), the
`api_url` a receiver that verifies like Lago's documentation compares with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.invoices import credit_note_object, stored_customer_object, stored_invoice_object
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.api.compat.lago.responses import error_body, page_of, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body
from meterstream.api.compat.lago.subscriptions import LagoSubscriptions
from meterstream.api.compat.lago.wallets import transaction_object
from meterstream.entities import credit_notes, invoices, wallets
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.lago_subscriptions import LagoSubscriptionRepository
from meterstream.schemas.event import format_time
from meterstream.webhooks import endpoints as store
from meterstream.webhooks.events import LAGO_TYPES
from meterstream.webhooks.lago_keys import keys_for
from meterstream.webhooks.lago_signing import public_key_text

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)
_encode = msgspec.json.Encoder(decimal_format="number").encode  # rates as JSON numbers, as the GET routes


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_encode(body), status, media_type="application/json")


def endpoint_object(ep: store.Endpoint) -> dict[str, Any]:
    return {
        "lago_id": ep.endpoint_id, "lago_organization_id": lago_uuid(ep.tenant, "organization"),
        "webhook_url": ep.url, "signature_algo": ep.signature_algo, "name": ep.description or None,
        "event_types": list(ep.event_types) or None, "created_at": format_time(ep.created_at),
    }  # fmt: skip


def render(sf: sessionmaker, tenant: str, event_type: str, event_body: bytes) -> bytes:
    """The Lago message of one of the tenant's lifecycle events (webhooks/events.py): the dispatcher's renderer for
    Lago-format endpoints. NotFound when what it announces is no longer stored."""
    webhook_type, object_type = LAGO_TYPES[event_type]
    data = orjson.loads(event_body)["data"]
    if object_type == "invoice":
        obj = stored_invoice_object(sf, invoices.get(sf, tenant, data["invoice_id"]), {})
        if obj["invoice_type"] == "one_off" and webhook_type == "invoice.created":
            webhook_type = "invoice.one_off_created"  # Lago's name for an issued one-off invoice
    elif object_type == "credit_note":
        obj = credit_note_object(credit_notes.get_credit_note(sf, tenant, data["credit_note_id"]))
    elif object_type == "wallet_transaction":
        obj = transaction_object(*wallets.get_transaction(sf, tenant, data["transaction_id"]))
    elif object_type == "customer":
        obj = stored_customer_object(sf, tenant, data["customer"])
    elif object_type == "subscription":  # as GET /subscriptions/{external_id} answers it when first sent
        obj = LagoSubscriptions(sf, LagoSubscriptionRepository(sf)).find(tenant, data["subscription"])
    else:  # events_errors: the lists themselves (webhooks/lago_digest.py)
        obj = {k: data[k] for k in ("invalid_code", "missing_aggregation_property", "invalid_filter_values",
                                    "missing_group_key")}  # fmt: skip
    return _encode({"webhook_type": webhook_type, "object_type": object_type, object_type: obj})


class WebhookEndpointOut(BaseModel):
    webhook_endpoint: dict[str, Any]


class WebhookEndpointsOut(BaseModel):
    webhook_endpoints: list[dict[str, Any]]
    meta: dict[str, Any]


class PublicKeyOut(BaseModel):
    webhook: dict[str, str]


async def _run(fn: Any) -> Response:
    try:
        return await run_in_threadpool(fn)
    except NotFound:
        return _json(error_body(404, "webhook_endpoint_not_found"), 404)
    except Invalid as exc:
        return _json(validation_error({exc.field or "base": [exc.reason]}), 422)


def _one(fn: Callable[[sessionmaker, str, str], store.Endpoint], request: Request, tenant: str, lago_id: str
         ) -> Callable[[], Response]:  # fmt: skip
    """The answer of one endpoint that `fn` reads or changes, to run in the thread pool."""
    sf = request.app.state.sessions
    return lambda: _json({"webhook_endpoint": endpoint_object(fn(sf, tenant, lago_id))})


def _issuer(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@router.post("/webhook_endpoints", summary="Create a webhook endpoint (Lago: createWebhookEndpoint)",
             responses=m.answers(WebhookEndpointOut, *WRITE))  # fmt: skip
async def create_endpoint(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "webhook_endpoint")
    sf, issuer = request.app.state.sessions, _issuer(request)

    def run() -> Response:
        if not isinstance(raw, dict):
            raise Invalid("webhook_endpoint", "must be a JSON object")
        ep = store.register_lago(sf, principal.tenant, raw.get("webhook_url"), signature_algo=raw.get("signature_algo"),
                                 name=raw.get("name"), event_types=raw.get("event_types"), issuer=issuer)  # fmt: skip
        keys_for(sf, principal.tenant)  # made now, not by the first message
        return _json({"webhook_endpoint": endpoint_object(ep)})

    return await _run(run)


@router.get(
    "/webhook_endpoints", summary="List webhook endpoints", responses=m.answers(WebhookEndpointsOut, *AUTH, 400)
)
async def list_endpoints(
    request: Request, principal: Read, page: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:  # fmt: skip
    found = await run_in_threadpool(store.list_lago, request.app.state.sessions, principal.tenant)
    shown = found[(page - 1) * per_page : page * per_page]
    return _json({"webhook_endpoints": [endpoint_object(e) for e in shown],
                  "meta": page_of(shown, len(found), page, per_page)})  # fmt: skip


@router.get("/webhook_endpoints/{lago_id}", summary="Retrieve a webhook endpoint",
            responses=m.answers(WebhookEndpointOut, *READ))  # fmt: skip
async def get_endpoint(request: Request, principal: Read, lago_id: str) -> Response:
    return await _run(_one(store.get_lago, request, principal.tenant, lago_id))


@router.put("/webhook_endpoints/{lago_id}", summary="Update a webhook endpoint",
            responses=m.answers(WebhookEndpointOut, *WRITE, 404))  # fmt: skip
async def update_endpoint(request: Request, principal: Admin, lago_id: str) -> Response:
    raw = await _body(request, "webhook_endpoint")
    sf = request.app.state.sessions

    def run() -> Response:
        if not isinstance(raw, dict):
            raise Invalid("webhook_endpoint", "must be a JSON object")
        fields = ("webhook_url", "signature_algo", "name", "event_types")
        ep = store.update_lago(sf, principal.tenant, lago_id, {k: raw[k] for k in fields if k in raw})
        return _json({"webhook_endpoint": endpoint_object(ep)})

    return await _run(run)


@router.delete("/webhook_endpoints/{lago_id}", summary="Delete a webhook endpoint (its pending messages are dropped)",
               responses=m.answers(WebhookEndpointOut, *READ))  # fmt: skip
async def delete_endpoint(request: Request, principal: Admin, lago_id: str) -> Response:
    return await _run(_one(store.delete_lago, request, principal.tenant, lago_id))


@router.get("/webhooks/public_key", summary="The key that verifies JWT-signed webhooks: base64 of its PEM",
            response_class=PlainTextResponse, responses={401: {}, 403: {}, 429: {}})  # fmt: skip
async def public_key(request: Request, principal: Read) -> PlainTextResponse:
    keys = await run_in_threadpool(keys_for, request.app.state.sessions, principal.tenant)
    return PlainTextResponse(public_key_text(keys))


@router.get("/webhooks/json_public_key", summary="The key that verifies JWT-signed webhooks (Lago: fetchPublicKey)",
            responses=m.answers(PublicKeyOut, *AUTH))  # fmt: skip
async def json_public_key(request: Request, principal: Read) -> Response:
    keys = await run_in_threadpool(keys_for, request.app.state.sessions, principal.tenant)
    return _json({"webhook": {"public_key": public_key_text(keys)}})


__all__ = ["endpoint_object", "render", "router"]
