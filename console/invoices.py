"""Invoices of the tenant, a page at a time and by status (drafts: the open periods' running invoices), with links
to each invoice as HTML and PDF, rendered by the one rendering path (documents/stored.py `render_stored`) from the
store's record (entities/invoices.py, entities/invoice_lists.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.console.web import User, error_page, page
from meterstream.documents.stored import StoredDocumentError, render_stored
from meterstream.entities import invoice_lists, invoices
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.invoice_rules import STATUSES

router = APIRouter()
PAGE = 50
_MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


@router.get("/invoices")
async def invoice_list(
    request: Request,
    user: User,
    status: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    status = status or None
    if status is not None and status not in STATUSES:
        return error_page(request, user, 400, f"status: one of {', '.join(STATUSES)}")
    try:
        found = await run_in_threadpool(lambda: invoice_lists.invoice_page(
            request.app.state.sessions, user.tenant, statuses=None if status is None else (status,), limit=PAGE,
            cursor=cursor))  # fmt: skip
    except Invalid as exc:  # a cursor that is not one of ours
        return error_page(request, user, 400, str(exc))
    return page(request, "invoices.html", user, invoices=found.items, next_cursor=found.next_cursor, status=status,
                statuses=STATUSES)  # fmt: skip


@router.get("/invoices/{invoice_id}.{fmt}")
async def invoice_file(request: Request, user: User, invoice_id: str, fmt: str) -> Response:
    if fmt not in _MEDIA:
        return error_page(request, user, 404, f"no {fmt!r} form of an invoice: html or pdf")
    try:
        inv = await run_in_threadpool(invoices.get, request.app.state.sessions, user.tenant, invoice_id)
    except NotFound:
        return error_page(request, user, 404, f"no invoice {invoice_id!r}")
    name = inv.number or inv.invoice_id
    try:
        files = await run_in_threadpool(render_stored, inv.document, name, (fmt,), None, inv.status)
    except StoredDocumentError as exc:
        return error_page(request, user, 422, str(exc))
    disposition = f'inline; filename="{name}.{fmt}"'
    return Response(files[fmt], media_type=_MEDIA[fmt], headers={"Content-Disposition": disposition})
