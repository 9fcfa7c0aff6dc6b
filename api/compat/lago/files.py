"""Lago's invoice and credit note files at /compat/lago (docs/lago.md "Invoices and credit notes"):
`invoices.download(lago_id)` and `credit_notes.download(lago_id)` of lago-python-client answer the object with a
`file_url`, and that URL serves its PDF to whoever holds it, without a key, until it expires, as Lago's file URLs
do (a link a finance team can put in an e-mail).

The URL is signed, not stored: `/compat/lago/files/{invoices|credit_notes}/{lago_id}.pdf?tenant=&expires=&signature=`,
the signature an HMAC-SHA256 (base64url) of the kind, tenant, document and expiry, keyed by a key derived from the
tenant's Lago key (webhooks/lago_keys.py), so a URL names one document of one tenant until `expires` and any change
refuses it (403). The PDF is rendered when fetched, as `GET /v1/invoices/{id}.pdf` and `GET
/v1/credit_notes/{id}.pdf` render it. A draft invoice has no file (Lago makes files of finalized invoices):
`file_url` null. Other answers (`GET /invoices/{lago_id}`, webhooks) carry `file_url` null: only `download` makes
one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.invoices import (
    CreditNoteOut,
    InvoiceOut,
    _json,
    credit_note_object,
    stored_invoice_object,
)
from meterstream.api.compat.lago.responses import error_body
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, Read
from meterstream.api.errors import ApiError
from meterstream.api.routes.invoices import credit_note_file
from meterstream.documents.stored import StoredDocumentError, render_stored
from meterstream.entities import credit_notes, invoices
from meterstream.entities.common import NotFound
from meterstream.entities.invoice_rules import DRAFT
from meterstream.webhooks.lago_keys import keys_for, stored_keys

router = APIRouter(prefix=PREFIX, tags=[TAG])
LIFETIME_S = 7 * 86_400  # how long a file URL serves its file


def file_key(hmac_key: str) -> bytes:
    """The key of file URLs, derived from the tenant's Lago HMAC key (never the key itself)."""
    return hmac.new(hmac_key.encode(), b"meterstream lago file urls", hashlib.sha256).digest()


INVOICES, CREDIT_NOTES = "invoices", "credit_notes"  # the kinds of file, as their URLs name them


def file_signature(key: bytes, kind: str, tenant: str, lago_id: str, expires: int) -> str:
    mac = hmac.new(key, f"{kind}\n{tenant}\n{lago_id}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def file_url(sf: sessionmaker, base: str, kind: str, tenant: str, lago_id: str, now: float | None = None) -> str:
    """A URL serving the document's PDF (`kind`: invoices or credit_notes) until `now + LIFETIME_S`."""
    expires = int(now if now is not None else time.time()) + LIFETIME_S
    signature = file_signature(file_key(keys_for(sf, tenant).hmac_key), kind, tenant, lago_id, expires)
    query = urlencode({"tenant": tenant, "expires": expires, "signature": signature})
    return f"{base}{PREFIX}/files/{kind}/{lago_id}.pdf?{query}"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/api/v1/invoices/{lago_id}/download", summary="An invoice with a URL of its PDF (Lago: downloadInvoice)",
             responses=m.answers(InvoiceOut, 400, *AUTH, 404))  # fmt: skip
async def download_invoice(request: Request, principal: Read, lago_id: str) -> Response:
    sf, base = request.app.state.sessions, _base(request)

    def run() -> dict[str, Any]:
        record = invoices.get(sf, principal.tenant, lago_id)
        body = stored_invoice_object(sf, record, {})
        if record.status != DRAFT:
            body["file_url"] = file_url(sf, base, INVOICES, principal.tenant, lago_id)
        return body

    return await _downloaded("invoice", run)


@router.post("/api/v1/credit_notes/{lago_id}/download",
             summary="A credit note with a URL of its PDF (Lago: downloadCreditNote)",
             responses=m.answers(CreditNoteOut, 400, *AUTH, 404))  # fmt: skip
