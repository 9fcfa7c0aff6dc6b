"""Precompiles a :class:`TelecomPlan` into the lookup tables the rater uses.

Everything is converted once into the meter's *base unit* (seconds, messages,
bytes) so that rating needs no unit conversion: a data rate of 0.02 per 1 MB
with 1/1 MB increments becomes 0.02 per 1,000,000 bytes with 1,000,000-byte
increments, and the one division per record stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from meterstream.rating.telecom.bundles import CompiledBundle  # unchanged since the freeze: shared
from meterstream.rating.telecom.model import ANY, BUNDLE_UNITS, DATA_UNITS, TelecomPlan
from meterstream.rating.telecom.rounding import METHODS, quantum  # unchanged since the freeze: shared

from ._money import EXACT
from .prefixes import PrefixTable
from .timebands import Schedule, day_tables


@dataclass(frozen=True, slots=True)
class CompiledRate:
    """A rate in base units: ``groups`` are ``(from, price, per)``."""

    id: str
    connect_fee: Decimal
    first: Decimal
    step: Decimal
    groups: tuple[tuple[Decimal, Decimal, int], ...]
    first_i: int | None  # first/step as ints when whole, for integer arithmetic
    step_i: int | None
    price: Decimal | None  # the single group's price and per (None: several groups)
    per: int


@dataclass(frozen=True, slots=True)
class CompiledDestination:
    """One priced destination of one meter: its rate per band and bundles."""

    id: str
    group: str
    rates: dict[str, CompiledRate]
    max_cost: Decimal | None
    bundles: tuple[CompiledBundle, ...]
    line_prefix: str
    line_keys: dict[str, str]


@dataclass(frozen=True, slots=True)
class CompiledMeter:
    name: str
    kind: str
    prefixes: PrefixTable[CompiledDestination]


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    currency: str
    quantum: Decimal
    method: str
    rounding: str
    schedule: Schedule
    meters: dict[str, CompiledMeter]


def _rate(plan: TelecomPlan, rid: str, scale: int) -> CompiledRate:
    r = plan.rates[rid]
    first, step = r.first_step
    first, step = first * scale, step * scale
    whole = first == int(first) and step == int(step)
    return CompiledRate(
        id=rid,
        connect_fee=r.connect_fee,
        first=first,
        step=step,
        groups=tuple((g.from_ * scale, g.price, g.per * scale) for g in r.groups),
        first_i=int(first) if whole else None,
        step_i=int(step) if whole else None,
        price=r.groups[0].price if len(r.groups) == 1 else None,
        per=r.groups[0].per * scale,
    )


def compile_plan(plan: TelecomPlan) -> CompiledPlan:
    """Build prefix tables, band timelines and base-unit rates for ``plan``.

    Unit scaling only multiplies: it runs in ``money.EXACT``, so a scaled price or bundle is exact.
    """
    with localcontext(EXACT):
        return _compile_plan(plan)


def _compile_plan(plan: TelecomPlan) -> CompiledPlan:
    periods = [(p.band, p.days, p.start_s, p.end_s) for p in plan.time_bands.periods]
    schedule = Schedule(ZoneInfo(plan.timezone), day_tables(periods, plan.time_bands.default), plan.holidays)
    bands = plan.bands()
    meters: dict[str, CompiledMeter] = {}
    for name, meter in plan.meters.items():
        scale = DATA_UNITS[meter.unit] if meter.kind == "data" and meter.unit else 1
        rates: dict[str, CompiledRate] = {}
        bundles = []
        for b in plan.bundles:
            if b.meter == name:
                bundles.append(
                    CompiledBundle(
                        id=b.id,
                        groups=frozenset(b.groups) or None,
                        bands=frozenset(b.bands) or None,
                        amount=b.amount * BUNDLE_UNITS[b.unit][1],
                    )
                )
        table: dict[str, CompiledDestination] = {}
        default = None
        for entry in meter.rates:
            by_band = entry.bands or dict.fromkeys(bands, entry.rate)
            for rid in by_band.values():
                if rid not in rates:
                    rates[rid] = _rate(plan, rid, scale)
            if entry.destination == ANY:
                did, group = ANY, entry.group or "other"
            else:
                did, group = entry.destination, plan.destinations[entry.destination].group
            dest = CompiledDestination(
                id=did,
                group=group,
                rates={band: rates[rid] for band, rid in by_band.items()},
                max_cost=entry.max_cost,
                bundles=tuple(b for b in bundles if b.applies(group)),
                line_prefix=f"{name}/{group}/",
                line_keys={band: f"{name}/{group}/{band}" for band in by_band},
            )
            if did == ANY:
                default = dest
            else:
                for prefix in plan.destinations[did].prefixes:
                    table[prefix] = dest
        meters[name] = CompiledMeter(name, meter.kind, PrefixTable(table, default))
    return CompiledPlan(
        currency=plan.currency,
        quantum=quantum(plan.rounding.decimals),
        method=plan.rounding.method,
        rounding=METHODS[plan.rounding.method],
        schedule=schedule,
        meters=meters,
    )
