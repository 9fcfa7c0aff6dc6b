"""Hypothesis properties of the engine: monotone graduated totals, exact delta additivity, the volume
identity, bounded rounding, and no float ever reaching (or leaving) the engine."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.rating import PriceError, delta, minor_units, parse_price, quote, round_money
from meterstream.rating.money import CURRENCY_MINOR_UNITS

settings.register_profile("rating", deadline=None, max_examples=150)
settings.load_profile("rating")

ZERO = Decimal(0)
quantities = st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False)
amounts = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value="0.001", max_value=5000, places=3, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(sorted(CURRENCY_MINOR_UNITS))


@st.composite
def tiers(draw: st.DrawFn, pricing: tuple[str, ...] = ("unit", "block", "flat")) -> list[dict[str, Any]]:
    steps = draw(st.lists(positive, min_size=0, max_size=4))
    bounds: list[Decimal | None] = []
    total = ZERO
    for step in steps:
        total += step
        bounds.append(total)
    bounds.append(None)
    out = []
    for up_to in bounds:
        kind = draw(st.sampled_from(pricing))
        tier: dict[str, Any] = {"up_to": None if up_to is None else str(up_to)}
        if kind == "unit":
            tier["unit_amount"] = str(draw(amounts))
        elif kind == "block":
            tier["block_size"] = str(draw(positive))
            tier["block_amount"] = str(draw(amounts))
        if kind == "flat" or draw(st.booleans()):
            tier["flat_amount"] = str(draw(amounts))
        out.append(tier)
    return out


@st.composite
def usage_extras(draw: st.DrawFn) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if draw(st.booleans()):
        extras["free_units"] = str(draw(quantities))
    low = draw(st.none() | amounts)
    high = draw(st.none() | amounts)
    if low is not None:
        extras["minimum"] = str(low)
    if high is not None:
        extras["maximum"] = str(high if low is None else max(low, high))
    if draw(st.booleans()):
        extras["divide_by"] = draw(st.sampled_from(["60", "1000", "1000000000", "0.5", "3"]))
        extras["conversion_rounding"] = draw(st.sampled_from(["up", "down", "half_up"]))
        extras["conversion_precision"] = draw(st.integers(0, 3))
    return extras


@st.composite
def usage_prices(draw: st.DrawFn, models: tuple[str, ...] = ("unit", "graduated", "volume", "package")) -> Any:
    model = draw(st.sampled_from(models))
    price: dict[str, Any] = {"model": model, "currency": draw(currencies), **draw(usage_extras())}
    if model == "unit":
        price["unit_amount"] = str(draw(amounts))
    elif model == "package":
        price.update(
            package_amount=str(draw(amounts)),
            package_size=str(draw(positive)),
            rounding=draw(st.sampled_from(["up", "down"])),
        )
    else:
        price["tiers"] = draw(tiers())
    return parse_price(price)


@given(usage_prices(models=("graduated",)), quantities, quantities)
def test_graduated_totals_never_decrease(price: Any, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert quote(price, low).precise_total <= quote(price, high).precise_total
    assert quote(price, low).total <= quote(price, high).total


@given(usage_prices(), st.lists(quantities, min_size=1, max_size=8))
def test_deltas_of_any_split_add_up_to_the_quote(price: Any, parts: list[Decimal]) -> None:
    cumulative = None
    summed = ZERO
    for part in parts:
        after = part if cumulative is None else cumulative + part
        summed += delta(price, cumulative, after)
        cumulative = after
    assert summed == quote(price, cumulative).precise_total  # exact, not approximately


@given(usage_prices(), quantities)
def test_quote_lines_add_up_and_match_the_stream_path(price: Any, quantity: Decimal) -> None:
    result = quote(price, quantity)
    assert sum((line.amount for line in result.lines), ZERO) == result.precise_total
    assert delta(price, None, quantity) == result.precise_total


@given(tiers(pricing=("unit",)), quantities)
def test_volume_total_is_quantity_times_the_containing_tier(tier_list: list[dict[str, Any]], q: Decimal) -> None:
    price = {"model": "volume", "currency": "USD", "tiers": tier_list}
    containing = next(t for t in tier_list if t["up_to"] is None or q <= Decimal(t["up_to"]))
    expected = q * Decimal(containing["unit_amount"]) + Decimal(containing.get("flat_amount", "0"))
    assert quote(price, q).precise_total == expected


@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=8, allow_nan=False, allow_infinity=False),
    currencies,
)
def test_rounding_moves_an_amount_by_at_most_half_a_minor_unit(amount: Decimal, currency: str) -> None:
    half = Decimal(1).scaleb(-minor_units(currency)) / 2
    rounded = round_money(amount, currency)
    assert abs(rounded - amount) <= half
    assert rounded.as_tuple().exponent == -minor_units(currency)


@given(usage_prices(), quantities)
def test_quote_total_is_within_half_a_minor_unit(price: Any, quantity: Decimal) -> None:
    result = quote(price, quantity)
    assert abs(result.total - result.precise_total) <= Decimal(1).scaleb(-minor_units(result.currency)) / 2


# --- no float reaches the engine -------------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True)
UNIT = parse_price({"model": "unit", "currency": "USD", "unit_amount": "1"})


@given(floats)
def test_float_quantities_are_refused(value: float) -> None:
    with pytest.raises(TypeError, match="float"):
        quote(UNIT, value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        delta(UNIT, None, value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        delta(UNIT, value, Decimal(1))  # type: ignore[arg-type]


@given(usage_prices(), floats, st.data())
def test_float_amounts_in_a_price_are_refused(price: Any, value: float, data: st.DataObject) -> None:
    document = price.model_dump(mode="json", exclude_none=True)
    decimal_fields = [
        k
        for k, v in document.items()
        if isinstance(v, str) and k not in ("model", "currency", "rounding", "conversion_rounding")
    ]
    if "tiers" in document:
        tier = data.draw(st.sampled_from(document["tiers"]))
        field = data.draw(st.sampled_from([k for k, v in tier.items() if v is not None]))
        tier[field] = value
    else:
        field = data.draw(st.sampled_from(decimal_fields))
        document[field] = value
    with pytest.raises(PriceError, match="float"):
        parse_price(document)


@given(usage_prices(), quantities)
def test_nothing_but_decimals_come_out(price: Any, quantity: Decimal) -> None:
    result = quote(price, quantity)
    numbers = [result.total, result.precise_total, result.quantity, result.priced_quantity]
    for line in result.lines:
        numbers += [line.quantity, line.amount, line.unit_amount, line.from_quantity, line.up_to]
    assert all(type(n) is Decimal for n in numbers if n is not None)
    assert type(delta(price, None, quantity)) is Decimal
