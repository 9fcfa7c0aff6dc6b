"""Invoice totals (billing/totals.py): the issue's three customers by hand, a published example, the identity."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.billing.discounts import Coupon, CouponUse
from meterstream.billing.taxes import REVERSE_CHARGE_MENTION, Buyer, Seller, TaxTable
from meterstream.billing.totals import TotalsLine, invoice_totals

D = Decimal
SELLER = Seller("FR")  # a French seller, registered for VAT
TABLE = TaxTable({"US": {"standard": "0.0725"}})  # EU standard rates + a flat US sales tax of 7.25 %


def figures(totals: object) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    return (totals.subtotal, totals.discount_total, totals.tax_total, totals.total)  # type: ignore[attr-defined]


def test_german_business_customer_reverse_charge() -> None:
    """DE buyer with VAT number DE136695976 (valid), French seller: reverse charge at 0 %.
    api_calls 1,250.00 + platform fee 99.00 = subtotal 1,349.00; no discount; tax 0.00; total 1,349.00;
    the breakdown is one 0 % entry on 1,349.00 with the Art. 196 mention."""
    totals = invoice_totals(
        [TotalsLine("1", "api_calls", D("1250.00")), TotalsLine("2", "platform", D("99.00"))],
        "EUR",
        seller=SELLER,
        buyer=Buyer("DE", tax_id="DE136695976"),
        table=TABLE,
    )
    assert figures(totals) == (D("1349.00"), D("0.00"), D("0.00"), D("1349.00"))
    [tax] = totals.taxes
    assert (tax.rate, tax.taxable_amount, tax.tax_amount, tax.reverse_charge, tax.category) == (
        D("0"),
        D("1349.00"),
        D("0.00"),
        True,
        "AE",
    )
    assert totals.legal_mentions == [REVERSE_CHARGE_MENTION]
    assert [(line.tax_rate, line.tax_amount) for line in totals.lines] == [(D("0"), D("0.00"))] * 2


def test_french_consumer_twenty_percent() -> None:
    """FR buyer, no VAT number: French VAT 20 %. storage 42.37 + subscription 19.99 = subtotal 62.36.
    Tax on the rate group: 62.36 x 0.20 = 12.472 -> 12.47. Per line exactly 8.474 and 3.998: floors 8.47 +
    3.99 = 12.46, one cent left to the larger remainder (0.8 of a cent, line 2): 8.47 and 4.00.
    Total 62.36 + 12.47 = 74.83."""
    totals = invoice_totals(
        [TotalsLine("1", "storage", D("42.37")), TotalsLine("2", "subscription", D("19.99"))],
        "EUR",
        seller=SELLER,
        buyer=Buyer("FR"),
        table=TABLE,
    )
    assert figures(totals) == (D("62.36"), D("0.00"), D("12.47"), D("74.83"))
    assert [(line.tax_rate, line.tax_amount) for line in totals.lines] == [
        (D("0.20"), D("8.47")),
        (D("0.20"), D("4.00")),
    ]
    [tax] = totals.taxes
    assert (tax.rate, tax.taxable_amount, tax.tax_amount, tax.reverse_charge, tax.mention) == (
        D("0.20"),
        D("62.36"),
        D("12.47"),
        False,
        None,
    )
    assert totals.legal_mentions == []


def test_us_customer_flat_sales_tax_coupon_and_minimum_commitment() -> None:
    """US buyer, flat sales tax 7.25 %, a 25.00 USD coupon (once) and a 300.00 minimum commitment:
    usage 180.00 + base fee 50.00 + minimum true-up 300.00 - 180.00 - 50.00 = 70.00 -> subtotal 300.00.
    Coupon 25.00 pro rata 180 : 50 : 70 in cents: 1500, 416.67, 583.33 -> floors 1500 + 416 + 583 = 2499,
    one cent to the largest remainder (.67, line 2): 15.00, 4.17, 5.83.
    Taxable 165.00, 45.83, 64.17 = 275.00; tax 275.00 x 0.0725 = 19.9375 -> 19.94.
    Per line exactly 11.9625, 3.322675, 4.652325: floors 11.96 + 3.32 + 4.65 = 19.93, one cent to the
    largest remainder (.2675, line 2): 11.96, 3.33, 4.65.
    Total 300.00 - 25.00 + 19.94 = 294.94."""
    totals = invoice_totals(
        [
            TotalsLine("1", "api_calls", D("180.00")),
            TotalsLine("2", "base", D("50.00")),
            TotalsLine("3", "minimum_true_up", D("70.00")),
        ],
        "USD",
        seller=SELLER,
        buyer=Buyer("US"),
        table=TABLE,
        coupons=[CouponUse(Coupon("WELCOME25", "fixed", amount_off=D("25.00"), currency="USD"))],
    )
    assert figures(totals) == (D("300.00"), D("25.00"), D("19.94"), D("294.94"))
    assert [(x.discount_amount, x.taxable_amount, x.tax_amount) for x in totals.lines] == [
        (D("15.00"), D("165.00"), D("11.96")),
        (D("4.17"), D("45.83"), D("3.33")),
        (D("5.83"), D("64.17"), D("4.65")),
    ]
    [discount] = totals.discounts
    assert (discount.code, discount.amount, discount.amount_remaining, discount.exhausted) == (
        "WELCOME25",
        D("25.00"),
        D("0.00"),
        True,
    )
    [tax] = totals.taxes
    assert (tax.rate, tax.taxable_amount, tax.tax_amount) == (D("0.0725"), D("275.00"), D("19.94"))


def test_published_example_flexprice_calculation_order() -> None:
    """docs.flexprice.io "billing calculation order": API calls 80.00 + flat fee 20.00 = 100.00; line
    coupon 25 % off API calls (20.00), subscription coupon 10.00 off; taxable 70.00; tax 8.25 % = 5.775 ->
    5.78; the published invoice total 70.78 is after 5.00 of prepaid credits, i.e. 75.78 before them."""
    totals = invoice_totals(
        [TotalsLine("1", "api_calls", D("80.00")), TotalsLine("2", "fee", D("20.00"))],
        "USD",
        seller=Seller("US"),
        buyer=Buyer("US"),
        table=TaxTable({"US": {"standard": "0.0825"}}, eu_standard_rates=False),
        coupons=[
            CouponUse(Coupon("API25", "percentage", percent_off=D("25"), applies_to=frozenset({"api_calls"}))),
            CouponUse(Coupon("TEN", "fixed", amount_off=D("10.00"), currency="USD")),
        ],
    )
    assert figures(totals) == (D("100.00"), D("30.00"), D("5.78"), D("75.78"))
    assert totals.total - D("5.00") == D("70.78")


def test_invalid_vat_number_names_tax_id() -> None:
    with pytest.raises(ValueError, match=r"^buyer\.tax_id: 'DE13669597' is not a valid EU VAT number"):
        invoice_totals(
            [TotalsLine("1", "api_calls", D("1.00"))],
            "EUR",
            seller=SELLER,
            buyer=Buyer("DE", tax_id="DE13669597"),
            table=TABLE,
        )


def test_unrounded_line_amount_names_the_line() -> None:
    with pytest.raises(ValueError, match=r"^lines\[0\]\.amount:"):
        invoice_totals([TotalsLine("1", "x", D("1.005"))], "EUR", seller=SELLER, buyer=Buyer("FR"), table=TABLE)


amounts = st.integers(min_value=-50_000, max_value=5_000_000).map(lambda c: Decimal(c).scaleb(-2))
line_lists = st.lists(
    st.tuples(st.sampled_from(["api_calls", "storage", "base"]), amounts, st.sampled_from([None, "reduced", "exempt"])),
    min_size=1,
    max_size=8,
)
coupon_lists = st.lists(
    st.one_of(
        st.integers(1, 100).map(lambda p: Coupon("P", "percentage", percent_off=Decimal(p), duration="forever")),
        st.integers(1, 100_000).map(
            lambda c: Coupon("F", "fixed", amount_off=Decimal(c).scaleb(-2), currency="EUR", duration="forever")
        ),
        st.integers(1, 100).map(
            lambda p: Coupon("S", "percentage", percent_off=Decimal(p), applies_to=frozenset({"storage"}))
        ),
    ),
    max_size=3,
)
buyers = st.sampled_from([Buyer("FR"), Buyer("DE"), Buyer("DE", tax_id="DE136695976"), Buyer("FI"), Buyer("JP")])


@settings(max_examples=200, deadline=None)
@given(raw=line_lists, coupons=coupon_lists, buyer=buyers)
def test_the_invoice_identity_holds_to_the_cent(
    raw: list[tuple[str, Decimal, str | None]], coupons: list[Coupon], buyer: Buyer
) -> None:
    table = TaxTable({country: {"reduced": "0.055"} for country in ("FR", "DE", "FI")})
    lines = [TotalsLine(str(i), code, amount, tax) for i, (code, amount, tax) in enumerate(raw)]
    uses = [CouponUse(c) for c in coupons]
    totals = invoice_totals(lines, "EUR", seller=SELLER, buyer=buyer, table=table, coupons=uses)
    assert totals.total == totals.subtotal - totals.discount_total + totals.tax_total
    assert totals.subtotal == sum(line.amount for line in lines)
    assert sum(x.discount_amount for x in totals.lines) == totals.discount_total
    assert totals.discount_total == sum(d.amount for d in totals.discounts)
    assert sum(x.tax_amount for x in totals.lines) == totals.tax_total == sum(t.tax_amount for t in totals.taxes)
    if totals.subtotal >= 0:
        assert totals.subtotal - totals.discount_total >= 0
    for tax in totals.taxes:  # each breakdown entry is rate x taxable, rounded once half away from zero
        assert tax.tax_amount == (tax.rate * tax.taxable_amount).quantize(D("0.01"), rounding=ROUND_HALF_UP)
        assert sum(x.taxable_amount for x in totals.lines if x.key in tax.line_keys) == tax.taxable_amount
    for line in totals.lines:  # each line's tax is within one cent of its exact tax
        assert abs(line.tax_amount - line.tax_rate * line.taxable_amount) < D("0.01")


def test_the_invoice_document_takes_the_results_one_to_one() -> None:
    """The contract with schemas/invoice.py: the document's discount, tax-total and per-subject structs are
    built from these dataclasses by field name alone, and a line's discount and tax fields have the same
    names. By hand: 180.00 + 50.00 = 230.00, coupon 25.00 -> taxable 205.00; 205.00 x 0.0725 = 14.8625 -> 14.86."""
    import dataclasses

    import msgspec

    from meterstream.billing.allocation import subject_shares
    from meterstream.schemas import invoice

    totals = invoice_totals(
        [TotalsLine("1", "api_calls", D("180.00")), TotalsLine("2", "base", D("50.00"))],
        "USD",
        seller=SELLER,
        buyer=Buyer("US"),
        table=TABLE,
        coupons=[CouponUse(Coupon("WELCOME25", "fixed", amount_off=D("25.00"), currency="USD"))],
    )

    def copy(source: object, target: type) -> object:
        names = {f.name for f in msgspec.structs.fields(target)}
        values = dataclasses.asdict(source)  # type: ignore[call-overload]
        return target(**{k: v for k, v in values.items() if k in names})

    discount = copy(totals.discounts[0], invoice.Discount)
    tax = copy(totals.taxes[0], invoice.TaxTotal)
    share = copy(subject_shares(D("50.00"), {"u1": 1}, "USD")[0], invoice.SubjectShare)
    assert (discount.code, discount.amount) == ("WELCOME25", D("25.00"))  # type: ignore[attr-defined]
    assert (tax.rate, tax.taxable_amount, tax.tax_amount, tax.category) == (  # type: ignore[attr-defined]
        D("0.0725"),
        D("205.00"),
        D("14.86"),
        "S",
    )
    assert (share.subject, share.amount) == ("u1", D("50.00"))  # type: ignore[attr-defined]
    line_fields = {f.name for f in msgspec.structs.fields(invoice.InvoiceLine)}
    assert {"discount_amount", "tax_code", "tax_rate", "tax_amount", "tax_category"} <= line_fields
    assert {"discount_amount", "tax_code", "tax_rate", "tax_amount", "tax_category"} <= {
        f.name for f in dataclasses.fields(totals.lines[0])
    }
    document = {"subtotal", "discount_total", "tax_total", "total", "discounts", "taxes", "legal_mentions"}
    assert document <= {f.name for f in msgspec.structs.fields(invoice.InvoiceDoc)}
    assert document <= {f.name for f in dataclasses.fields(totals)}
