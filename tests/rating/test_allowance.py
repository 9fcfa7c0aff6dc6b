"""rating/allowance.py `allowed_quantity`: the largest quantity a balance pays for under a usage price, exact.
Every expected figure is worked by hand in the comments (USD)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from meterstream.rating.allowance import INF, allowed_quantity, depends_on_before
from meterstream.rating.price import parse_price


def price(**spec):  # type: ignore[no-untyped-def]
    return parse_price({"currency": "USD", **spec})


def test_unit_price_is_one_exact_division() -> None:
    unit = price(model="unit", unit_amount="0.003")
    # 1.00 / 0.003 = 333.33..: 333 calls cost 0.999, a 334th would make 1.002
    assert allowed_quantity(unit, available=D("1.00")) == (D(333), D("0.999"))
    assert allowed_quantity(unit, available=D("1.00"), limit=D(100)) == (D(100), D("0.300"))
    # in steps of 10: 330 (0.990); 340 would cost 1.020
    assert allowed_quantity(unit, available=D("1.00"), step=D(10)) == (D(330), D("0.990"))
    assert allowed_quantity(unit, available=D(0)) == (0, 0)
    assert not depends_on_before(unit)


def test_free_units_and_graduated_depend_on_the_period_so_far() -> None:
    free = price(model="unit", unit_amount="0.01", free_units="100")
    assert depends_on_before(free)
    # nothing used yet: 100 free + 1.00 / 0.01 = 200
    assert allowed_quantity(free, available=D("1.00")) == (D(200), D("1.00"))
    # 150 used this period (free units gone): 1.00 / 0.01 = 100 more
    assert allowed_quantity(free, available=D("1.00"), before=D(150)) == (D(100), D("1.00"))
    grad = price(model="graduated", tiers=[{"up_to": "10", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}])
    # 10 x 1 = 10.00, then (12.75 - 10) / 0.5 = 5.5 -> 5 more at 2.50: 15 units, 12.50
    assert allowed_quantity(grad, available=D("12.75")) == (D(15), D("12.50"))
    # 8 used: 2 x 1 = 2.00, then 2.00 / 0.5 = 4 more: 6 units, 4.00
    assert allowed_quantity(grad, available=D("4.00"), before=D(8)) == (D(6), D("4.0"))


def test_package_price_fits_whole_packages() -> None:
    pkg = price(model="package", package_amount="5", package_size="100")  # 5.00 per started 100
    # 12.00 pays for 2 packages (10.00); the 201st unit would start a third (15.00): 200 units
    assert allowed_quantity(pkg, available=D("12.00")) == (D(200), D(10))


def test_a_free_meter_or_a_reached_maximum_never_runs_out() -> None:
    free = price(model="unit", unit_amount="0")
    assert allowed_quantity(free, available=D(0)) == (INF, 0)
    assert allowed_quantity(free, available=D(0), limit=D(50)) == (D(50), 0)
    capped = price(model="unit", unit_amount="1", maximum="3")  # at most 3.00 per period
    assert allowed_quantity(capped, available=D("5"))[0] == INF  # 3.00 fits: never runs out


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"available": 1.0}, "available"), ({"available": D("NaN")}, "available"),
    ({"available": D(1), "step": D(0)}, "step"), ({"available": D(1), "limit": D(-1)}, "limit"),
])  # fmt: skip
def test_bad_arguments_name_themselves(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=field):
        allowed_quantity(price(model="unit", unit_amount="1"), **kwargs)
