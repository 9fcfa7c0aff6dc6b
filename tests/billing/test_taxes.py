"""Tax determination and rounding (billing/taxes.py). VAT numbers are the published examples of python-stdnum's
documentation (DE 136,695 976; FR 40 303 265 045; EL 094259216); rates are the EU's published standard rates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterstream.billing.tax_rates import EU_STANDARD_VAT, ISO_COUNTRIES
from meterstream.billing.taxes import (
    REVERSE_CHARGE_MENTION,
    Buyer,
    Seller,
    TaxDecision,
    TaxTable,
    buyer_of,
    determine,
    tax_totals,
)
from meterstream.schemas.entities import Address, CustomerDoc

D = Decimal
FR_SELLER = Seller("FR")
TABLE = TaxTable({"FR": {"reduced": "0.055"}, "US": {"standard": "0.0725"}, "US-NY": {"standard": "0.04"}})


def test_eu_standard_rates_are_the_27_member_states() -> None:
    """European Commission TEDB standard rates: Germany 19 %, France 20 %, Hungary 27 % (the highest),
    Luxembourg 17 % (the lowest), Finland 25.5 % since September 2024."""
    assert len(EU_STANDARD_VAT) == 27
    assert {k: EU_STANDARD_VAT[k] for k in ("DE", "FR", "HU", "LU", "FI")} == {
        "DE": "0.19",
        "FR": "0.20",
        "HU": "0.27",
        "LU": "0.17",
        "FI": "0.255",
    }
    assert len(ISO_COUNTRIES) == 250  # 249 ISO 3166-1 codes + XK


def test_german_business_with_a_valid_vat_number_from_a_french_seller_is_reverse_charged() -> None:
    decision = determine(FR_SELLER, Buyer("DE", tax_id="DE 136,695 976"), None, TABLE)
    assert decision == TaxDecision(D("0"), "AE", "standard", None, reverse_charge=True, mention=REVERSE_CHARGE_MENTION)
    assert decision.mention == (
        "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC"
    )


def test_greek_vat_numbers_start_with_el() -> None:
    assert determine(FR_SELLER, Buyer("GR", tax_id="EL094259216"), None, TABLE).reverse_charge


def test_french_consumer_pays_french_vat() -> None:
    decision = determine(FR_SELLER, Buyer("FR"), None, TABLE)
    assert (decision.rate, decision.category, decision.jurisdiction, decision.reverse_charge) == (
        D("0.20"),
        "S",
        "FR",
        False,
    )


def test_domestic_business_pays_the_sellers_rate_no_reverse_charge() -> None:
    decision = determine(FR_SELLER, Buyer("FR", tax_id="FR 40 303 265 045"), None, TABLE)
    assert (decision.rate, decision.reverse_charge, decision.mention) == (D("0.20"), False, None)


def test_consumer_in_another_member_state_pays_its_rate_oss() -> None:
    """A German consumer of a French seller: German VAT, 19 % (OSS)."""
    assert determine(FR_SELLER, Buyer("DE"), None, TABLE).rate == D("0.19")


def test_reduced_rate_from_the_table_and_an_unknown_code_names_tax_code() -> None:
    assert determine(FR_SELLER, Buyer("FR"), "reduced", TABLE).rate == D("0.055")
    with pytest.raises(ValueError, match=r"^tax_code: no 'reduced' rate for DE"):
        determine(FR_SELLER, Buyer("DE"), "reduced", TABLE)


def test_us_flat_sales_tax_and_a_state_rate() -> None:
    """US 7.25 % flat; New York configured at 4 %; Texas not configured -> the flat US rate."""
    assert determine(FR_SELLER, Buyer("US"), None, TABLE).rate == D("0.0725")
    assert determine(FR_SELLER, Buyer("US", subdivision="NY"), None, TABLE).jurisdiction == "US-NY"
    assert determine(FR_SELLER, Buyer("US", subdivision="NY"), None, TABLE).rate == D("0.04")
    assert determine(FR_SELLER, Buyer("US", subdivision="TX"), None, TABLE).rate == D("0.0725")


def test_outside_the_eu_and_not_in_the_table_no_tax_with_the_place_of_supply_mention() -> None:
    consumer = determine(FR_SELLER, Buyer("JP"), None, TABLE)
    business = determine(FR_SELLER, Buyer("JP", tax_id="1234567890123"), None, TABLE)
    assert (consumer.rate, consumer.category) == (D("0"), "O")
    assert consumer.mention is not None and "Art. 58" in consumer.mention
    assert business.mention is not None and "Art. 44" in business.mention
    assert determine(Seller("US"), Buyer("JP"), None, TABLE).mention is None


def test_exemptions_customer_and_line() -> None:
    exempt_buyer = Buyer("US", tax_exempt=True, exempt_reason="Resale certificate 12-345")
    assert determine(FR_SELLER, exempt_buyer, None, TABLE) == TaxDecision(
        D("0"), "E", "standard", None, mention="Resale certificate 12-345"
    )
    line = determine(FR_SELLER, Buyer("FR"), "exempt", TABLE)
    assert (line.rate, line.category, line.mention) == (D("0"), "E", "Exempt from tax")


def test_seller_not_registered_for_vat_charges_none() -> None:
    seller = Seller("FR", vat_registered=False, not_registered_mention="TVA non applicable, art. 293 B du CGI")
    decision = determine(seller, Buyer("FR"), None, TABLE)
    assert (decision.rate, decision.category, decision.mention) == (
        D("0"),
        "E",
        "TVA non applicable, art. 293 B du CGI",
    )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: determine(FR_SELLER, Buyer("DE", tax_id="DE12345"), None, TABLE), "buyer.tax_id"),
        (lambda: determine(FR_SELLER, Buyer("DE", tax_id="DE136695977"), None, TABLE), "buyer.tax_id"),
        (lambda: determine(FR_SELLER, Buyer("DE", tax_id="FR40303265045"), None, TABLE), "buyer.tax_id"),
        (lambda: Buyer("XX"), "buyer.country"),
        (lambda: Buyer("fr"), "buyer.country"),
        (lambda: Seller("EU"), "seller.country"),
        (lambda: Buyer("US", tax_exempt=True), "buyer.exempt_reason"),
        (lambda: TaxTable({"FR": {"reduced": "-0.055"}}), "rates.FR.reduced"),
        (lambda: TaxTable({"US": {"standard": "7.25"}}), "rates.US.standard"),
        (lambda: TaxTable({"US": {"standard": 0.0725}}), "rates.US.standard"),
        (lambda: TaxTable({"XX": {"standard": "0.1"}}), "rates.XX"),
        (lambda: TaxTable({"US-CALIF": {"standard": "0.1"}}), "rates.US-CALIF"),
        (lambda: TaxTable({"FR": {"exempt": "0"}}), "rates.FR.exempt"),
        (lambda: TaxTable.from_config({"rate": {}}), "rate"),
    ],
)
def test_invalid_input_names_the_field(make: object, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        make()  # type: ignore[operator]
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


def test_table_from_a_yaml_like_config_without_the_eu_defaults() -> None:
    table = TaxTable.from_config({"rates": {"US": {"standard": "0.0725"}}, "eu_standard_rates": False})
    assert table.has("US") and not table.has("FR")
    with pytest.raises(ValueError, match=r"^country: no tax rates for FR"):
        table.rate("FR", "standard")


def _s(rate: str) -> TaxDecision:
    return TaxDecision(D(rate), "S", "standard", "FR")


def test_tax_is_rounded_per_rate_and_shared_among_lines() -> None:
    """Three lines of 0.03 at 20 %: the rate's tax is 0.09 x 0.20 = 0.018 -> 0.02 (what a reader computes
    from the breakdown). Per line exactly 0.006 each (0.6 cent): floors 0, 2 cents left, equal remainders
    -> lines 1 and 2 get 0.01, line 3 gets 0.00. (Rounding each line alone would give 0.03 in all.)"""
    line_taxes, totals = tax_totals([(k, D("0.03"), _s("0.20")) for k in "abc"], "EUR")
    assert [t.tax_amount for t in line_taxes] == [D("0.01"), D("0.01"), D("0.00")]
    [total] = totals
    assert (total.rate, total.taxable_amount, total.tax_amount, total.line_keys) == (
        D("0.20"),
        D("0.09"),
        D("0.02"),
        ["a", "b", "c"],
    )


def test_groups_by_rate_with_a_credit_line_and_half_up() -> None:
    """20 %: 100.00 and a credit -10.00 -> taxable 90.00, tax 18.00 (lines 20.00 and -2.00).
    10 % (reduced, configured as S): 0.05 -> 0.005 -> 0.01 (half away from zero).
    Exempt line 50.00: its own group, tax 0.00."""
    exempt = TaxDecision(D("0"), "E", "exempt", None, mention="Exempt from tax")
    line_taxes, totals = tax_totals(
        [
            ("1", D("100.00"), _s("0.20")),
            ("2", D("0.05"), _s("0.10")),
            ("3", D("-10.00"), _s("0.20")),
            ("4", D("50.00"), exempt),
        ],
        "EUR",
    )
    assert [t.tax_amount for t in line_taxes] == [D("20.00"), D("0.01"), D("-2.00"), D("0.00")]
    assert [(t.rate, t.taxable_amount, t.tax_amount, t.category) for t in totals] == [
        (D("0.20"), D("90.00"), D("18.00"), "S"),
        (D("0.10"), D("0.05"), D("0.01"), "S"),
        (D("0"), D("50.00"), D("0.00"), "E"),
    ]


def test_buyer_of_a_customer_uses_its_country_tax_id_and_state() -> None:
    customer = CustomerDoc(tenant="t", external_id="acme", name="Acme", version=1, tax_id="DE136695976", country="DE")
    assert buyer_of(customer) == Buyer("DE", tax_id="DE136695976")
    ny = CustomerDoc(tenant="t", external_id="ny", name="NY", version=1, address=Address(country="US", state="NY"))
    assert buyer_of(ny).jurisdictions == ("US-NY", "US")
    with pytest.raises(ValueError, match=r"^country: customer 'x' has no country"):
        buyer_of(CustomerDoc(tenant="t", external_id="x", name="X", version=1))
