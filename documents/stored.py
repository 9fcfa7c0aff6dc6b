"""The invoice store's documents (entities/invoices.py records) as version 2 documents and rendered files.

A record keeps its document as JSON text: version 2 (`schemas.invoice`), or a version 1 dict written by an
older close. `document_of` reads either as a validated `InvoiceDoc`; `document_json` is the version 2 JSON
an API answers with (a version 1 document converted, a version 2 one byte for byte as stored);
`render_stored` renders it with `render.render_invoice` (the one rendering path) and returns the bytes.

The rendered page shows the record's current status when one is given (paid, overdue, voided), because a
finalized document is never rewritten after finalization while its status moves on with payments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import msgspec
import orjson

from meterstream.documents.render import FORMATS, render_invoice
from meterstream.schemas.invoice import InvoiceDoc, decode, encode, from_v1, validate

__all__ = ["StoredDocumentError", "document_json", "document_of", "render_stored"]


class StoredDocumentError(ValueError):
    """The stored document is neither a valid version 2 nor a version 1 invoice (the message names the field)."""


def document_of(text: str | bytes) -> InvoiceDoc:
    """The stored document as a validated version 2 document; StoredDocumentError naming the field if not."""
    data = text.encode() if isinstance(text, str) else text
    try:
        raw = orjson.loads(data)
        doc = from_v1(raw) if isinstance(raw, dict) and raw.get("document_version") == 1 else decode(data)
        return validate(doc)
    except (ValueError, TypeError, KeyError) as exc:  # msgspec.ValidationError is a ValueError
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StoredDocumentError(f"the stored document is not an invoice: {reason}") from None


def document_json(text: str) -> bytes:
    """The version 2 JSON of a stored document: version 2 as stored (unchanged bytes), version 1 converted.
    StoredDocumentError when it is neither (the message names the field)."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise StoredDocumentError(f"the stored document is not JSON: {exc}") from None
    doc = document_of(text)  # refuses what is not an invoice, naming the field
    if isinstance(raw, dict) and raw.get("document_version") == 1:
        return encode(doc)
    return text.encode()


def render_stored(
    text: str,
    name: str,
    formats: Iterable[str] = FORMATS,
    locale: str | None = None,
    status: str | None = None,
) -> dict[str, bytes]:
    """{format: bytes} of the stored document rendered in `formats` (html, pdf, png), through `render_invoice`.

    `name` is the file stem used while rendering (any text; only its safe characters are kept). `status`, when
    given, is the record's current status shown on the page. ValueError for an unknown format or locale,
    StoredDocumentError for a document that is not an invoice."""
    doc = document_of(text)
    if status is not None and status != doc.status:
        doc = msgspec.structs.replace(doc, status=status)  # type: ignore[arg-type]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "invoice"
    with tempfile.TemporaryDirectory(prefix="meterstream-render-") as tmp:
        source = Path(tmp) / f"{stem}.json"
        source.write_bytes(encode(doc))
        written = render_invoice(source, Path(tmp) / "out", formats, locale)
        return {fmt: path.read_bytes() for fmt, path in written.items()}
