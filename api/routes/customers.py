"""Customers (billing details) of the key's tenant: /v1/customers. Writes need an `admin` key, reads `read`.

POST creates the customer or updates the one with that `external_id` (201 created, 200 updated);
PUT /v1/customers/{external_id} replaces it; DELETE removes it (refused while a subscription of it has
not ended). Optimistic locking: send the `version` you read (body) or `If-Match: "<version>"`; if the
customer changed since, the answer is 409 naming `version`. Every answer carrying a customer has its
version as `ETag`. One customer table serves every API (the OpenMeter customer `key` is the external id).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from meterstream.api.auth import require
from meterstream.api.entities_models import (
    MAX_INT,
    CustomerCreate,
    CustomerDetailOut,
    CustomerList,
    CustomerOut,
    CustomerUpdate,
    doc_body,
)
from meterstream.api.errors import ApiError
from meterstream.api.routes.entity_common import EntityRoute, errors, etag, expected_version, store
from meterstream.entities import customers, finalization
from meterstream.entities.common import NotFound
from meterstream.entities.keys import Principal
from meterstream.schemas.entities import CustomerDoc

router = APIRouter(prefix="/v1/customers", tags=["customers"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_WRITE_ERRORS = errors(401, 403, 404, 409, 422, 429)
IfMatch = Annotated[str | None, Header(alias="If-Match", description='The version you read, e.g. "3"')]


def _put(sessions, doc: CustomerDoc, expected: int | None) -> tuple[CustomerDoc, bool]:  # type: ignore[no-untyped-def]
    """(stored document, created?)."""
    try:
        customers.get_customer_doc(sessions, doc.tenant, doc.external_id)
        existed = True
    except NotFound:
        existed = False
    return customers.put_customer(sessions, doc, expected), not existed


def _body(doc: CustomerDoc, response: Response) -> dict:
    response.headers["ETag"] = etag(doc.version)
    return doc_body(doc)


@router.post(
    "",
    response_model=CustomerOut,
    status_code=201,
    responses={200: {"model": CustomerOut, "description": "An existing customer was updated"}, **_WRITE_ERRORS},
    summary="Create a customer, or update the one with this external_id",
)
async def create_customer(
    request: Request, response: Response, principal: Admin, body: CustomerCreate, if_match: IfMatch = None
) -> dict:
    doc = body.to_doc(principal.tenant, body.external_id)
    saved, created = await store(_put, request.app.state.sessions, doc, expected_version(if_match, body.version))
    response.status_code = 201 if created else 200
    return _body(saved, response)


@router.get("", response_model=CustomerList, responses=errors(401, 403, 422, 429), summary="List customers")
async def list_customers(
    request: Request,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> dict:
    docs = await store(customers.list_customer_docs, request.app.state.sessions, principal.tenant, limit, offset)
    return {"items": [doc_body(d) for d in docs], "limit": limit, "offset": offset,
            "next_offset": offset + len(docs) if len(docs) == limit else None}  # fmt: skip


def _detail(sessions, tenant: str, external_id: str) -> dict:  # type: ignore[no-untyped-def]
    doc = customers.get_customer_doc(sessions, tenant, external_id)
    return {"doc": doc, "finalized_until": finalization.finalized_until(sessions, tenant, external_id)}


@router.get(
    "/{external_id}",
    response_model=CustomerDetailOut,
    responses=errors(401, 403, 404, 422, 429),
    summary="One customer (with the end of its invoiced periods)",
)
async def get_customer(request: Request, response: Response, principal: Reader, external_id: str) -> dict:
    found = await store(_detail, request.app.state.sessions, principal.tenant, external_id)
    return {**_body(found["doc"], response), "finalized_until": found["finalized_until"]}


@router.put(
    "/{external_id}",
    response_model=CustomerOut,
    responses={201: {"model": CustomerOut, "description": "The customer was created"}, **_WRITE_ERRORS},
    summary="Replace a customer (created when missing)",
)
async def put_customer(
    request: Request,
    response: Response,
    principal: Admin,
    external_id: str,
    body: CustomerUpdate,
    if_match: IfMatch = None,
) -> dict:
    if body.external_id is not None and body.external_id != external_id:
        raise ApiError(422, "invalid", f"differs from the path's {external_id!r}", field="external_id")
    doc = body.to_doc(principal.tenant, external_id)
    saved, created = await store(_put, request.app.state.sessions, doc, expected_version(if_match, body.version))
    response.status_code = 201 if created else 200
    return _body(saved, response)


@router.delete(
    "/{external_id}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404, 409, 422, 429),
    summary="Delete a customer (refused while one of its subscriptions has not ended)",
)
async def delete_customer(request: Request, principal: Admin, external_id: str, if_match: IfMatch = None) -> Response:
    expected = expected_version(if_match, None)
    await store(customers.delete_customer, request.app.state.sessions, principal.tenant, external_id, expected)
    return Response(status_code=204)
