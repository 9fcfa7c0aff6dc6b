"""Nothing the renderer writes itself is left in English on a German or French page (session 17, the audit's item
5): the draft/void watermark printed "DRAFT"/"VOID", and the tax mentions billing/taxes.py puts into a document
(reverse charge, outside the EU, exempt, not registered) were printed in English on every page. The document keeps
its English data; the page says it in its language. A tenant's own words (a coupon's description, payment terms,
an exemption reason it configured) are printed as written."""

from __future__ import annotations

import re

import msgspec
import pytest
from invoice_samples import sales_tax_doc

from meterstream.billing.taxes import (
    EXEMPT_MENTION,
    NOT_REGISTERED_MENTION,
    OUTSIDE_EU_B2B_MENTION,
    OUTSIDE_EU_B2C_MENTION,
    REVERSE_CHARGE_MENTION,
)
from meterstream.documents.html import render_html
from meterstream.documents.labels import KEYS, LABELS
from meterstream.schemas.invoice import Address, InvoiceDoc, Party

WATERMARK = '<div class="watermark" aria-hidden="true">{}</div>'
TERMS = "Payment by bank transfer to IBAN FR76 3000 6000 0112 3456 7890 189."  # the tenant's own words


def in_(country: str, doc: InvoiceDoc | None = None) -> InvoiceDoc:
    buyer = Party(name="Kunde", address=Address(city="X", country=country))
    return msgspec.structs.replace(doc or sales_tax_doc("EUR"), buyer=buyer)


def texts(html: str) -> set[str]:
    """The page's text nodes (its body, the CSS left out), entities as written by the escaper."""
    body = html.split("</style>", 1)[1]
    return {t.strip() for t in re.sub(r"<[^>]+>", "\n", body).split("\n") if t.strip()}


@pytest.mark.parametrize(("country", "draft", "void"), [("DE", "ENTWURF", "STORNIERT"), ("FR", "BROUILLON",
                                                                                        "ANNULÉE")])  # fmt: skip
def test_the_watermark_in_the_pages_language(country: str, draft: str, void: str) -> None:
    assert WATERMARK.format(draft) in render_html(in_(country, sales_tax_doc("EUR", status="draft")))
    assert WATERMARK.format(void) in render_html(in_(country, msgspec.structs.replace(sales_tax_doc(),
                                                                                      status="voided")))  # fmt: skip
    assert WATERMARK.format("DRAFT") in render_html(sales_tax_doc(status="draft"))  # English stays English


def test_the_tax_mentions_in_the_pages_language() -> None:
    mentions = [REVERSE_CHARGE_MENTION, OUTSIDE_EU_B2B_MENTION, OUTSIDE_EU_B2C_MENTION, EXEMPT_MENTION,
                NOT_REGISTERED_MENTION, TERMS]  # fmt: skip
    doc = msgspec.structs.replace(sales_tax_doc("EUR"), legal_mentions=mentions)
    german = texts(render_html(in_("DE", doc)))
    assert {
        "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge), Art. 196 Richtlinie 2006/112/EG",
        "Keine Umsatzsteuer: Leistungsort außerhalb der EU, Art. 44 Richtlinie 2006/112/EG",
        "Keine Umsatzsteuer: Leistungsort außerhalb der EU, Art. 58 Richtlinie 2006/112/EG",
        "Steuerfrei",
        "Keine Umsatzsteuer berechnet: der Verkäufer ist nicht umsatzsteuerlich registriert",
        TERMS,
    } <= german
    french = texts(render_html(in_("FR", doc)))
    assert {
        "Autoliquidation : TVA due par le preneur, art. 196 de la directive 2006/112/CE",
        "TVA non applicable : lieu de prestation hors de l&#39;UE, art. 44 de la directive 2006/112/CE",
        "TVA non applicable : lieu de prestation hors de l&#39;UE, art. 58 de la directive 2006/112/CE",
        "Exonéré de TVA",
        "TVA non facturée : le vendeur n&#39;est pas assujetti à la TVA",
        TERMS,
    } <= french
    for page in (german, french):
        assert not set(mentions[:5]) & page
    assert set(mentions) <= texts(render_html(doc))  # an English page: the document's words


@pytest.mark.parametrize("country", ["DE", "FR"])
def test_no_label_of_the_page_is_left_in_english(example_doc: InvoiceDoc, country: str) -> None:
    """The example document (tiers, fees, a discount, reverse charge, credits, users) as a draft and voided: no
    text node of the page is an English label that the language words differently."""
    language = {"DE": "de", "FR": "fr"}[country]
    english = {k for k in KEYS if LABELS[language][k] != k and "{" not in k}
    for status in ("draft", "voided", "finalized"):
        doc = msgspec.structs.replace(example_doc, status=status, number=None if status == "draft" else "N-1")
        left = texts(render_html(in_(country, doc))) & english
        assert not left, (status, left)
