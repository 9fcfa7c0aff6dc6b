"""The credit note's page (documents/credit_note.py): HTML and PDF, figures worked out by hand in each test.

The invoices are test_ubl.py's (invoice_samples.py): the French B2C one (20 % VAT, 74.83 EUR) and the German
B2B reverse-charge one (1,349.00 EUR); the tax split is the e-invoice's, so the same notes are checked there.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import msgspec
import pypdfium2
import pytest
from invoice_samples import french_b2c, german_b2b
from lxml import html as lxml_html

from meterstream.documents.credit_note import render_credit_note_html, render_credit_note_pdf

NUMBER = "ACME-CN-2026-000001"


def facts(**more):  # type: ignore[no-untyped-def]
    base = {"number": NUMBER, "issue_date": date(2026, 11, 20), "reason": "duplicated_charge: fee billed twice",
            "lines": [("Base fee", D("19.99")), ("Goodwill", D("12.00"))], "credit": D("31.99"),
            "refund": D("0"), "status": "applied"}  # fmt: skip
    return {**base, **more}


def rows(page: str, table: str) -> list[list[str]]:
    """The text of each row's cells (th and td) of the page's `table.<table>`, spaces normalised."""
    root = lxml_html.fromstring(page)
    out = []
    for tr in root.xpath(f"//table[contains(concat(' ', @class, ' '), ' {table} ')]//tr"):
        out.append([" ".join(" ".join(cell.itertext()).replace("\xa0", " ").replace("\u202f", " ").split())
                    for cell in tr.xpath("./th|./td")])  # fmt: skip
    return out


def test_a_credit_note_of_the_french_invoice_shows_its_tax_as_the_e_invoice_does() -> None:
    """19.99 + 12.00 = 31.99 credited, tax included, at the invoice's 20 %: 19.99 / 1.20 = 16.658.. -> 16.66 net,
    12.00 / 1.20 = 10.00 net; net 26.66, tax 31.99 - 26.66 = 5.33 (test_ubl.py has the same figures in the XML).
    Nothing was paid, so all of it comes off the amount due: credit 31.99, nothing to refund."""
    page = render_credit_note_html(french_b2c(), locale="en_US", **facts())
    assert "<h1>Credit note</h1>" in page and f'<div class="number">{NUMBER}</div>' in page
    meta = dict(rows(page, "meta"))
    assert meta["Credits invoice"] == "ACME-2026-000001"
    assert (meta["Issued on"], meta["Invoice date"]) == ("November 20, 2026", "November 1, 2026")
    assert meta["Billing period"] == "Oct 1 – 31, 2026" and meta["Customer"] == "fr-consumer"
    assert rows(page, "lines") == [["#", "Description", "Net", "Tax", "Amount incl. tax"],
                                   ["1", "Base fee", "€16.66", "20%", "€19.99"],
                                   ["2", "Goodwill", "€10.00", "20%", "€12.00"]]  # fmt: skip
    assert rows(page, "totals") == [["Net", "€26.66"], ["Tax 20%", "€5.33"], ["Total credited", "€31.99"],
                                    ["Deducted from the amount due", "€31.99"]]  # fmt: skip
    assert "To be refunded" not in page and "duplicated_charge: fee billed twice" in page
    assert "Applied" in page and "Marie Curie" in page and "ACME SAS" in page


def test_a_paid_reverse_charge_invoice_credited_in_german() -> None:
    """The German invoice was paid: 100.00 credited is owed back (refund 100.00, credit 0); reverse charge at 0 %:
    net 100.00, tax 0.00; the page in the buyer's language (DE) with the Art. 196 mention in German."""
    note = facts(lines=[("Usage corrected", D("100.00"))], credit=D("0"), refund=D("100.00"), status="refund_due")
    page = render_credit_note_html(german_b2b(), **note)
    assert "<h1>Rechnungskorrektur</h1>" in page and "Erstattung ausstehend" in page
    assert rows(page, "totals") == [["Netto", "100,00 €"], ["Steuerschuldnerschaft des Leistungsempfängers", "0,00 €"],
                                    ["Korrekturbetrag", "100,00 €"], ["Zu erstatten", "100,00 €"]]  # fmt: skip
    assert "Vom offenen Betrag abgezogen" not in page
    assert "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge), Art. 196" in page
    assert dict(rows(page, "meta"))["Korrigiert Rechnung"] == "ACME-2026-000001"


