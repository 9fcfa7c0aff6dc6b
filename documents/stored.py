"""The invoice store's documents (entities/invoices.py records) as version 2 documents and rendered files.

A record keeps its document as JSON text: version 2 (`schemas.invoice`), or a version 1 dict written by an
older close. `document_of` reads either as a validated `InvoiceDoc`; `document_json` is the version 2 JSON
an API answers with (a version 1 document converted, a version 2 one byte for byte as stored);
`render_stored` renders it with `render.render_invoice` (the one rendering path) and returns the bytes;
`render_stored_credit_note` renders a credit note against it (its page and its e-invoice).

The rendered page shows the record's current status when one is given (paid, overdue, voided), because a
finalized document is never rewritten after finalization while its status moves on with payments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import msgspec
import orjson

from meterstream.documents.credit_note import render_credit_note_html
from meterstream.documents.pdf import html_to_pdf
from meterstream.documents.render import FORMATS, render_invoice
from meterstream.documents.ubl import credit_note_to_ubl
from meterstream.schemas.invoice import InvoiceDoc, decode, encode, from_v1, validate

__all__ = [
    "CREDIT_NOTE_FORMATS",
    "CreditNoteFacts",
    "StoredDocumentError",
    "document_json",
    "document_of",
    "render_stored",
    "render_stored_credit_note",
]


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


class CreditNoteFacts(Protocol):
    """What a credit note's documents print of it (entities.credit_notes.CreditNote has these)."""

    number: str
    issue_date: date
    reason: str
    status: str

    @property
    def amounts(self) -> Sequence[tuple[str, Decimal]]: ...
    @property
    def credit(self) -> Decimal: ...
    @property
    def refund(self) -> Decimal: ...


CREDIT_NOTE_FORMATS = ("html", "pdf", "xml")  # xml: the UBL 2.1 CreditNote (EN 16931)


def render_stored_credit_note(
    invoice_text: str, note: CreditNoteFacts, formats: Iterable[str] = ("html", "pdf"), locale: str | None = None
) -> dict[str, bytes]:
    """{format: bytes} of a credit note against the stored invoice document `invoice_text`: html and pdf, the page its
    customer receives (documents/credit_note.py, in `locale`, default the buyer's), xml the e-invoice
    (documents/ubl.py `credit_note_to_ubl`). StoredDocumentError when the stored document is not an invoice,
    ValueError naming the field for what the documents refuse, an unknown format or locale."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in CREDIT_NOTE_FORMATS]
    if unknown or not wanted:
        raise ValueError(f"format: {', '.join(unknown) or 'none'}: not one of {', '.join(CREDIT_NOTE_FORMATS)}")
    invoice = document_of(invoice_text)
    out: dict[str, bytes] = {}
    if "html" in wanted or "pdf" in wanted:
        html = render_credit_note_html(invoice, number=note.number, issue_date=note.issue_date, reason=note.reason,
                                       lines=note.amounts, credit=note.credit, refund=note.refund, status=note.status,
                                       locale=locale)  # fmt: skip
        if "html" in wanted:
            out["html"] = html.encode()
        if "pdf" in wanted:
            out["pdf"] = html_to_pdf(html)
    if "xml" in wanted:
        out["xml"] = credit_note_to_ubl(invoice, number=note.number, issue_date=note.issue_date, reason=note.reason,
                                        lines=note.amounts)  # fmt: skip
    return {f: out[f] for f in wanted}
