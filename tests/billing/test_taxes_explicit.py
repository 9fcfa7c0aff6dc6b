"""Explicit taxes (rule 2b of billing/taxes.py, docs/taxes.md "Explicit taxes"): a customer's own tax codes, else
its tenant's default taxes, instead of the automatic VAT/sales-tax rules; several add up. Figures by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterstream.billing.taxes import (
    EXEMPT,
    Buyer,
    ExplicitTax,
    ExplicitTaxes,
    Seller,
    TaxTable,
    buyer_of,
    determine,
)
from meterstream.billing.totals import TotalsLine, invoice_totals
from meterstream.schemas.entities import CustomerDoc

STATE = ExplicitTax("tx_state", "Texas state", Decimal("0.0625"))
CITY = ExplicitTax("austin", "Austin", Decimal("0.02"))
VAT = ExplicitTax("vat19", "VAT", Decimal("0.19"))
TABLE = TaxTable({"US": {"standard": "0.0725"}})
FR = Seller("FR")


def test_a_customers_own_taxes_replace_the_automatic_rules() -> None:
    # a German business with a valid VAT number would be reverse charged (0 %, AE) by the rules; with its own
    # tax code it is taxed 19 %
    rules = determine(FR, Buyer("DE", tax_id="DE136695976"), None, TABLE)
    assert (rules.rate, rules.category, rules.reverse_charge) == (Decimal(0), "AE", True)
    own = determine(FR, Buyer("DE", tax_id="DE136695976", taxes=(VAT,)), None, TABLE)
    assert (own.rate, own.category, own.reverse_charge) == (Decimal("0.19"), "S", False)
    assert own.mention == "VAT (vat19) 19 %"


def test_several_taxes_add_up_and_the_exempt_line_stays_exempt() -> None:
    buyer = Buyer("US", subdivision="TX", taxes=(STATE, CITY))
    decision = determine(FR, buyer, "reduced", TABLE)  # any line code: the explicit taxes apply
    assert (decision.rate, decision.category) == (Decimal("0.0825"), "S")  # 6.25 % + 2 %
    assert decision.mention == "Texas state (tx_state) 6.25 % + Austin (austin) 2 %"
    assert determine(FR, buyer, EXEMPT, TABLE).rate == 0  # a line exempt by its code stays exempt
    exempt_buyer = Buyer("US", taxes=(STATE,), tax_exempt=True, exempt_reason="Resale certificate 123")
    assert determine(FR, exempt_buyer, None, TABLE).category == "E"
    assert determine(FR, Buyer("US", taxes=(ExplicitTax("zero", "Zero", Decimal(0)),)), None, TABLE).category == "Z"


def test_the_invoice_with_explicit_taxes_by_hand() -> None:
    # 100.00 + 33.33 at 8.25 %: 133.33 x 0.0825 = 10.999725 -> 11.00; lines 8.25 and 2.749725 -> floors 8.25 +
    # 2.74 = 10.99, the cent to the larger remainder: 2.75. Total 133.33 + 11.00 = 144.33.
    totals = invoice_totals([TotalsLine("1", "api", Decimal("100.00")), TotalsLine("2", "fee", Decimal("33.33"))],
                            "USD", seller=FR, buyer=Buyer("US", taxes=(STATE, CITY)), table=TABLE)  # fmt: skip
    assert [line.tax_amount for line in totals.lines] == [Decimal("8.25"), Decimal("2.75")]
    assert (totals.tax_total, totals.total) == (Decimal("11.00"), Decimal("144.33"))


def test_precedence_and_a_customer_without_a_country() -> None:
    explicit = ExplicitTaxes(customers={("t1", "own"): (VAT,)}, organizations={"t1": (STATE,)})
    assert explicit.of("t1", "own") == (VAT,)
    assert explicit.of("t1", "anyone") == (STATE,)  # the tenant's defaults
    assert explicit.of("t2", "anyone") == ()  # none: the automatic rules
    nowhere = CustomerDoc(tenant="t1", external_id="n", name="N", version=1)
    with pytest.raises(ValueError, match=r"^country"):
        buyer_of(nowhere)
    buyer = buyer_of(nowhere, taxes=(STATE,))  # explicit taxes need no country
    assert (buyer.country, determine(FR, buyer, None, TABLE).rate) == (None, Decimal("0.0625"))
    with pytest.raises(ValueError, match=r"^buyer\.country"):
        Buyer(None)
    with pytest.raises(ValueError, match="rate"):
        ExplicitTax("pct", "Percent by mistake", Decimal("20"))
