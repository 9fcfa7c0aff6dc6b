"""Invoice PDFs for buyers writing other scripts: each script is drawn with a font that has it, never with DejaVu
Sans where DejaVu has no glyphs (empty boxes on the page). Which font drew which text is read back from the PDF
itself (PDFium: each text object's text and the base name of its embedded font subset).

DejaVu Sans covers Latin, Cyrillic, Arabic and Hebrew; it has no Chinese, Japanese, Korean, Thai or Devanagari
glyphs (its cmap, checked below with fontTools), so those must come from the fallback fonts .ci/run installs:
WenQuanYi Micro Hei (or Noto Sans CJK) and Noto Sans Thai / Devanagari (documents/templates/invoice.css)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as raw
import pytest
from fontTools.ttLib import TTFont
from invoice_samples import sales_tax_doc

from meterstream.documents.pdf import render_pdf
from meterstream.schemas.invoice import Address, Party

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# (buyer name, country, a character of that script, fonts allowed to draw it)
CASES = [
    ("株式会社サンプル 東京支社", "JP", "株", ("WenQuanYi", "NotoSansCJK", "Noto-Sans-CJK")),
    ("示例科技有限公司", "CN", "科", ("WenQuanYi", "NotoSansCJK", "Noto-Sans-CJK")),
    ("주식회사 샘플", "KR", "샘", ("WenQuanYi", "NotoSansCJK", "Noto-Sans-CJK")),
    ("บริษัท ตัวอย่าง จำกัด", "TH", "ษ", ("Noto-Sans-Thai", "NotoSansThai")),
    ("उदाहरण प्राइवेट लिमिटेड", "IN", "ह", ("Noto-Sans-Devanagari", "NotoSansDevanagari")),
    ("شركة المثال للتجارة", "AE", "ش", ("DejaVu",)),
    ("חברת דוגמה בעמ", "IL", "ד", ("DejaVu",)),
]


def _drawn(pdf: bytes) -> list[tuple[str, str]]:
    """(text, base font name without its subset tag) of every text object on the first page."""
    page = pdfium.PdfDocument(pdf)[0]
    text_page = page.get_textpage()
    out = []
    for obj in page.get_objects():
        if obj.type != raw.FPDF_PAGEOBJ_TEXT:
            continue
        n = raw.FPDFTextObj_GetText(obj.raw, text_page.raw, None, 0)
        buf = ctypes.create_string_buffer(n * 2)
        raw.FPDFTextObj_GetText(obj.raw, text_page.raw, ctypes.cast(buf, ctypes.POINTER(ctypes.c_ushort)), n * 2)
        font = raw.FPDFTextObj_GetFont(obj.raw)
        size = raw.FPDFFont_GetBaseFontName(font, None, 0)
        name = ctypes.create_string_buffer(size)
        raw.FPDFFont_GetBaseFontName(font, name, size)
        out.append((buf.raw.decode("utf-16-le").rstrip("\x00"), name.value.decode().split("+")[-1]))
    return out


def test_dejavu_lacks_the_scripts_the_fallbacks_are_for() -> None:
    """The premise: without a fallback font those scripts would be boxes (and Arabic, Hebrew would not)."""
    cmap = TTFont(DEJAVU, lazy=True).getBestCmap()
    assert [ord(c) in cmap for _, _, c, _ in CASES] == [False, False, False, False, False, True, True]


@pytest.mark.parametrize(("name", "country", "char", "fonts"), CASES, ids=[c[1] for c in CASES])
def test_each_script_is_drawn_with_a_font_that_has_it(name: str, country: str, char: str, fonts: tuple) -> None:  # type: ignore[type-arg]
    doc = sales_tax_doc(buyer=Party(name=name, address=Address(city="X", country=country)))
    drawn = _drawn(render_pdf(doc))
    users = {font for text, font in drawn if char in text}
    assert users, f"{char!r} not on the page: {drawn[:20]}"
    assert all(any(font.startswith(f) for f in fonts) for font in users), (char, users)
    # the rest of the page (Latin words, digits) stays in DejaVu Sans
    assert {font for text, font in drawn if text.strip() == "Invoice"} == {"DejaVu-Sans-Bold"}
