"""Money primitives (minor units, rounding, the float gate) and the fixed-fee helpers, by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from meterstream.rating import (
    flat_charge,
    installment_amounts,
    minor_units,
    parse_price,
    prorate,
    proration_factor,
    round_money,
    to_decimal,
)
from meterstream.rating.money import CURRENCY_MINOR_UNITS

D = Decimal


@pytest.mark.parametrize(
    ("code", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
        ("ISK", 0),
    ],
)
def test_minor_units(code: str, digits: int) -> None:
    assert minor_units(code) == digits


def test_currency_table_covers_iso_4217_and_rejects_unknown() -> None:
    assert len(CURRENCY_MINOR_UNITS) >= 150
    with pytest.raises(ValueError, match="unknown currency"):
        minor_units("XYZ")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.235", "USD", "1.24"),  # half away from zero
        ("1.225", "USD", "1.23"),  # not banker's rounding (which would give 1.22)
        ("-1.235", "USD", "-1.24"),  # away from zero for credits too
        ("2.5", "JPY", "3"),
        ("-2.5", "JPY", "-3"),
        ("0.0125", "KWD", "0.013"),
        ("1.00005", "CLF", "1.0001"),
        ("7", "USD", "7.00"),
    ],
)
def test_round_money(amount: str, currency: str, expected: str) -> None:
    assert str(round_money(D(amount), currency)) == expected


def test_to_decimal_gate() -> None:
    assert to_decimal(3) == D(3) and to_decimal(" 0.10 ") == D("0.10") and to_decimal(D("1.5")) == D("1.5")
    with pytest.raises(TypeError, match="float"):
        to_decimal(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_decimal(True)
    with pytest.raises(ValueError):
        to_decimal("abc")
    with pytest.raises(ValueError, match="finite"):
        to_decimal("NaN")


JAN = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))  # 31 days


def test_prorate_by_day() -> None:
    # active from Jan 21 (any time that day): days 21..31 = 11 of 31 -> 30 x 11/31 = 10.6451... -> 10.65
    late = datetime(2025, 1, 21, 15, 0, tzinfo=UTC)
    assert round_money(prorate(D(30), *JAN, active_from=late), "USD") == D("10.65")
    assert abs(proration_factor(*JAN, active_from=late) * 31 - 11) < D("1e-25")  # 34 significant digits
    # active until Jan 10 00:00 (exclusive): 9 days -> 30 x 9/31 = 8.7096... -> 8.71
    assert round_money(prorate(D(30), *JAN, active_to=datetime(2025, 1, 10, tzinfo=UTC)), "USD") == D("8.71")


def test_prorate_by_second() -> None:
    # from Jan 16 12:00: 15.5 of 31 days -> exactly half of 30
    mid = datetime(2025, 1, 16, 12, tzinfo=UTC)
    assert prorate(D(30), *JAN, active_from=mid, rule="second") == D(15)


def test_prorate_full_and_empty_period() -> None:
    assert prorate(D(30), date(2025, 1, 1), date(2025, 2, 1)) == D(30)
    assert prorate(D(30), date(2025, 1, 1), date(2025, 2, 1), active_from=date(2025, 3, 1)) == D(0)


def test_installments_put_the_remainder_last() -> None:
    assert installment_amounts(D("100.00"), 3, "USD") == (D("33.33"), D("33.33"), D("33.34"))
    assert installment_amounts(D(1000), 3, "JPY") == (D(333), D(333), D(334))
    assert installment_amounts(D("10"), 4, "USD") == (D("2.50"),) * 4
    assert sum(installment_amounts(D("99.99"), 7, "USD")) == D("99.99")


def test_flat_charge_schedules() -> None:
    setup = parse_price({"model": "flat", "currency": "USD", "amount": "100", "cadence": "one_time", "installments": 3})
    assert [flat_charge(setup, i) for i in range(4)] == [D("33.33"), D("33.33"), D("33.34"), D(0)]
    monthly = parse_price({"model": "flat", "currency": "USD", "amount": "30", "billing": "in_arrears"})
    assert flat_charge(monthly, 5, proration=D("0.5")) == D(15)
    assert monthly.billing == "in_arrears"
