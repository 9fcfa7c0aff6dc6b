"""`render_invoice`: an invoice JSON file (version 2, or version 1 as the close wrote it) to HTML, PDF, PNG and
the UBL 2.1 / EN 16931 e-invoice (XML).

The hook for the CLI (`meterstream invoices render`): reads the file, converts a version 1 document
(`schemas.invoice.from_v1`), validates it, and writes `<name>.html`, `<name>.pdf`, `<name>.png` (page 1) and, when
asked, `<name>.xml` (`documents/ubl.py`) into the output folder, `<name>` being the JSON file's name without `.json`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from meterstream.schemas.invoice import InvoiceDoc, decode, from_v1, validate

__all__ = ["ALL_FORMATS", "FORMATS", "load_invoice", "render_invoice"]

FORMATS = ("html", "pdf", "png")  # the default: what a person reads
ALL_FORMATS = (*FORMATS, "xml")  # xml: the UBL 2.1 / EN 16931 e-invoice, for the buyer's accounting software


def load_invoice(path: Path | str) -> InvoiceDoc:
    """The invoice in the JSON file at `path` as a (validated) version 2 document.

    ValueError naming the file and the field when it is neither a valid version 2 nor a version 1 document."""
    path = Path(path)
    data = path.read_bytes()
    try:
        raw = orjson.loads(data)
        if isinstance(raw, dict) and raw.get("document_version") == 1:
            doc = from_v1(raw)
        else:
            doc = decode(data)
        return validate(doc)
    except (ValueError, TypeError, KeyError) as exc:  # msgspec.ValidationError is a ValueError
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path}: {reason}") from None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a reader never sees half a file


def render_invoice(
    path_to_json: Path | str,
    out_dir: Path | str,
    formats: Iterable[str] = FORMATS,
    locale: str | None = None,
) -> dict[str, Path]:
    """Render the invoice at `path_to_json` into `out_dir` in `formats` (html, pdf, png, xml); {format: path written}.

    `locale` overrides the buyer's (e.g. de_DE; the XML has none). ValueError for an unknown format, a document
    that does not validate, an unknown locale, or (xml) a document that cannot be an EN 16931 invoice, such as a
    draft; nothing is written then."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in ALL_FORMATS]
    if unknown:
        raise ValueError(f"formats: {unknown[0]!r} is not one of {', '.join(ALL_FORMATS)}")
    source = Path(path_to_json)
    doc = load_invoice(source)
    outputs: dict[str, bytes] = {}
    if "xml" in wanted:
        from meterstream.documents.ubl import to_ubl

        try:
            outputs["xml"] = to_ubl(doc)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    html = ""
    if {"html", "pdf", "png"} & set(wanted):
        from meterstream.documents.html import render_html

        html = render_html(doc, locale)
    if "html" in wanted:
        outputs["html"] = html.encode()
    if "pdf" in wanted or "png" in wanted:
        from meterstream.documents.pdf import html_to_pdf

        pdf = html_to_pdf(html)
        if "pdf" in wanted:
            outputs["pdf"] = pdf
        if "png" in wanted:
            from meterstream.documents.preview import pdf_to_png

            outputs["png"] = pdf_to_png(pdf)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = source.name[: -len(".json")] if source.name.endswith(".json") else source.name
    written = {}
    for fmt in wanted:
        target = out / f"{stem}.{fmt}"
        _write(target, outputs[fmt])
        written[fmt] = target
    return written
