"""Invoice PDF (WeasyPrint) and PNG preview (pypdfium2), and render_invoice, the CLI's hook."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D
from pathlib import Path

import msgspec
import pytest
from invoice_samples import DEC, NOV, sales_tax_doc
from PIL import Image

from meterstream.documents.pdf import render_pdf
from meterstream.documents.preview import pdf_page_count, pdf_to_png
from meterstream.documents.render import render_invoice
from meterstream.schemas.invoice import InvoiceDoc, InvoiceLine, decode, encode

ROOT = Path(__file__).resolve().parents[2]
A4_AT_110_DPI = (round(595.276 * 110 / 72), round(841.89 * 110 / 72))  # A4 is 595.276 x 841.89 pt: 909 x 1286 px


def _dark_share(png: bytes) -> float:
    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return sum(histogram[:128]) / (image.width * image.height)


def test_pdf_is_a_pdf_with_one_a4_page(example_doc: InvoiceDoc) -> None:
    pdf = render_pdf(example_doc)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert pdf_page_count(pdf) == 1


def test_same_document_same_pdf_bytes(example_doc: InvoiceDoc) -> None:
    """No clock inside: rendering a document again (a re-run of a close) gives the same file, byte for byte, also a
    second later (the embedded fonts' subsets carried the time they were made: documents/pdf.py)."""
    import time

    first = render_pdf(example_doc)
    assert b"/CreationDate" not in first
    time.sleep(1.1)
    assert render_pdf(decode(encode(example_doc))) == first


def test_png_preview_has_a4_proportions_and_ink(example_doc: InvoiceDoc) -> None:
    png = pdf_to_png(render_pdf(example_doc))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert abs(image.width - A4_AT_110_DPI[0]) <= 1 and abs(image.height - A4_AT_110_DPI[1]) <= 1
    # text on white: some dark pixels, mostly white (a blank or black page fails)
    assert 0.005 < _dark_share(png) < 0.3
    assert len(png) < 300_000


def test_draft_page_is_white_with_a_light_watermark() -> None:
    png = pdf_to_png(render_pdf(sales_tax_doc(status="draft")), dpi=40)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    # an empty spot of the page body (left, low): white, not the status badge's colour
    assert image.getpixel((int(image.width * 0.12), int(image.height * 0.85))) == (255, 255, 255)
    data = image.tobytes()
    pixels = zip(data[0::3], data[1::3], data[2::3], strict=True)
    reds = sum(1 for r, g, b in pixels if r > 200 and g < 235 and b < 235 and r - g > 10)
    assert reds > 100  # the DRAFT watermark is there


def test_many_lines_flow_onto_more_pages() -> None:
    """60 lines of 1.00 each: subtotal 60.00, tax 60 x 0.07 (0.0725 x 1.00 = 0.0725 -> 0.07) = 4.20."""
    base = sales_tax_doc()
    lines = [InvoiceLine(line_no=i + 1, kind="usage", code=f"meter_{i}", description=f"Meter {i}", quantity=D("1"),
                         unit_price=D("1.00"), amount=D("1.00"), tax_rate=D("0.0725"), tax_amount=D("0.07"),
                         start=NOV, end=DEC) for i in range(60)]  # fmt: skip
    (tax,) = base.taxes
    doc = msgspec.structs.replace(
        base, lines=lines, subtotal=D("60.00"), tax_total=D("4.20"), total=D("64.20"), amount_due=D("64.20"),
        taxes=[msgspec.structs.replace(tax, taxable_amount=D("60.00"), tax_amount=D("4.20"))],
    )  # fmt: skip
    pdf = render_pdf(doc)
    assert pdf_page_count(pdf) >= 2
    with pytest.raises(ValueError, match=r"^page: 9 is not a page of this PDF"):
        pdf_to_png(pdf, page=9)


def test_render_invoice_writes_html_pdf_png_from_a_v1_file(tmp_path: Path, v1_path: Path) -> None:
    written = render_invoice(v1_path, tmp_path / "out")
    stem = "v1_cloudco_org-000"
    assert written == {fmt: tmp_path / "out" / f"{stem}.{fmt}" for fmt in ("html", "pdf", "png")}
    html = written["html"].read_text()
    assert "$1,890.04" in html and "$250.00" in html and "$1,640.04" in html  # hand-checked in test_invoice_schema
    assert "Minimum commitment: true-up" in html and "$170.47216" in html
    assert written["pdf"].read_bytes().startswith(b"%PDF-")
    assert written["png"].read_bytes().startswith(b"\x89PNG")
    only = render_invoice(v1_path, tmp_path / "html-only", formats=["html"], locale="de_DE")
    assert list(only) == ["html"] and "1.890,04\xa0$" in only["html"].read_text()


def test_render_invoice_refuses_and_writes_nothing(tmp_path: Path, v1_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^formats: 'docx' is not one of html, pdf, png"):
        render_invoice(v1_path, tmp_path / "a", formats=("html", "docx"))
    broken = json.loads(v1_path.read_text())
    broken["total"] = "1890.05"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"bad\.json: total: 1890\.05 is not subtotal - discount_total \+ tax_total"):
        render_invoice(bad, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_docs_example_picture_is_small_and_referenced() -> None:
    picture = ROOT / "docs" / "images" / "invoice-example.png"
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size < 300_000
    assert "images/invoice-example.png" in (ROOT / "docs" / "invoices.md").read_text()
