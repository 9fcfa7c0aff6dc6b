"""Invoice HTML: amounts and dates by locale, escaping, tier rows, per-user section, taxes, draft watermark."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest
from invoice_samples import sales_tax_doc

from meterstream.documents.formatting import choose_locale
from meterstream.documents.html import render_html
from meterstream.schemas.invoice import Address, InvoiceDoc, Party

NBSP = "\xa0"  # CLDR puts a no-break space between a German amount and its currency sign


def test_en_us_amounts_and_dates() -> None:
    html = render_html(sales_tax_doc("USD"))  # the buyer is in the US: en_US
    assert "$1,234.56" in html  # subtotal
    assert "$1,324.07" in html  # total
    assert "$89.51" in html  # tax 7.25 %
    assert "Tax 7.25%" in html
    assert "December 31, 2026" in html  # due date
    # the billing period and the lines' (local days, the end instant exclusive); CLDR puts thin spaces around –
    assert "Nov 1\u2009–\u200930, 2026" in html
    assert '<html lang="en">' in html
    assert "Austin, TX 78701" in html and "United States" in html  # the issuer's US postal line


def test_de_de_amounts_and_dates() -> None:
    buyer = Party(name="Müller Logistik GmbH", address=Address(city="Hamburg", country="DE"))
    html = render_html(sales_tax_doc("EUR", buyer=buyer))
    assert f"1.234,56{NBSP}€" in html
    assert f"1.324,07{NBSP}€" in html
    assert f"USt. 7,25{NBSP}%" in html  # the words in German too (documents/labels.py)
    assert "Zahlbar bis 31. Dezember 2026" in html
    assert "<h1>Rechnung</h1>" in html and "Rechnungsempfänger" in html
    assert "Deutschland" in html  # the country in the document's language
    assert '<html lang="de">' in html
    assert 'content: "Seite " counter(page) " von " counter(pages) "";' in html
    # the same document, asked for in en_US: the currency sign stays the document's
    assert "€1,234.56" in render_html(sales_tax_doc("EUR", buyer=buyer), locale="en_US")


def test_fr_fr_amounts_and_words() -> None:
    buyer = Party(name="Dupont SARL", address=Address(city="Lyon", country="FR"))
    html = render_html(sales_tax_doc("EUR", buyer=buyer))
    assert f"1\u202f234,56{NBSP}€" in html  # CLDR: a narrow no-break space groups thousands in French
    assert "<h1>Facture</h1>" in html and "Sous-total HT" in html and "Net à payer avant le 31 décembre 2026" in html


def test_every_language_has_every_word_and_the_template_uses_only_those() -> None:
    import re

    from meterstream.documents.html import TEMPLATES
    from meterstream.documents.labels import KEYS, LABELS

    for language, table in LABELS.items():
        assert set(table) == set(KEYS), language
    for template in ("invoice.html.j2", "credit_note.html.j2"):
        used = set(re.findall(r'\bt\("([^"]+)"', (TEMPLATES / template).read_text()))
        assert used and used <= set(KEYS), (template, used - set(KEYS))


def test_amounts_show_the_iso_minor_digits() -> None:
    """CLDR gives HUF no minor digits where ISO 4217 (and our rounding) has two: 1234.50 is not cut to 1,234.5."""
    from meterstream.documents.formatting import Formatter

    assert Formatter("en_US", "HUF").money(D("1234.50")) == "HUF1,234.50"
    assert Formatter("en_US", "JPY").money(D("1000")) == "¥1,000"
    assert Formatter("en_US", "KWD").money(D("1.5")) == "KWD1.500"
    assert Formatter("de_DE", "EUR").money(D("-5.00")) == f"-5,00{NBSP}€"
    assert Formatter("en_US", "USD").money(D("0.000137")) == "$0.000137"  # every digit kept, none rounded
    # a stored scale's trailing zeros are not printed; the value is never rounded (38 significant digits)
    assert Formatter("en_US", "USD").money(D("0.000137000000")) == "$0.000137"
    assert Formatter("en_US", "USD").number(D("1000.000000000000")) == "1,000"
    # 38 digits, the stored columns' precision (babel alone computes in Python's 28-digit default context)
    assert Formatter("en_US", "USD").number(D("12345678901234567890123456.123456789012")) == (
        "12,345,678,901,234,567,890,123,456.123456789012"
    )
    assert Formatter("en_US", "USD").money(D("12345678901234567890123456.12")) == (
        "$12,345,678,901,234,567,890,123,456.12"
    )
    assert Formatter("en_US", "USD").money(D("-0.00")) == "$0.00"


def test_hostile_customer_name_is_escaped() -> None:
    hostile = Party(name='<script>alert("x")</script>', address=Address(line1="<b>1</b> & co", country="US"))
    html = render_html(sales_tax_doc(buyer=hostile))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<b>1</b>" not in html and "&lt;b&gt;1&lt;/b&gt; &amp; co" in html


def test_tier_breakdown_rows(example_doc: InvoiceDoc) -> None:
    html = render_html(example_doc)  # buyer in Ireland: en_IE
    # 10,000 x 0 + 990,000 x 0.00002 = 19.80 + 250,000 x 0.00001 = 2.50 plus a 25 flat fee = 27.50
    rows = html.split('<tr class="tier">')[1:]
    assert len(rows) == 3
    assert "Tier 1: 0 – 10,000" in rows[0] and "€0.00" in rows[0]
    assert "Tier 2: 10,000 – 1,000,000" in rows[1] and "990,000" in rows[1] and "€0.00002" in rows[1]
    assert "€19.80" in rows[1]
    assert "Tier 3: above 1,000,000" in rows[2] and "+ €25.00 flat" in rows[2] and "€27.50" in rows[2]
    # a line with a single unit price shows it on the line, no breakdown row
    assert "€0.000137" in html


def test_example_totals_discount_reverse_charge_and_users(example_doc: InvoiceDoc) -> None:
    html = render_html(example_doc)
    for text in (
        "Subtotal",
        "€533.30",
        "Discount WELCOME10 (10%)",
        "−€53.33",
        "VAT reverse charge",
        "on €479.97",
        "€479.97",
        "Credits applied",
        "−€20.00",
        "€459.97",
        "MSD-2026-000123",
        "1 December 2026",
    ):
        assert text in html, text  # fmt: skip
    assert "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC" in html
    assert "VAT ID FR40303265045" in html and "VAT ID IE6388047V" in html  # issuer and buyer blocks
    users = html.split("Usage by user")[1]
    assert "alice@kerrybrew.ie" in users and "€28.38" in users  # 47.30 x 750,000 / 1,250,000
    assert "bob@kerrybrew.ie" in users and "€18.92" in users
    assert 'class="watermark"' not in html


def test_draft_has_a_watermark_and_no_number() -> None:
    html = render_html(sales_tax_doc(status="draft"))
    assert '<div class="watermark" aria-hidden="true">DRAFT</div>' in html
    assert "Draft invoice" in html and "No number until finalized" in html
    voided = msgspec.structs.replace(sales_tax_doc(), status="voided")
    assert '<div class="watermark" aria-hidden="true">VOID</div>' in render_html(voided)


def test_a_document_that_does_not_add_up_is_not_rendered() -> None:
    doc = msgspec.structs.replace(sales_tax_doc(), total=sales_tax_doc().total + 1)
    with pytest.raises(ValueError, match=r"^total: 1325\.07 is not subtotal - discount_total \+ tax_total"):
        render_html(doc)
    with pytest.raises(ValueError, match=r"^locale: "):
        render_html(sales_tax_doc(), locale="xx_XX_nope")


@pytest.mark.parametrize(
    ("language", "country", "expected"),
    [(None, "DE", "de_DE"), (None, "US", "en_US"), ("fr", "BE", "fr_BE"), (None, "CH", "de_CH"), ("de", None, "de"),
     (None, None, "en"), ("zz", "QQ", "en")],
)  # fmt: skip
def test_locale_from_the_buyer(language: str | None, country: str | None, expected: str) -> None:
    buyer = Party(name="b", language=language, address=Address(country=country) if country else None)
    assert choose_locale(buyer) == expected
    assert choose_locale(None) == "en"


def test_a_tax_mention_also_in_the_legal_mentions_is_printed_once(example_doc: InvoiceDoc) -> None:
    """The close puts a tax group's mention (here reverse charge) in `legal_mentions` too: the page said it twice."""
    sentence = "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC"
    both = msgspec.structs.replace(example_doc, legal_mentions=[sentence, "Late payment: 40 EUR fixed fee."])
    html = render_html(both)
    assert html.count(sentence) == 1
    assert html.count("Late payment: 40 EUR fixed fee.") == 1
    assert html.index(sentence) < html.index("Late payment")  # the tax mention first, then the others in order
