"""Hand-computed tables for each model and for the usage steps (conversion, free units, minimum/maximum).

Every expected figure is worked out in the comment beside it, not taken from the engine's output.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from meterstream.rating import delta, parse_price, quote

D = Decimal


def _tiers(*rows: tuple[str | None, dict[str, str]]) -> list[dict[str, Any]]:
    return [{"up_to": up_to, **fields} for up_to, fields in rows]


UNIT = {"model": "unit", "currency": "USD", "unit_amount": "0.25"}
BYTES_TO_GB = {"model": "unit", "currency": "USD", "unit_amount": "0.09", "divide_by": "1000000000"}

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (name, price, quantity, expected total)
    ("unit", UNIT, "13", "3.25"),  # 13 x 0.25
    ("unit fractional", UNIT, "0.5", "0.13"),  # 0.125 -> half away from zero -> 0.13
    ("unit free units", {**UNIT, "free_units": "10"}, "13", "0.75"),  # (13-10) x 0.25
    ("unit free units not used up", {**UNIT, "free_units": "10"}, "4", "0.00"),
    # bytes -> GB: 1.5e9 bytes = 1.5 GB
    ("convert up", {**BYTES_TO_GB, "conversion_rounding": "up"}, "1500000000", "0.18"),  # 2 GB x 0.09
    ("convert down", {**BYTES_TO_GB, "conversion_rounding": "down"}, "1500000000", "0.09"),  # 1 GB
    ("convert half_up at half", {**BYTES_TO_GB, "conversion_rounding": "half_up"}, "1500000000", "0.18"),
    ("convert half_up below", {**BYTES_TO_GB, "conversion_rounding": "half_up"}, "1499999999", "0.09"),
    ("convert default is up", BYTES_TO_GB, "1", "0.09"),  # 1 byte -> 1 GB
    # 95 s = 1.58333 min -> up to 1 decimal = 1.6 min x 0.10
    (
        "convert precision",
        {
            "model": "unit",
            "currency": "USD",
            "unit_amount": "0.10",
            "divide_by": "60",
            "conversion_precision": 1,
        },
        "95",
        "0.16",
    ),
    (
        "multiply_by",
        {"model": "unit", "currency": "USD", "unit_amount": "1", "multiply_by": "1.5"},
        "2",
        "3.00",
    ),
    # conversion BEFORE free units: 121 s -> 3 min (up), minus 2 free = 1 min. (Free first would give
    # 119 s -> 2 min -> 2.00.)
    (
        "conversion then free",
        {"model": "unit", "currency": "USD", "unit_amount": "1", "divide_by": "60", "free_units": "2"},
        "121",
        "1.00",
    ),
    (
        "minimum true-up",
        {"model": "unit", "currency": "USD", "unit_amount": "1", "minimum": "10"},
        "3",
        "10.00",
    ),
    (
        "minimum at zero",
        {"model": "unit", "currency": "USD", "unit_amount": "1", "minimum": "10"},
        "0",
        "10.00",
    ),
    (
        "minimum exceeded",
        {"model": "unit", "currency": "USD", "unit_amount": "1", "minimum": "10"},
        "12",
        "12.00",
    ),
    ("maximum cap", {"model": "unit", "currency": "USD", "unit_amount": "1", "maximum": "10"}, "15", "10.00"),
    # free units then model then minimum: (6-5) x 2 = 2 < 4 -> 4
    (
        "free then minimum",
        {"model": "unit", "currency": "USD", "unit_amount": "2", "free_units": "5", "minimum": "4"},
        "6",
        "4.00",
    ),
    # graduated, first tier per block of 100 at 1.50, then 0.01 per unit
    *[
        (
            f"graduated blocks q={q}",
            {
                "model": "graduated",
                "currency": "USD",
                "tiers": _tiers(
                    ("1000", {"block_size": "100", "block_amount": "1.50"}), (None, {"unit_amount": "0.01"})
                ),
            },
            q,
            total,
        )
        for q, total in [
            ("250", "4.50"),  # 3 started blocks x 1.50
            ("1000", "15.00"),  # 10 blocks
            ("1001", "15.01"),
        ]  # 15.00 + 1 x 0.01
    ],
    # graduated, blocks of 5 at 2 in the second tier: units IN the tier are counted
    *[
        (
            f"graduated blocks tier 2 q={q}",
            {
                "model": "graduated",
                "currency": "USD",
                "tiers": _tiers(("10", {"unit_amount": "0"}), (None, {"block_size": "5", "block_amount": "2"})),
            },
            q,
            total,
        )
        for q, total in [
            ("11", "2.00"),  # 1 unit in tier 2 -> 1 block
            ("20", "4.00"),  # 10 units -> 2 blocks
            ("21", "6.00"),
        ]  # 11 units -> 3 blocks
    ],
    # fractional bound: 0.5 x 10 + 0.25 x 20
    (
        "graduated fractional bound",
        {
            "model": "graduated",
            "currency": "USD",
            "tiers": _tiers(("0.5", {"unit_amount": "10"}), (None, {"unit_amount": "20"})),
        },
        "0.75",
        "10.00",
    ),
    # volume per block over the WHOLE quantity
    *[
        (
            f"volume blocks q={q}",
            {
                "model": "volume",
                "currency": "USD",
                "tiers": _tiers(
                    ("100", {"block_size": "10", "block_amount": "1"}),
                    (None, {"block_size": "50", "block_amount": "4"}),
                ),
            },
            q,
            total,
        )
        for q, total in [
            ("95", "10.00"),  # tier 1: 10 blocks of 10
            ("101", "12.00"),
        ]  # tier 2: ceil(101/50) = 3 blocks x 4
    ],
    # package down with free units: 25 - 3 = 22 -> 2 whole packages x 5
    (
        "package down free",
        {
            "model": "package",
            "currency": "USD",
            "package_amount": "5",
            "package_size": "10",
            "rounding": "down",
            "free_units": "3",
        },
        "25",
        "10.00",
    ),
    (
        "package up",
        {"model": "package", "currency": "EUR", "package_amount": "5", "package_size": "10"},
        "21",
        "15.00",
    ),  # 3 packages
    # flat: quantity = number of periods (or a proration fraction)
    ("flat one period", {"model": "flat", "currency": "USD", "amount": "30"}, "1", "30.00"),
    ("flat half period", {"model": "flat", "currency": "USD", "amount": "30"}, "0.5", "15.00"),
    # percentage: 2.9% + 0.30
    (
        "percentage",
        {"model": "percentage", "currency": "USD", "rate": "2.9", "fixed_amount": "0.30"},
        "100",
        "3.20",
    ),  # 2.90 + 0.30
    (
        "percentage rounding",
        {"model": "percentage", "currency": "USD", "rate": "2.9", "fixed_amount": "0.30"},
        "10.10",
        "0.59",
    ),  # 0.2929 + 0.30 = 0.5929
    (
        "percentage min",
        {
            "model": "percentage",
            "currency": "USD",
            "rate": "2.9",
            "fixed_amount": "0.30",
            "min_amount": "0.50",
        },
        "5",
        "0.50",
    ),  # 0.145 + 0.30 = 0.445 < 0.50
    (
        "percentage max",
        {"model": "percentage", "currency": "USD", "rate": "2.9", "max_amount": "10"},
        "1000",
        "10.00",
    ),  # 29.00 > 10
    # currencies: JPY 0 digits, KWD 3, CLF 4; half away from zero
    ("JPY half up", {"model": "unit", "currency": "JPY", "unit_amount": "0.5"}, "5", "3"),  # 2.5 -> 3
    ("KWD", {"model": "unit", "currency": "KWD", "unit_amount": "0.0005"}, "1", "0.001"),
    ("CLF", {"model": "unit", "currency": "CLF", "unit_amount": "1.00005"}, "1", "1.0001"),
]


@pytest.mark.parametrize(("price", "quantity", "total"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_computed_total(price: dict[str, Any], quantity: str, total: str) -> None:
    result = quote(price, quantity)
    assert str(result.total) == total
    assert sum((line.amount for line in result.lines), D(0)) == result.precise_total


def test_graduated_lines_explain_the_total() -> None:
    # 5 free, tier 1 up to 10 at 1 with a flat 2, then 0.5; minimum 20. q = 17 -> 12 priced:
    # tier 1: 10 x 1 = 10, flat 2; tier 2: 2 x 0.5 = 1 -> 13 -> true-up 7 -> 20
    price = {
        "model": "graduated",
        "currency": "USD",
        "free_units": "5",
        "minimum": "20",
        "tiers": _tiers(("10", {"unit_amount": "1", "flat_amount": "2"}), (None, {"unit_amount": "0.5"})),
    }
    result = quote(price, "17")
    got = [(line.kind, line.tier, line.quantity, line.unit_amount, line.amount) for line in result.lines]
    assert got == [
        ("free_units", None, D(5), D(0), D(0)),
        ("tier", 1, D(10), D(1), D(10)),
        ("tier_flat", 1, D(1), D(2), D(2)),
        ("tier", 2, D(2), D("0.5"), D("1.0")),
        ("minimum_true_up", None, D(1), None, D(7)),
    ]
    assert result.precise_total == D(20) and result.priced_quantity == D(12) and result.quantity == D(17)
    assert result.lines[3].from_quantity == D(10) and result.lines[3].up_to is None


def test_maximum_cap_line_is_negative() -> None:
    result = quote({"model": "unit", "currency": "USD", "unit_amount": "1", "maximum": "10"}, "15")
    assert [(line.kind, line.amount) for line in result.lines] == [("unit", D(15)), ("maximum_cap", D(-5))]


def test_percentage_lines() -> None:
    result = quote(
        {
            "model": "percentage",
            "currency": "USD",
            "rate": "2.9",
            "fixed_amount": "0.30",
            "min_amount": "0.50",
        },
        "5",
    )
    # 5 x 0.029 = 0.145; + 0.30 = 0.445; minimum 0.50 adds 0.055
    assert [(line.kind, line.amount) for line in result.lines] == [
        ("percentage", D("0.145")),
        ("fixed_fee", D("0.30")),
        ("event_minimum", D("0.055")),
    ]


class TestDelta:
    GRADUATED = parse_price(
        {
            "model": "graduated",
            "currency": "USD",
            "tiers": _tiers(("5", {"unit_amount": "1", "flat_amount": "10"}), (None, {"unit_amount": "0.5"})),
        }
    )

    def test_first_event_includes_quantity_zero_charges(self) -> None:
        assert delta(self.GRADUATED, None, D(0)) == D(10)  # tier-1 flat
        assert delta(self.GRADUATED, None, D(3)) == D(13)  # 10 + 3 x 1

    def test_later_event_is_a_difference(self) -> None:
        # F(7) = 10 + 5 x 1 + 2 x 0.5 = 16; F(3) = 13
        assert delta(self.GRADUATED, D(3), D(7)) == D(3)

    def test_volume_delta_can_be_negative(self) -> None:
        volume = parse_price(
            {
                "model": "volume",
                "currency": "USD",
                "tiers": _tiers(("10", {"unit_amount": "2"}), (None, {"unit_amount": "1"})),
            }
        )
        assert delta(volume, D(10), D(11)) == D(-9)  # 11 x 1 - 10 x 2

    def test_minimum_charged_once(self) -> None:
        price = parse_price({"model": "unit", "currency": "USD", "unit_amount": "1", "minimum": "10"})
        assert delta(price, None, D(2)) == D(10)
        assert delta(price, D(2), D(4)) == D(0)  # still under the minimum
        assert delta(price, D(4), D(12)) == D(2)  # 12 - 10

    def test_percentage_prices_the_event_value(self) -> None:
        price = parse_price({"model": "percentage", "currency": "USD", "rate": "2.9", "fixed_amount": "0.30"})
        assert delta(price, D(100), D(150)) == D("1.750")  # 50 x 0.029 + 0.30

    def test_accepts_dicts_ints_and_strings(self) -> None:
        assert delta({"model": "unit", "currency": "USD", "unit_amount": "2"}, 1, "3") == D(4)

    def test_negative_quantities_are_refused(self) -> None:
        with pytest.raises(ValueError, match=">= 0"):
            delta(self.GRADUATED, None, D(-1))
        with pytest.raises(ValueError, match=">= 0"):
            quote(self.GRADUATED, "-1")


def test_exact_beyond_the_default_28_digits() -> None:
    # 30 significant digits: the default decimal context would round this silently; the engine must not.
    price = parse_price({"model": "unit", "currency": "USD", "unit_amount": "1.000000000000001"})
    quantity = D("123456789012345.123456789")
    # by hand: q + q x 1e-15 = 123456789012345.123456789 + 0.123456789012345123456789
    assert quote(price, quantity).precise_total == D("123456789012345.246913578012345123456789")
    assert delta(price, None, quantity) == D("123456789012345.246913578012345123456789")


def test_parsed_price_is_frozen_and_exposes_model_and_currency() -> None:
    price = parse_price({"model": "unit", "unit_amount": "1"}, currency="EUR")
    assert (price.model, price.currency) == ("unit", "EUR")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        price.unit_amount = D(2)  # type: ignore[misc]
    assert parse_price(price) is price
    copy = price.model_copy(update={"unit_amount": "3"})
    assert quote(copy, 2).total == D("6.00")  # recompiled, not the cached pricer of the original
