"""Add-ons of the key's tenant (docs/add-ons.md): catalog items billed once, on one-off invoices. Writes need an
`admin` key, reads `read`.

- POST /v1/add_ons creates one (201; 409 `conflict` naming `code` when the tenant has it);
- GET /v1/add_ons lists them, oldest first, by pages; GET /v1/add_ons/{code} reads one;
- PATCH /v1/add_ons/{code} changes the fields sent (`code` renames it);
- DELETE /v1/add_ons/{code} deletes it and answers what was deleted (invoices keep their own lines).
Errors: 422 `invalid` naming the field, 404 `not_found`, 409 `conflict` (entity_common.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from meterstream.api.add_ons_models import AddOnCreate, AddOnList, AddOnOut, AddOnPatch, add_on_out
from meterstream.api.auth import require
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.entities import add_ons
from meterstream.entities.keys import Principal

router = APIRouter(tags=["add-ons"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_WRITE = errors(401, 403, 404, 409, 422, 429)
_READ = errors(401, 403, 404, 422, 429)


@router.post("/v1/add_ons", response_model=AddOnOut, status_code=201, responses=_WRITE, summary="Create an add-on")
async def create_add_on(request: Request, principal: Admin, body: AddOnCreate) -> dict:
    made = await store(add_ons.create_add_on, request.app.state.sessions, principal.tenant, **body.to_kwargs())
    return add_on_out(made)


@router.get("/v1/add_ons", response_model=AddOnList, responses=_READ, summary="List the add-ons")
async def list_add_ons(
    request: Request,
    principal: Reader,
    page: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    found, total = await store(add_ons.list_add_ons, request.app.state.sessions, principal.tenant, page=page,
                               per_page=per_page)  # fmt: skip
    return {"items": [add_on_out(a) for a in found], "page": page, "per_page": per_page, "total": total}


@router.get("/v1/add_ons/{code}", response_model=AddOnOut, responses=_READ, summary="One add-on")
async def get_add_on(request: Request, principal: Reader, code: str) -> dict:
    return add_on_out(await store(add_ons.get_add_on, request.app.state.sessions, principal.tenant, code))


@router.patch("/v1/add_ons/{code}", response_model=AddOnOut, responses=_WRITE,
              summary="Change an add-on (the fields sent)")  # fmt: skip
async def update_add_on(request: Request, principal: Admin, code: str, body: AddOnPatch) -> dict:
    changed = await store(add_ons.update_add_on, request.app.state.sessions, principal.tenant, code,
                          **body.to_kwargs())  # fmt: skip
    return add_on_out(changed)


@router.delete("/v1/add_ons/{code}", response_model=AddOnOut, responses=_WRITE,
               summary="Delete an add-on (issued invoices keep their lines)")  # fmt: skip
async def delete_add_on(request: Request, principal: Admin, code: str) -> dict:
    return add_on_out(await store(add_ons.delete_add_on, request.app.state.sessions, principal.tenant, code))
