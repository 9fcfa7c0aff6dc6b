"""Page 1 of an invoice PDF as PNG, to look at (and to show in docs) without a PDF viewer.

pypdfium2: a maintained binding to PDFium whose wheel bundles the library, so rendering needs no system
binary (poppler's pdftoppm or Ghostscript) that a fresh machine may lack; Pillow (a WeasyPrint dependency)
writes the PNG.
"""

from __future__ import annotations

import io

import pypdfium2 as pdfium

__all__ = ["pdf_page_count", "pdf_to_png"]


def pdf_to_png(pdf: bytes, page: int = 0, dpi: int = 110) -> bytes:
    """PNG bytes of page `page` (0 = first) of `pdf` at `dpi` (A4 at 110 dpi: 909 x 1286 pixels)."""
    document = pdfium.PdfDocument(pdf)
    try:
        if not 0 <= page < len(document):
            raise ValueError(f"page: {page} is not a page of this PDF ({len(document)} pages)")
        bitmap = document[page].render(scale=dpi / 72)
        image = bitmap.to_pil()
    finally:
        document.close()
    out = io.BytesIO()
    # a palette of 64 shades keeps text sharp and the file small (an invoice page is mostly white)
    image.convert("RGB").quantize(colors=64).save(out, format="PNG", optimize=True)
    return out.getvalue()


def pdf_page_count(pdf: bytes) -> int:
    document = pdfium.PdfDocument(pdf)
    try:
        return len(document)
    finally:
        document.close()
