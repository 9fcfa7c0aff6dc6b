"""Invoice documents for the document tests, with figures computed by hand (never by the code under test).

A plain module (not conftest) so tests import it by a name no other test folder uses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

from meterstream.schemas.invoice import Address, InvoiceDoc, InvoiceLine, Party, TaxTotal

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
