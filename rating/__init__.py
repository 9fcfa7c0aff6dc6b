"""Meterstream tariff engine: exact pricing of quantities under the common billing models.

Public API: parse_price, quote, delta, Price, PriceError, Quote, QuoteLine, and the money helpers.
See docs/pricing.md for the price shape and the conventions.
"""

from meterstream.rating.engine import delta, quote
from meterstream.rating.fees import flat_charge, installment_amounts, prorate, proration_factor
from meterstream.rating.lines import Quote, QuoteLine
from meterstream.rating.money import minor_units, round_money, to_decimal
from meterstream.rating.price import (
    FlatPrice,
    GraduatedPrice,
    PackagePrice,
    PercentagePrice,
    Price,
    PriceBase,
    PriceError,
    Tier,
    UnitPrice,
    VolumePrice,
    parse_price,
)

__all__ = [
    "FlatPrice",
    "GraduatedPrice",
    "PackagePrice",
    "PercentagePrice",
    "Price",
    "PriceBase",
    "PriceError",
    "Quote",
    "QuoteLine",
    "Tier",
    "UnitPrice",
    "VolumePrice",
    "delta",
    "flat_charge",
    "installment_amounts",
    "minor_units",
    "parse_price",
    "prorate",
    "proration_factor",
    "quote",
    "round_money",
    "to_decimal",
]