def test_a_refund_paid_back_says_refunded() -> None:
    """The same German note once its 100.00 was paid back (status refunded): "Erstattet", in English "Refunded",
    where the page said what was still to be refunded."""
    note = facts(lines=[("Usage corrected", D("100.00"))], credit=D("0"), refund=D("100.00"), status="refunded")
    page = render_credit_note_html(german_b2b(), **note)
    assert rows(page, "totals")[-1] == ["Erstattet", "100,00 €"]
    assert "Zu erstatten" not in page and "Erstattung ausstehend" not in page
    english = render_credit_note_html(german_b2b(), locale="en", **note)
    assert rows(english, "totals")[-1] == ["Refunded", "€100.00"]
    assert '<div class="status status-refunded">Refunded</div>' in english


def test_an_invoice_with_two_vat_groups_is_credited_as_invoiced() -> None:
    """A line of ours does not say which VAT group it credits: no split, the amounts as invoiced (tax included),
    said so; a partial credit of 50.00 on an invoice of which 30.00 was paid: 20.00 off the amount due, 30.00 back
    (the split is the store's, entities/credit_notes.py; the page prints it)."""
    doc = french_b2c()
    two = msgspec.structs.replace(doc, lines=[doc.lines[0], msgspec.structs.replace(
        doc.lines[1], tax_category="E", tax_rate=D("0"), tax_amount=D("0.00"))], taxes=[
        msgspec.structs.replace(doc.taxes[0], taxable_amount=D("42.37"), tax_amount=D("8.47")),
        msgspec.structs.replace(doc.taxes[0], rate=D("0"), taxable_amount=D("19.99"), tax_amount=D("0.00"),
                                category="E")],
        tax_total=D("8.47"), total=D("70.83"), amount_due=D("70.83"))  # fmt: skip
    page = render_credit_note_html(two, locale="en_US", **facts(lines=[("Goodwill", D("50.00"))], credit=D("20.00"),
                                                                refund=D("30.00"), status="refund_due"))  # fmt: skip
    assert rows(page, "lines") == [["#", "Description", "Amount"], ["1", "Goodwill", "€50.00"]]
    assert rows(page, "totals") == [
        ["Total credited Amounts include tax as invoiced", "€50.00"],
        ["Deducted from the amount due", "€20.00"],
        ["To be refunded", "€30.00"],
    ]


def test_what_the_page_refuses_names_the_field() -> None:
    draft = msgspec.structs.replace(french_b2c(), status="draft", number=None)
    with pytest.raises(ValueError, match=r"^invoice: a credit note is issued against a finalized invoice"):
        render_credit_note_html(draft, **facts())
    with pytest.raises(ValueError, match=r"^credit: the credit \(31\.00\) and the refund \(0\) must add up to the "
                                         r"lines' 31\.99"):  # fmt: skip
        render_credit_note_html(french_b2c(), **facts(credit=D("31.00")))
    with pytest.raises(ValueError, match=r"^lines\[1\]\.amount: 12\.001 is not a positive amount in EUR"):
        render_credit_note_html(french_b2c(), **facts(lines=[("a", D("19.99")), ("b", D("12.001"))]))
    with pytest.raises(ValueError, match=r"^status: 'void' is not one of applied, refund_due"):
        render_credit_note_html(french_b2c(), **facts(status="void"))
    with pytest.raises(ValueError, match=r"^locale: 'xx_NOPE'"):
        render_credit_note_html(french_b2c(), locale="xx_NOPE", **facts())


def test_what_a_customer_wrote_is_text_not_markup() -> None:
    page = render_credit_note_html(french_b2c(), **facts(reason="<script>alert(1)</script>",
                                                         lines=[("<b>x</b>", D("31.99"))]))  # fmt: skip
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_the_pdf_reads_back_with_its_number_and_figures() -> None:
    pdf = render_credit_note_pdf(french_b2c(), locale="en_US", **facts())
    assert pdf.startswith(b"%PDF-")
    doc = pypdfium2.PdfDocument(pdf)
    try:
        assert len(doc) == 1
        text = doc[0].get_textpage().get_text_range()
    finally:
        doc.close()
    for expected in (NUMBER, "ACME-2026-000001", "Credit note", "€26.66", "€5.33", "€31.99", "Goodwill"):
        assert expected in text, expected
    assert render_credit_note_pdf(french_b2c(), locale="en_US", **facts()) == pdf  # the same note, the same bytes
