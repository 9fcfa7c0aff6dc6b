"""Which meters a usage price may price: one rule, checked wherever a price or a meter definition is written.

The rater and the close price a meter's quantities as a sum per period. So a meter that a plan prices as usage
must be a sum: its meter definition aggregates by SUM or COUNT, or it has no definition (native events carry
their quantities). A MAX, LATEST, UNIQUE_COUNT, AVG or MIN meter priced as usage would bill the sum of its
events' values while its query answers something else (3 readings of 10 on a MAX meter: billed 30, queried 10).

A price that never charges (every amount in it 0: `{model: unit, unit_amount: "0"}`) is not a usage price in
this sense: it only makes the processor meter the events (docs/openmeter.md, querying-only meters), so any
aggregation may sit behind it.

Used by `entities.plans.publish_plan` (every plan version: /v1/plans, Lago plans, `meterstream catalog
apply`) and `entities.meters.MeterRepository.create` (OpenMeter meters, Lago billable metrics), which also
asks the file catalog (`settings.catalog`, the processor's fallback plans) through `file_catalog_prices`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from meterstream.entities.common import Invalid
from meterstream.schemas.event import InvalidEvent

log = logging.getLogger(__name__)

SUMMED = ("SUM", "COUNT")
# the numbers of the price shapes (rating/price.py) that can put money on an invoice ...
_MONEY = frozenset(
    {"unit_amount", "flat_amount", "block_amount", "package_amount", "amount", "rate", "fixed_amount", "min_amount",
     "minimum"}
)  # fmt: skip
# ... and those that cannot (quantities, conversions, caps); `charges` counts any other number as money, so that a
# shape added later with an amount of another name is not taken for free (tests/entities/test_priceable.py checks
# that every number of every shape is in one of the two sets)
_NOT_MONEY = frozenset(
    {"free_units", "maximum", "divide_by", "multiply_by", "conversion_precision", "up_to", "block_size",
     "package_size", "max_amount", "installments"}
)  # fmt: skip
_WHY = "usage is billed as the sum of the events' quantities per period (a usage price needs a SUM or COUNT meter)"


def summed(aggregation: str | None) -> bool:
    """Whether a meter of this aggregation (None: no definition) is a sum of its events' quantities."""
    return aggregation is None or aggregation.upper() in SUMMED


def charges(price: Any) -> bool:
    """Whether a usage price (canonical shape, or a parsed rating price) can bill money: some amount, rate or
    minimum in it (or in one of its tiers) other than 0, or any other number not known to be a quantity
    (`_NOT_MONEY`). Something unreadable counts as charging."""
    if hasattr(price, "model_dump"):
        price = price.model_dump()
    if not isinstance(price, Mapping):
        return True
    for key, value in price.items():
        if key == "tiers":
            if not isinstance(value, list | tuple) or any(charges(tier) for tier in value):
                return True
        elif key in _MONEY:
            if value is not None and not _zero(value):
                return True
        elif key not in _NOT_MONEY and _number(value) and not _zero(value):
            return True  # a number of unknown meaning: money, to be safe
    return False


def _zero(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return Decimal(str(value)) == 0
    except (InvalidOperation, ValueError):
        return False


def _number(value: Any) -> bool:
    """A number, or a text of one (prices carry decimals as strings); not a boolean, a word or None."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return Decimal(str(value)).is_finite()
    except (InvalidOperation, ValueError):
        return False


def check_usage(usage: Mapping[str, Any], aggregation_of: Callable[[str], str | None], field: str = "usage") -> None:
    """`Invalid("<field>.<meter>", why)` for the first meter (by name) priced as usage whose definition's
    aggregation (`aggregation_of(meter)`, None: no definition) is not a sum."""
    for meter in sorted(usage):
        if not charges(usage[meter]):
            continue
        aggregation = aggregation_of(meter)
        if not summed(aggregation):
            raise Invalid(
                f"{field}.{meter}",
                f"meter {meter!r} aggregates by {aggregation}: {_WHY}; price it 0 to only meter it (docs/api.md)",
            )


def check_meter(slug: str, aggregation: str, priced_by: Iterable[str]) -> None:
    """`InvalidEvent("aggregation", why)` when a meter that is not a sum would be priced as usage by the plans
    named in `priced_by` (e.g. `pro@2`, `catalog plan cloud-standard`)."""
    if summed(aggregation):
        return
    plans = sorted(set(priced_by))
    if plans:
        raise InvalidEvent(
            "aggregation",
            f"{aggregation} cannot be used for meter {slug!r}: {', '.join(plans)} price it as usage, and {_WHY}; "
            "use SUM or COUNT, or price it 0 (docs/api.md)",
        )


def catalog_prices(catalog: Any, tenant: str) -> dict[str, list[str]]:
    """Meter -> the file catalog's plans that price it with money for the tenant (plans of its assignments)."""
    if catalog is None:
        return {}
    out: dict[str, list[str]] = {}
    plan_ids = sorted({plan for (t, _customer), plan in catalog.assignments.items() if t == tenant})
    for plan_id in plan_ids:
        plan = catalog.plans.get(plan_id)
        for meter, price in (plan.prices if plan is not None else {}).items():
            if charges(price):
                out.setdefault(meter, []).append(f"catalog plan {plan_id}")
    return out


_cache: dict[Path, tuple[tuple[int, int], Any]] = {}


def file_catalog_prices(path: Path | str | None, tenant: str) -> dict[str, list[str]]:
    """`catalog_prices` of the catalog file at `path` (re-read when the file changes); {} when there is none
    or it is not usable (the processor cannot rate with it either)."""
    from meterstream.rating.catalog import CatalogError, load_catalog

    if path is None:
        return {}
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        try:
            catalog = load_catalog(path)
        except CatalogError as exc:
            log.warning("meter definitions: the file catalog is not usable (%s); stored plans only", exc)
            catalog = None
        _cache[path] = cached = (stamp, catalog)
    return catalog_prices(cached[1], tenant)
