"""An invoice as PDF: the HTML of `html.py` printed by WeasyPrint (A4 and print CSS in the template).

WeasyPrint needs Pango (Debian: libpango-1.0-0, libpangoft2-1.0-0) and the fonts the CSS names: DejaVu Sans
(Debian's fonts-dejavu-core), and for the scripts it lacks WenQuanYi Micro Hei (fonts-wqy-microhei: Chinese,
Japanese, Korean) and Noto Sans Thai / Devanagari (fonts-noto-core); without them those names print as empty boxes.
"""

from __future__ import annotations

import os

from weasyprint import HTML

from meterstream.documents.html import TEMPLATES, render_html
from meterstream.schemas.invoice import InvoiceDoc

__all__ = ["html_to_pdf", "render_pdf"]

# The same document must give the same PDF bytes (a re-run of a close re-renders it). Without HarfBuzz-Subset,
# WeasyPrint subsets the embedded fonts with fontTools, which stamps each subset's `head.modified` with the
# current time, so two renders a second apart differed (tests/documents/test_pdf.py failed now and then).
# fontTools takes that time from SOURCE_DATE_EPOCH when it is set (the reproducible-builds convention): set for
# this process unless the caller set it, to 0 (the fonts' stamp then says 1970; nothing reads it).
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")


def html_to_pdf(html: str) -> bytes:
    """PDF bytes of an invoice page rendered by `render_html`."""
    return HTML(string=html, base_url=str(TEMPLATES)).write_pdf()


def render_pdf(doc: InvoiceDoc, locale: str | None = None) -> bytes:
    """The invoice as PDF (A4), in `locale` (default: the buyer's). ValueError as `render_html`."""
    return html_to_pdf(render_html(doc, locale))
