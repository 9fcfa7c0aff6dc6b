"""Invoice documents for the document tests, with figures computed by hand (never by the code under test).

A plain module (not conftest) so tests import it by a name no other test folder uses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

from meterstream.billing.taxes import REVERSE_CHARGE_MENTION
from meterstream.schemas.invoice import Address, InvoiceDoc, InvoiceLine, Party, TaxTotal, validate

DATA = Path(__file__).parent / "data"
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def sales_tax_doc(currency: str = "USD", buyer: Party | None = None, status: str = "finalized") -> InvoiceDoc:
    """Two lines, 1000.00 + 234.56 = 1234.56, with a flat 7.25 % sales tax per line, rounded half up per line:

    1000.00 x 0.0725 = 72.50; 234.56 x 0.0725 = 17.0056 -> 17.01; tax 89.51; total 1234.56 + 89.51 = 1324.07.
    """
    rate = D("0.0725")
    lines = [
        InvoiceLine(line_no=1, kind="fixed", code="platform", description="Platform fee", quantity=D("1"),
                    unit_price=D("1000.00"), amount=D("1000.00"), tax_code="standard", tax_rate=rate,
                    tax_amount=D("72.50"), start=NOV, end=DEC),
        InvoiceLine(line_no=2, kind="usage", code="storage_gb_hours", description="Storage", quantity=D("1712146"),
                    unit_price=D("0.000137"), amount=D("234.56"), tax_code="standard", tax_rate=rate,
                    tax_amount=D("17.01"), start=NOV, end=DEC),
    ]  # fmt: skip
    return InvoiceDoc(
        id="INV-202611-0000000000000001",
        number=None if status == "draft" else "ACME-2026-000007",
        status=status,  # type: ignore[arg-type]
        tenant="acme",
        customer="cust-1",
        period="2026-11",
        period_start=NOV,
        period_end=DEC,
        issue_date=date(2026, 12, 1),
        due_date=date(2026, 12, 31),
        currency=currency,
        issuer=Party(name="Acme Metering Inc.", address=Address(line1="1 Main St", city="Austin", state="TX",
                                                                 postal_code="78701", country="US")),
        buyer=buyer or Party(name="Globex LLC", address=Address(city="Springfield", country="US")),
        lines=lines,
        taxes=[TaxTotal(rate=rate, taxable_amount=D("1234.56"), tax_amount=D("89.51"), tax_code="standard",
                        category="S")],
        subtotal=D("1234.56"),
        tax_total=D("89.51"),
        total=D("1324.07"),
        amount_due=D("1324.07"),
    )  # fmt: skip


# the German B2B reverse-charge and French B2C invoices of the issue's hand-calculated close (test_ubl.py)
ACME = Party(name="ACME SAS", address=Address(line1="1 rue de la Paix", city="Paris", postal_code="75002",
                                              country="FR"), tax_id="FR40303265045")  # fmt: skip


def line(no: int, kind: str, code: str, quantity: str, amount: str, *, rate: str = "0", tax: str = "0.00",
         category: str = "S", unit_price: str | None = None, unit: str | None = None,
         start: datetime | None = None, end: datetime | None = None, discount: str = "0") -> InvoiceLine:  # fmt: skip
    return InvoiceLine(line_no=no, kind=kind, code=code, description=code.replace("_", " ").capitalize(),  # type: ignore[arg-type]
                       quantity=D(quantity), unit=unit, unit_price=None if unit_price is None else D(unit_price),
                       amount=D(amount), tax_rate=D(rate), tax_amount=D(tax), tax_category=category,  # type: ignore[arg-type]
                       tax_code="standard", start=start, end=end, discount_amount=D(discount))  # fmt: skip


def invoice(
    customer: str,
    tz: str,
    currency: str,
    buyer: Party,
    lines: list[InvoiceLine],
    taxes: list[TaxTotal],
    subtotal: str,
    tax: str,
    total: str,
    due: date,
    **more,
) -> InvoiceDoc:  # type: ignore[no-untyped-def]
    zone = ZoneInfo(tz)
    doc = InvoiceDoc(id=f"INV-202610-{customer}", number="ACME-2026-000001", status="finalized", tenant="acme",
                     customer=customer, period="2026-10", period_start=datetime(2026, 10, 1, tzinfo=zone),
                     period_end=datetime(2026, 11, 1, tzinfo=zone), issue_date=date(2026, 11, 1), due_date=due,
                     currency=currency, issuer=ACME, buyer=buyer, timezone=tz, lines=lines, taxes=taxes,
                     subtotal=D(subtotal), tax_total=D(tax), total=D(total),
                     amount_due=D(more.pop("amount_due", total)), **more)  # fmt: skip
    return validate(doc)


def german_b2b() -> InvoiceDoc:
    """10,000 calls x 0.125 = 1,250.00 + the base fee 99.00 (31 days of October) = 1,349.00 EUR; reverse charge:
    0 % with the Art. 196 mention, so the total is 1,349.00. Berlin time: October is 1..31 locally."""
    berlin = ZoneInfo("Europe/Berlin")
    start, end = datetime(2026, 10, 1, tzinfo=berlin), datetime(2026, 11, 1, tzinfo=berlin)
    buyer = Party(name="Muster GmbH", address=Address(line1="Hauptstr. 5", city="Berlin", postal_code="10115",
                                                      country="DE"), tax_id="DE136695976")  # fmt: skip
    lines = [line(1, "usage", "api_calls", "10000", "1250.00", category="AE", unit_price="0.125", start=start,
                  end=end),
             line(2, "fixed", "base", "31", "99.00", category="AE", unit="days", start=start, end=end)]  # fmt: skip
    taxes = [TaxTotal(rate=D("0"), taxable_amount=D("1349.00"), tax_amount=D("0.00"), tax_code="standard",
                      category="AE", reverse_charge=True, mention=REVERSE_CHARGE_MENTION)]  # fmt: skip
    return invoice("de-gmbh", "Europe/Berlin", "EUR", buyer, lines, taxes, "1349.00", "0.00", "1349.00",
                   date(2026, 12, 1), legal_mentions=[REVERSE_CHARGE_MENTION])  # fmt: skip


def french_b2c() -> InvoiceDoc:
    """4,237 calls x 0.01 = 42.37 + fee 19.99 = 62.36 EUR; 20 % VAT on the group: 62.36 x 0.20 = 12.472 -> 12.47,
    per line 8.474 -> 8.47 and 3.998 -> 4.00 (largest remainder); total 74.83."""
    buyer = Party(name="Marie Curie", address=Address(country="FR"))
    lines = [line(1, "usage", "api_calls", "4237", "42.37", rate="0.20", tax="8.47", unit_price="0.01"),
             line(2, "fixed", "base", "1", "19.99", rate="0.20", tax="4.00", unit_price="19.99")]  # fmt: skip
    taxes = [TaxTotal(rate=D("0.20"), taxable_amount=D("62.36"), tax_amount=D("12.47"), category="S")]
    return invoice("fr-consumer", "Europe/Paris", "EUR", buyer, lines, taxes, "62.36", "12.47", "74.83",
                   date(2026, 11, 1))  # fmt: skip
