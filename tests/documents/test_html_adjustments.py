"""Adjustment lines on the invoice page, in the document's language (session 17, the audit's items 3 and 5): a fee
of a closed period caught up on a later invoice reads as that fee, "Platform fee, 2026-10 (billed late)", and late
usage as late usage, in English, German and French; the fee's name, the period and the meter's words are data and
stay as they are. Before, the English "late usage for 2026-10: Platform fee" was printed on every page."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import msgspec
from invoice_samples import sales_tax_doc

from meterstream.documents.html import render_html
from meterstream.schemas.invoice import Address, InvoiceDoc, InvoiceLine, Party

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def with_adjustments(country: str) -> InvoiceDoc:
    """The sample's two lines (1000.00 + 234.56, no tax here) and three adjustments for October: its platform fee
    billed late (99.00), a fee corrected (-10.00), late usage of storage (5.00). Subtotal 1234.56 + 94.00 = 1328.56."""
    doc = sales_tax_doc("EUR", buyer=Party(name="Kunde", address=Address(city="X", country=country)))
    plain = [msgspec.structs.replace(x, tax_code=None, tax_rate=D(0), tax_amount=D(0)) for x in doc.lines]
    adjustments = [
        InvoiceLine(line_no=3, kind="adjustment", code="", description="Platform fee, 2026-10 (billed late)",
                    quantity=D(30), amount=D("99.00"), start=OCT, end=NOV, applies_to="2026-10"),
        InvoiceLine(line_no=4, kind="adjustment", code="", description="seats, annual, 2026-10 (corrected)",
                    quantity=D(-1), amount=D("-10.00"), start=OCT, end=NOV, applies_to="2026-10"),
        InvoiceLine(line_no=5, kind="adjustment", code="storage_gb_hours",
                    description="late usage for 2026-10: Storage: EU", quantity=D(100), amount=D("5.00"), start=OCT,
                    end=NOV, applies_to="2026-10"),
    ]  # fmt: skip
    total = D("1328.56")
    return msgspec.structs.replace(doc, lines=[*plain, *adjustments], taxes=[], tax_total=D(0), subtotal=total,
                                   total=total, amount_due=total)  # fmt: skip


def whats(html: str) -> list[str]:
    return [part.split("</div>")[0] for part in html.split('<div class="what">')[1:]]


def test_adjustments_in_english() -> None:
    assert whats(render_html(with_adjustments("US")))[2:] == [
        "Platform fee, 2026-10 (billed late)",
        "seats, annual, 2026-10 (corrected)",
        "late usage for 2026-10: Storage: EU",
    ]


def test_adjustments_in_german() -> None:
    html = render_html(with_adjustments("DE"))
    assert whats(html)[2:] == [
        "Platform fee, 2026-10 (nachberechnet)",
        "seats, annual, 2026-10 (korrigiert)",
        "Nachträgliche Nutzung für 2026-10: Storage: EU",
    ]
    assert "billed late" not in html and "late usage" not in html


def test_adjustments_in_french() -> None:
    html = render_html(with_adjustments("FR"))
    assert whats(html)[2:] == [
        "Platform fee, 2026-10 (facturé tardivement)",
        "seats, annual, 2026-10 (régularisé)",
        "Consommation tardive pour 2026-10 : Storage: EU",
    ]
    assert "billed late" not in html and "late usage" not in html


def test_a_line_that_is_not_an_adjustment_keeps_its_words() -> None:
    doc = with_adjustments("DE")
    fee = msgspec.structs.replace(doc.lines[0], description="Support, 2026-10 (billed late)")  # a tenant's own name
    html = render_html(msgspec.structs.replace(doc, lines=[fee, *doc.lines[1:]]))
    assert whats(html)[0] == "Support, 2026-10 (billed late)"
