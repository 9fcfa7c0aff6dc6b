"""The most usage a balance pays for, under a usage price: ``allowed_quantity`` (for ``POST /v1/authorize``).

Pure and exact. The charge of ``q`` more units is ``delta(price, before, before + q)``, the amount the
stream would rate for them (unrounded, as the balance is debited). The answer is the largest whole multiple
of ``step`` (1: whole units) whose charge does not exceed ``available``, found by doubling then bisection on
the exact charge; that is exact when the charge never falls as ``q`` grows, which holds for unit, graduated
and package prices, free units and maxima. A volume price can charge less for more (a cheaper tier): there
the bisection still returns a quantity that fits, perhaps not the largest. ``Decimal('Infinity')`` means the
balance never runs out (a free meter, or a maximum already within the balance), bounded by ``limit``.
"""

from __future__ import annotations

from decimal import Decimal

from meterstream.rating.engine import delta
from meterstream.rating.money import EXACT
from meterstream.rating.price import PriceBase, UnitPrice

INF = Decimal("Infinity")
ZERO = Decimal(0)
MAX_STEPS = 10**30  # beyond any quantity an event may carry (docs/events.md): "never runs out"


def charge(price: PriceBase, before: Decimal | None, quantity: Decimal) -> Decimal:
    """What ``quantity`` more units cost after the period's ``before`` (None: nothing yet this period)."""
    start = ZERO if before is None else before
    return delta(price, before, EXACT.add(start, quantity))


def allowed_quantity(
    price: PriceBase,
    *,
    available: Decimal,
    before: Decimal | None = None,
    step: Decimal = Decimal(1),
    limit: Decimal | None = None,
) -> tuple[Decimal, Decimal]:
    """(allowed quantity, its charge): the largest multiple of ``step`` (at most ``limit``) whose charge is at
    most ``available``. ValueError naming the argument for a bad value."""
    for name, value in (("available", available), ("step", step)):
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if limit is not None and (not isinstance(limit, Decimal) or limit.is_nan() or limit < 0):
        raise ValueError(f"limit must be a Decimal >= 0, got {limit!r}")
    hi_steps = MAX_STEPS if limit is None or limit.is_infinite() else int(EXACT.divide_int(limit, step))

    def cost(k: int) -> Decimal:
        return charge(price, before, EXACT.multiply(step, k))

    if available < 0 or cost(0) > available:
        return ZERO, ZERO
    if _plain_unit(price):  # the charge is unit_amount x q: one exact division
        unit = EXACT.multiply(price.unit_amount, step)  # type: ignore[attr-defined]
        k = hi_steps if unit == 0 else min(int(EXACT.divide_int(available, unit)), hi_steps)
    else:
        k = _largest_fitting(cost, available, hi_steps)
    if k >= MAX_STEPS:
        return INF if limit is None else limit, cost(MAX_STEPS) if limit is None else cost(hi_steps)
    q = EXACT.multiply(step, k)
    return q, cost(k)


def depends_on_before(price: PriceBase) -> bool:
    """Whether the charge of more units depends on the period's quantity so far (all but a plain unit price)."""
    return not _plain_unit(price)


def _plain_unit(price: PriceBase) -> bool:
    return (
        isinstance(price, UnitPrice)
        and price.free_units is None
        and price.minimum is None
        and price.maximum is None
        and price.divide_by is None
        and price.multiply_by is None
    )


def _largest_fitting(cost, available: Decimal, hi_steps: int) -> int:
    """The largest k in [0, hi_steps] with cost(k) <= available, given cost(0) fits (doubling, then bisection)."""
    lo, k = 0, 1
    while k <= hi_steps and cost(k) <= available:
        lo, k = k, k * 2
    hi = min(k, hi_steps + 1)  # cost(hi) > available, or hi is past the limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) <= available:
            lo = mid
        else:
            hi = mid
    return lo