async def download_credit_note(request: Request, principal: Read, lago_id: str) -> Response:
    sf, base = request.app.state.sessions, _base(request)

    def run() -> dict[str, Any]:
        body = credit_note_object(credit_notes.get_credit_note(sf, principal.tenant, lago_id))
        body["file_url"] = file_url(sf, base, CREDIT_NOTES, principal.tenant, lago_id)
        return body

    return await _downloaded("credit_note", run)


async def _downloaded(root: str, run: Callable[[], dict[str, Any]]) -> Response:
    """`{root: run()}`, `run` reading the store in a thread; 404 `<root>_not_found` when it finds nothing."""
    try:
        return _json({root: await run_in_threadpool(run)})
    except NotFound:
        return _json(error_body(404, f"{root}_not_found"), 404)


def _signed(sf: sessionmaker, kind: str, tenant: str, lago_id: str, expires: int, signature: str) -> Response | None:
    """None when the URL's signature and expiry hold, else the 403 to answer."""
    keys = stored_keys(sf, tenant)  # never made here: these routes have no credential but the signature
    expected = file_signature(file_key(keys.hmac_key), kind, tenant, lago_id, expires) if keys is not None else ""
    if not expected or not hmac.compare_digest(expected, signature):
        return _json(error_body(403, "invalid_signature"), 403)
    if expires < time.time():
        return _json(error_body(403, "expired_url"), 403)
    return None


def _pdf(data: bytes, name: str) -> Response:
    return Response(data, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'})


_FILE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF"},
    400: {},
    403: {},
    404: {},
    422: {},
}
Tenant = Annotated[str, Query(max_length=128)]
Expires = Annotated[int, Query(ge=0, le=2**63 - 1)]
Signature = Annotated[str, Query(max_length=128)]


def _served(sf: sessionmaker, kind: str, tenant: str, lago_id: str, expires: int, signature: str,
            load: Callable[[], tuple[bytes, str]]) -> Response:  # fmt: skip
    """The PDF `load` renders (bytes, file name) once the URL's signature and expiry hold; 404
    `<invoice|credit_note>_not_found`, 422 `not_an_invoice` when the stored document is not one."""
    refused = _signed(sf, kind, tenant, lago_id, expires, signature)
    if refused is not None:
        return refused
    try:
        data, name = load()
    except NotFound:
        return _json(error_body(404, f"{kind.removesuffix('s')}_not_found"), 404)
    except (StoredDocumentError, ApiError):  # the (credited) invoice's stored document is not an invoice
        return _json(error_body(422, "not_an_invoice"), 422)
    return _pdf(data, name)


@router.get("/files/invoices/{lago_id}.pdf", summary="The PDF a download's file_url names (no key: its signature)",
            response_class=Response, responses=_FILE_ANSWERS)  # fmt: skip
async def invoice_file(request: Request, lago_id: str, tenant: Tenant, expires: Expires, signature: Signature
                       ) -> Response:  # fmt: skip
    sf = request.app.state.sessions

    def load() -> tuple[bytes, str]:
        record = invoices.get(sf, tenant, lago_id)
        name = record.number or record.invoice_id
        return render_stored(record.document, name, ("pdf",), None, record.status)["pdf"], f"{name}.pdf"

    return await run_in_threadpool(_served, sf, INVOICES, tenant, lago_id, expires, signature, load)


@router.get("/files/credit_notes/{lago_id}.pdf", response_class=Response, responses=_FILE_ANSWERS,
            summary="The credit note PDF a download's file_url names (no key: its signature)")  # fmt: skip
async def credit_note_file_route(request: Request, lago_id: str, tenant: Tenant, expires: Expires,
                                 signature: Signature) -> Response:  # fmt: skip
    sf = request.app.state.sessions

    def load() -> tuple[bytes, str]:
        note, pdf = credit_note_file(sf, tenant, lago_id, "pdf")
        return pdf, f"{note.number}.pdf"

    return await run_in_threadpool(_served, sf, CREDIT_NOTES, tenant, lago_id, expires, signature, load)


__all__ = ["CREDIT_NOTES", "INVOICES", "LIFETIME_S", "file_key", "file_signature", "file_url", "router"]
