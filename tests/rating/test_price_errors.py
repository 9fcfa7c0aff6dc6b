"""Every kind of invalid price is rejected with a PriceError naming the field path and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from meterstream.rating import PriceError, parse_price, quote

OPEN = {"up_to": None, "unit_amount": "1"}


def graduated(*tiers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "graduated", "currency": "USD", "tiers": list(tiers), **extra}


def unit(**extra: Any) -> dict[str, Any]:
    return {"model": "unit", "currency": "USD", "unit_amount": "1", **extra}


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # (name, price, field path, words of the reason)
    (
        "unsorted bounds",
        graduated({"up_to": "10", "unit_amount": "1"}, {"up_to": "5", "unit_amount": "1"}, OPEN),
        "tiers[1].up_to",
        "bounds must increase (5 after 10)",
    ),
    (
        "duplicate bounds",
        graduated({"up_to": "5", "unit_amount": "1"}, {"up_to": "5", "unit_amount": "1"}, OPEN),
        "tiers[1].up_to",
        "bounds must increase (5 after 5)",
    ),
    (
        "no open last tier",
        graduated({"up_to": "5", "unit_amount": "1"}, {"up_to": "10", "unit_amount": "1"}),
        "tiers[1].up_to",
        "last tier must be open",
    ),
    (
        "open tier before the last",
        graduated(OPEN, {"up_to": "10", "unit_amount": "1"}),
        "tiers[0].up_to",
        "only the last tier may be open",
    ),
    ("no tiers", graduated(), "tiers", "at least 1"),
    (
        "negative tier amount",
        graduated({"up_to": None, "unit_amount": "-1"}),
        "tiers[0].unit_amount",
        "negative",
    ),
    (
        "negative flat amount",
        graduated({"up_to": None, "flat_amount": "-1"}),
        "tiers[0].flat_amount",
        "negative",
    ),
    ("negative unit amount", unit(unit_amount="-0.01"), "unit_amount", "negative"),
    ("negative minimum", unit(minimum="-1"), "minimum", "negative"),
    ("negative free units", unit(free_units="-1"), "free_units", "negative"),
    (
        "negative package amount",
        {"model": "package", "currency": "USD", "package_amount": "-5", "package_size": "10"},
        "package_amount",
        "negative",
    ),
    (
        "zero package size",
        {"model": "package", "currency": "USD", "package_amount": "5", "package_size": "0"},
        "package_size",
        "greater than 0",
    ),
    ("zero bound", graduated({"up_to": "0", "unit_amount": "1"}, OPEN), "tiers[0].up_to", "greater than 0"),
    ("unknown currency", unit(currency="XYZ"), "currency", "unknown currency"),
    ("lower-case currency", unit(currency="usd"), "currency", "unknown currency"),
    ("missing currency", {"model": "unit", "unit_amount": "1"}, "currency", "required"),
    (
        "unit and block pricing",
        graduated({"up_to": None, "unit_amount": "1", "block_size": "10", "block_amount": "2"}),
        "tiers[0].unit_amount",
        "not both",
    ),
    (
        "block size without amount",
        graduated({"up_to": None, "block_size": "10"}),
        "tiers[0].block_amount",
        "required",
    ),
    ("tier without any price", graduated({"up_to": None}), "tiers[0].unit_amount", "needs"),
    ("unknown model", {"model": "tiered", "currency": "USD"}, "model", "unknown model 'tiered'"),
    ("missing model", {"currency": "USD", "unit_amount": "1"}, "model", "required"),
    ("float amount", unit(unit_amount=0.1), "unit_amount", "float"),
    ("float bound", graduated({"up_to": 5.0, "unit_amount": "1"}, OPEN), "tiers[0].up_to", "float"),
    ("not a number", unit(unit_amount="abc"), "unit_amount", "not a decimal"),
    ("not finite", unit(unit_amount="Infinity"), "unit_amount", "finite"),
    ("minimum above maximum", unit(minimum="10", maximum="5"), "maximum", ">= minimum"),
    ("unknown field", unit(colour="red"), "colour", "unknown field for the unit model"),
    (
        "free units on flat",
        {"model": "flat", "currency": "USD", "amount": "5", "free_units": "1"},
        "free_units",
        "unknown field for the flat model",
    ),
    (
        "bad conversion rounding",
        unit(divide_by="60", conversion_rounding="sideways"),
        "conversion_rounding",
        "'up'",
    ),
    ("zero divide_by", unit(divide_by="0"), "divide_by", "greater than 0"),
    (
        "float conversion precision",
        unit(divide_by="60", conversion_precision=1.0),
        "conversion_precision",
        "integer",
    ),
    (
        "bad package rounding",
        {
            "model": "package",
            "currency": "USD",
            "package_amount": "5",
            "package_size": "10",
            "rounding": "nearest",
        },
        "rounding",
        "'up'",
    ),
    (
        "rate above 100",
        {"model": "percentage", "currency": "USD", "rate": "150"},
        "rate",
        "between 0 and 100",
    ),
    (
        "percentage min above max",
        {"model": "percentage", "currency": "USD", "rate": "1", "min_amount": "2", "max_amount": "1"},
        "max_amount",
        ">= min_amount",
    ),
    (
        "installments on a recurring fee",
        {"model": "flat", "currency": "USD", "amount": "5", "installments": 3},
        "installments",
        "one_time",
    ),
    (
        "bad billing",
        {"model": "flat", "currency": "USD", "amount": "5", "billing": "monthly"},
        "billing",
        "in_advance",
    ),
]


@pytest.mark.parametrize(("price", "path", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_price_names_the_field(price: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(PriceError) as caught:
        parse_price(price)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert reason in message, message
    assert isinstance(caught.value, ValueError)
    with pytest.raises(PriceError):  # quote validates dicts the same way
        quote(price, "1")


def test_every_problem_is_listed() -> None:
    with pytest.raises(PriceError) as caught:
        parse_price(unit(unit_amount="-1", currency="XYZ"))
    assert sorted(path for path, _ in caught.value.problems) == ["currency", "unit_amount"]


def test_plan_currency_is_a_default_not_an_override() -> None:
    assert parse_price({"model": "unit", "unit_amount": "1"}, currency="EUR").currency == "EUR"
    assert parse_price(unit(currency="EUR"), currency="EUR").currency == "EUR"
    with pytest.raises(PriceError, match=r"^currency: USD differs from the plan currency EUR"):
        parse_price(unit(), currency="EUR")
    with pytest.raises(PriceError, match=r"^currency: "):
        parse_price(parse_price(unit()), currency="EUR")


def test_not_a_mapping() -> None:
    with pytest.raises(PriceError, match="mapping"):
        parse_price(["unit"])  # type: ignore[arg-type]
