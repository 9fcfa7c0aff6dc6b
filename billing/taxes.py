"""Which tax applies to an invoice line, and the tax of an invoice (docs/taxes.md). Pure: no I/O, no network.

Determination (`determine`), for a seller, a buyer and a line's tax code, in this order:
1. a tax-exempt buyer (`Buyer.tax_exempt`, with its reason): no tax, the reason is the mention (E);
2. a line with tax code `exempt`: no tax, the table's exemption mention (E);
2b. a buyer with explicit taxes (`Buyer.taxes`: the customer's own tax codes, else its tenant's default
   taxes, Lago's `taxes`; `ExplicitTaxes.of`): those rates instead of the rules below, whatever the line's
   tax code and the countries; several add up (Lago sums the rates of a fee's taxes) into one rate (S, or Z
   when 0), the mention names each tax and its rate;
3. a buyer in the EU:
   - seller not VAT-registered: no VAT, the seller's mention (E; e.g. a franchise threshold);
   - B2B = the buyer has a tax id; it must be a valid EU VAT number by format and check digits
     (python-stdnum `stdnum.eu.vat`; no VIES online check) of the buyer's country, else ValueError naming
     `buyer.tax_id` (a typo must not silently turn into charging VAT);
     seller in another country: reverse charge, 0 % with the Art. 196 mention (AE);
     seller in the same country: that country's rate (S);
   - B2C (no tax id): the buyer's country rate (S): the OSS rule for telecom and electronically supplied
     services, ignoring the EUR 10,000 threshold under which a small seller may charge its own rate;
4. a buyer outside the EU: the rate of its subdivision (`US-CA`) or its country (`US`) when the table has
   one — a non-EU jurisdiction in the table is one where the seller collects tax (the nexus decision is
   configuration, not computed); otherwise no tax (O), with the Art. 44 (B2B) or Art. 58 (B2C) mention
   when the seller is in the EU.
Unknown tax codes for the jurisdiction and unknown countries are ValueErrors naming the field.

Rounding (`tax_totals`): ONE rule. Lines are grouped by tax (category, rate, reverse charge, mention); a
group's tax is rate x (the sum of its taxable amounts), rounded once to the currency's minor unit, half
away from zero (EN 16931 BR-S-08, BR-S-09, BR-CO-17: VAT category tax amount = taxable amount x rate).
Each line's tax is its share of the group's tax by largest remainder: floor or ceil of its exact
rate x taxable, adding up to the group's tax exactly. So the tax totals by rate are what a reader computes
from the breakdown, and the lines add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from stdnum.eu import vat as eu_vat

from meterstream.billing.allocation import apportion, from_units, round_half_away, to_units
from meterstream.billing.tax_rates import EU_MEMBER_STATES, EU_STANDARD_VAT, ISO_COUNTRIES
from meterstream.rating.money import EXACT, ZERO, to_decimal
from meterstream.schemas.entities import CustomerDoc

__all__ = [
    "EXEMPT",
    "REVERSE_CHARGE_MENTION",
    "STANDARD",
    "Buyer",
    "ExplicitTax",
    "ExplicitTaxes",
    "LineTax",
    "Seller",
    "TaxDecision",
    "TaxTable",
    "TaxTotal",
    "buyer_of",
    "determine",
    "explicit_decision",
    "tax_in_units",
    "tax_totals",
    "valid_country",
]

STANDARD = "standard"  # the tax code of a line without one
EXEMPT = "exempt"  # the line-level exemption code
REVERSE_CHARGE_MENTION = "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC"
OUTSIDE_EU_B2B_MENTION = "VAT not applicable: place of supply outside the EU, Art. 44 Directive 2006/112/EC"
OUTSIDE_EU_B2C_MENTION = "VAT not applicable: place of supply outside the EU, Art. 58 Directive 2006/112/EC"
EXEMPT_MENTION = "Exempt from tax"
NOT_REGISTERED_MENTION = "No VAT charged: the seller is not registered for VAT"

# UNCL 5305 tax category codes, as EN 16931 uses them
Category = Literal["S", "Z", "E", "AE", "O"]
_VAT_PREFIX = {"GR": "EL"}  # a Greek VAT number starts with EL, the country code is GR


def valid_country(code: object, field_name: str) -> str:
    """`code` if it is an ISO 3166-1 alpha-2 code (upper case), else ValueError naming `field_name`."""
    if not isinstance(code, str) or code not in ISO_COUNTRIES:
        raise ValueError(f"{field_name}: unknown country {code!r} (an ISO 3166-1 alpha-2 code such as 'FR')")
    return code


@dataclass(frozen=True, slots=True)
class Seller:
    """The invoicing entity, from configuration."""

    country: str
    vat_registered: bool = True
    not_registered_mention: str = NOT_REGISTERED_MENTION

    def __post_init__(self) -> None:
        valid_country(self.country, "seller.country")


@dataclass(frozen=True, slots=True)
class ExplicitTax:
    """A tax given explicitly (Lago's tax object): code, name and rate as a fraction (0.2 is 20 %)."""

    code: str
    name: str
    rate: Decimal

    def __post_init__(self) -> None:
        rate = to_decimal(self.rate)
        if not 0 <= rate <= 1:
            raise ValueError(f"taxes.{self.code}.rate: a fraction between 0 and 1 (0.2 is 20 %), got {rate}")
        object.__setattr__(self, "rate", rate)


@dataclass(frozen=True)
class ExplicitTaxes:
    """The explicit taxes of a close: each customer's own ((tenant, customer) -> taxes) and each tenant's
    defaults (tenant -> taxes; Lago's `applied_to_organization`)."""

    customers: Mapping[tuple[str, str], tuple[ExplicitTax, ...]] = field(default_factory=dict)
    organizations: Mapping[str, tuple[ExplicitTax, ...]] = field(default_factory=dict)

    def of(self, tenant: str, customer: str) -> tuple[ExplicitTax, ...]:
        """Lago's precedence: the customer's own taxes, else its tenant's defaults, else none (the rules)."""
        return self.customers.get((tenant, customer)) or self.organizations.get(tenant, ())


@dataclass(frozen=True, slots=True)
class Buyer:
    """The customer as tax sees it. A buyer with a tax id is a business (B2B). With explicit `taxes` the
    country may be unknown (None): the taxes do not depend on it."""

    country: str | None
    tax_id: str | None = None  # an EU VAT number for EU buyers (spaces, dots and dashes are ignored)
    subdivision: str | None = None  # ISO 3166-2 part after the dash: the US state ('CA' for US-CA)
    tax_exempt: bool = False
    exempt_reason: str | None = None  # required when tax_exempt: printed on the invoice
    taxes: tuple[ExplicitTax, ...] = ()  # explicit taxes: these rates instead of the rules (rule 2b)

    def __post_init__(self) -> None:
        if self.country is not None or not self.taxes:
            valid_country(self.country, "buyer.country")
        if self.tax_exempt and not (self.exempt_reason and self.exempt_reason.strip()):
            raise ValueError("buyer.exempt_reason: a tax-exempt customer needs the reason printed on its invoices")
        if self.tax_id is not None and not self.tax_id.strip():
            object.__setattr__(self, "tax_id", None)

    @property
    def jurisdictions(self) -> tuple[str, ...]:
        """Where a rate is looked up, most specific first: ('US-CA', 'US') or ('FR',)."""
        if self.country is None:
            return ()
        if self.subdivision:
            return (f"{self.country}-{self.subdivision.upper()}", self.country)
        return (self.country,)


def buyer_of(
    customer: CustomerDoc,
    *,
    tax_exempt: bool = False,
    exempt_reason: str | None = None,
    taxes: Sequence[ExplicitTax] = (),
) -> Buyer:
    """The tax buyer of a customer's billing details: its country (`country`, else `address.country`), its
    tax id, and the state of its address as the subdivision; `taxes`: its explicit taxes (rule 2b).
    ValueError naming `country` when it has neither a country nor explicit taxes."""
    address = customer.address
    country = customer.country or (address.country if address else None)
    if not country and not taxes:
        raise ValueError(f"country: customer {customer.external_id!r} has no country; taxes are decided by it")
    return Buyer(
        country or None,
        tax_id=customer.tax_id,
        subdivision=address.state if address else None,
        tax_exempt=tax_exempt,
        exempt_reason=exempt_reason,
        taxes=tuple(taxes),
    )


class TaxTable:
    """Tax rates by jurisdiction and tax code: {"FR": {"standard": "0.20", "reduced": "0.055"}, "US-CA": {...}}.

    A plain mapping (YAML-able; rates as strings or Decimals, never floats) of jurisdiction — an ISO 3166-1
    country, or country-subdivision such as `US-CA` — to tax code to rate as a fraction (0.20 is 20 %).
    With `eu_standard_rates` (default) the 27 EU standard rates (billing/tax_rates.py, source named there)
    are the `standard` code of each member state unless `rates` overrides them. ValueError naming the
    entry (`rates.US.standard`) for a negative rate, a rate above 1 (rates are fractions, not percent), an
    unknown country.
    """

    def __init__(
        self,
        rates: Mapping[str, Mapping[str, Decimal | str | int]] | None = None,
        *,
        eu_standard_rates: bool = True,
        exempt_mention: str = EXEMPT_MENTION,
    ) -> None:
        table: dict[str, dict[str, Decimal]] = {}
        if eu_standard_rates:
            for country, rate in EU_STANDARD_VAT.items():
                table[country] = {STANDARD: Decimal(rate)}
        for jurisdiction, codes in (rates or {}).items():
            country, _, subdivision = str(jurisdiction).partition("-")
            valid_country(country, f"rates.{jurisdiction}")
            if "-" in str(jurisdiction) and not (subdivision.isalnum() and 1 <= len(subdivision) <= 3):
                raise ValueError(f"rates.{jurisdiction}: a subdivision is 1-3 letters or digits (ISO 3166-2: US-CA)")
            entry = table.setdefault(jurisdiction, {})
            for code, value in codes.items():
                name = f"rates.{jurisdiction}.{code}"
                if code == EXEMPT:
                    raise ValueError(f"{name}: 'exempt' is reserved (no tax, with the exemption mention)")
                try:
                    rate = to_decimal(value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{name}: {exc}") from None
                if rate < 0:
                    raise ValueError(f"{name}: a tax rate must not be negative, got {rate}")
                if rate > 1:
                    raise ValueError(f"{name}: {rate} is more than 1; rates are fractions (0.0725 is 7.25 %)")
                entry[code] = rate
        self._rates = table
        self.exempt_mention = exempt_mention

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TaxTable:
        """From a configuration mapping: {rates: {...}, eu_standard_rates: true, exempt_mention: "..."}."""
        unknown = set(config) - {"rates", "eu_standard_rates", "exempt_mention"}
        if unknown:
            raise ValueError(f"{min(unknown)}: unknown tax table setting")
        return cls(
            config.get("rates"),
            eu_standard_rates=bool(config.get("eu_standard_rates", True)),
            exempt_mention=str(config.get("exempt_mention", EXEMPT_MENTION)),
        )

    def has(self, jurisdiction: str) -> bool:
        return jurisdiction in self._rates

    def rate(self, jurisdiction: str, tax_code: str) -> Decimal:
        """The rate of `tax_code` in `jurisdiction`; ValueError naming `tax_code` when the table has none."""
        codes = self._rates.get(jurisdiction)
        if codes is None:
            raise ValueError(f"country: no tax rates for {jurisdiction} in the tax table")
        rate = codes.get(tax_code)
        if rate is None:
            known = ", ".join(sorted(codes))
            raise ValueError(f"tax_code: no {tax_code!r} rate for {jurisdiction} in the tax table (it has: {known})")
        return rate


@dataclass(frozen=True, slots=True)
class TaxDecision:
    """The tax of one line: its rate and why. `category` is the UNCL 5305 code EN 16931 uses."""

    rate: Decimal  # a fraction: 0.20 is 20 %
    category: Category
    tax_code: str  # the line's code, `standard` when it had none
    jurisdiction: str | None  # whose rate ('FR', 'US-CA'); None when no tax is due
    reverse_charge: bool = False
    mention: str | None = None  # the legal mention printed with the tax totals


def determine(seller: Seller, buyer: Buyer, tax_code: str | None, table: TaxTable) -> TaxDecision:
    """The tax of a line with `tax_code` sold by `seller` to `buyer` (rules: module docstring)."""
    code = tax_code or STANDARD
    if buyer.tax_exempt:
        return TaxDecision(ZERO, "E", code, None, mention=buyer.exempt_reason)
    if code == EXEMPT:
        return TaxDecision(ZERO, "E", code, None, mention=table.exempt_mention)
    if buyer.taxes:
        return explicit_decision(buyer.taxes, code)
    if buyer.country in EU_MEMBER_STATES:
        if not seller.vat_registered:
            return TaxDecision(ZERO, "E", code, None, mention=seller.not_registered_mention)
        if buyer.tax_id is not None:
            _check_vat_number(buyer)
            if seller.country != buyer.country:
                return TaxDecision(ZERO, "AE", code, None, reverse_charge=True, mention=REVERSE_CHARGE_MENTION)
        return _rated(table, buyer.country, code)
    for jurisdiction in buyer.jurisdictions:
        if table.has(jurisdiction):
            return _rated(table, jurisdiction, code)
    if seller.country in EU_MEMBER_STATES:
        mention = OUTSIDE_EU_B2B_MENTION if buyer.tax_id else OUTSIDE_EU_B2C_MENTION
        return TaxDecision(ZERO, "O", code, None, mention=mention)
    return TaxDecision(ZERO, "O", code, None)


def explicit_decision(taxes: Sequence[ExplicitTax], code: str = STANDARD) -> TaxDecision:
    """Rule 2b: the sum of the explicit taxes' rates (S, or Z when it is 0); the mention names each tax
    (`VAT FR (vat_fr) 20 %`), so the breakdown says which taxes make the rate."""
    rate = ZERO
    for tax in taxes:
        rate = EXACT.add(rate, tax.rate)
    mention = " + ".join(f"{t.name} ({t.code}) {_percent(t.rate)} %" for t in taxes)
    return TaxDecision(rate, "S" if rate else "Z", code, None, mention=mention)


def _percent(rate: Decimal) -> str:
    text = format(EXACT.multiply(rate, Decimal(100)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rated(table: TaxTable, jurisdiction: str, code: str) -> TaxDecision:
    rate = table.rate(jurisdiction, code)
    return TaxDecision(rate, "S" if rate else "Z", code, jurisdiction)


def _check_vat_number(buyer: Buyer) -> None:
    assert buyer.tax_id is not None
    number = eu_vat.compact(buyer.tax_id)
    if not eu_vat.is_valid(number):
        raise ValueError(
            f"buyer.tax_id: {buyer.tax_id!r} is not a valid EU VAT number (format and check digits); "
            "correct it, or remove it to invoice the customer as a consumer"
        )
    expected = _VAT_PREFIX.get(buyer.country, buyer.country)
    if number[:2] != expected:
        raise ValueError(
            f"buyer.tax_id: VAT number {number} is from {number[:2]}, the buyer's country is {buyer.country}"
        )


@dataclass(frozen=True, slots=True)
class LineTax:
    """A line's tax: the key it came with, its taxable amount, and the rounded tax share."""

    key: str
    taxable_amount: Decimal
    tax_rate: Decimal
    tax_amount: Decimal


@dataclass(frozen=True, slots=True)
class TaxTotal:
    """One entry of the invoice's tax breakdown (field names of the invoice document's `taxes`)."""

    rate: Decimal
    taxable_amount: Decimal
    tax_amount: Decimal  # rate x taxable_amount rounded once; also the sum of the lines' tax at this rate
    tax_code: str | None  # the lines' tax code when they share one
    reverse_charge: bool
    mention: str | None
    category: Category
    line_keys: list[str] = field(default_factory=list)


def tax_totals(
    lines: Sequence[tuple[str, Decimal, TaxDecision]], currency: str
) -> tuple[list[LineTax], list[TaxTotal]]:
    """Per-line tax and the breakdown by rate for `lines` = (key, taxable amount, decision), taxable amounts
    in whole minor units. Groups (category, rate, reverse charge, mention) in order of first appearance;
    rounding rule in the module docstring."""
    units = [to_units(taxable, currency, f"lines[{i}].taxable_amount") for i, (_k, taxable, _d) in enumerate(lines)]
    keys = [key for key, _taxable, _decision in lines]
    decisions = [decision for _key, _taxable, decision in lines]
    tax_units, totals = tax_in_units(keys, units, decisions, currency)
    line_taxes = [
        LineTax(key, from_units(units[i], currency), decisions[i].rate, from_units(tax_units[i], currency))
        for i, key in enumerate(keys)
    ]
    return line_taxes, totals


def tax_in_units(
    keys: Sequence[str], units: Sequence[int], decisions: Sequence[TaxDecision], currency: str
) -> tuple[list[int], list[TaxTotal]]:
    """`tax_totals` on taxable amounts already in minor units: each line's tax in minor units, and the
    breakdown by rate."""
    groups: dict[tuple[str, Decimal, bool, str | None], list[int]] = {}
    for i, decision in enumerate(decisions):
        group = (decision.category, decision.rate, decision.reverse_charge, decision.mention)
        groups.setdefault(group, []).append(i)
    tax_units = [0] * len(units)
    totals: list[TaxTotal] = []
    for (category, rate, reverse_charge, mention), members in groups.items():
        numerator, denominator = rate.as_integer_ratio()  # exact: rate = numerator / denominator
        exact = [units[i] * numerator for i in members]  # each line's exact tax, over `denominator`
        group_tax = round_half_away(sum(exact), denominator)
        for i, share in zip(members, apportion(exact, denominator, group_tax), strict=True):
            tax_units[i] = share
        codes = {decisions[i].tax_code for i in members}
        totals.append(
            TaxTotal(
                rate=rate,
                taxable_amount=from_units(sum(units[i] for i in members), currency),
                tax_amount=from_units(group_tax, currency),
                tax_code=codes.pop() if len(codes) == 1 else None,
                reverse_charge=reverse_charge,
                mention=mention,
                category=category,  # type: ignore[arg-type]
                line_keys=[keys[i] for i in members],
            )
        )
    return tax_units, totals
