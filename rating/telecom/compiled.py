"""Precompiles a :class:`TelecomPlan` into the lookup tables the rater uses.

Everything is converted once into the meter's *base unit* (seconds, messages,
bytes) so that rating needs no unit conversion: a data rate of 0.02 per 1 MB
with 1/1 MB increments becomes 0.02 per 1,000,000 bytes with 1,000,000-byte
increments, and the one division per record stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from meterstream.rating.money import EXACT
from meterstream.rating.telecom.bundles import CompiledBundle
from meterstream.rating.telecom.model import ANY, BUNDLE_UNITS, DATA_UNITS, TelecomPlan
from meterstream.rating.telecom.prefixes import PrefixTable
from meterstream.rating.telecom.rounding import METHODS, quantum
from meterstream.rating.telecom.timebands import Schedule, day_tables


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


class Leg:
    """One destination in one time band: what every record priced there shares, and its memo.

    ``simple`` legs (one rate group, whole-unit increments) are memoised by billed units: there a
    record's result depends on the billed units alone (plus its own start and quantity, put back
    in), so durations that bill the same share one entry. Other legs (several rate groups,
    fractional increments) are memoised by the whole quantity. ``charged`` holds results that
    drew on no bundle; ``covered[bundle_id]`` those that one bundle covered in full. The rater
    fills these from its reference path (``rater._rate_cdr``) and only reuses an entry in the
    same situation; each table is cleared when it reaches ``MEMO_LIMIT`` entries.
    """

    __slots__ = ("bundles", "charged", "covered", "fi", "keys", "plain", "rate", "si", "simple", "test_all")

    def __init__(self, rate: CompiledRate, band: str, bundles: tuple[CompiledBundle, ...]) -> None:
        self.rate = rate
        self.simple = rate.price is not None and rate.first_i is not None
        self.fi = rate.first_i
        self.si = rate.step_i
        # bundles that can cover usage in this band, in plan order, as (id, amount)
        self.bundles = tuple((b.id, b.amount) for b in bundles if b.bands is None or band in b.bands)
        # the general path evaluates every bundle of the destination (any band): so does its memo check
        self.test_all = tuple((b.id, b.amount, b.bands is None or band in b.bands) for b in bundles)
        # no bundle can change a record's answer here: the rater remembers each quantity's brief answer
        self.plain = not self.bundles if self.simple else not self.test_all
        # quantity (a Decimal whose text is a plain whole number; looked up by value, so an entry is used only
        # for that same Decimal object or one whose text is digits too) -> (its timedelta for voice meters,
        # memo key, the Decimal, its brief answer on a `plain` leg once known, else None)
        self.keys: dict[Decimal, tuple[timedelta | None, int, Decimal, tuple | None]] = {}
        self.charged: dict[int, tuple] = {}
        self.covered: dict[str, dict[int, tuple]] = {b: {} for b, _ in self.bundles}


MEMO_LIMIT = 4096


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
    legs: dict[str, Leg]


@dataclass(frozen=True, slots=True)
class CompiledMeter:
    name: str
    kind: str
    prefixes: PrefixTable[CompiledDestination]
    voice: bool
    # memo for the rater: the first `head` characters of a valid number (with or without its "+")
    # -> the destination `prefixes.match` gave for it; "" -> the default (records without a number);
    # cleared at prefixes.MEMO_LIMIT entries (65,536: a short prefix such as "1" has 10**(head - 2) heads)
    numbers: dict[str, CompiledDestination]
    head: int


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    currency: str
    quantum: Decimal
    method: str
    rounding: str
    schedule: Schedule
    meters: dict[str, CompiledMeter]
    spans: dict  # the schedule's band intervals per UTC day as timedeltas (Schedule.spans), read by the rater
    # the rater's memo (rater._hour_entry): a UTC hour's canonical text `YYYY-MM-DDTHH` -> (band, how far its
    # interval in `spans` reaches past the hour's end, that end), or None when a band change cuts the hour
    hours: dict = field(default_factory=dict)


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
            dest_bundles = tuple(b for b in bundles if b.applies(group))
            dest = CompiledDestination(
                id=did,
                group=group,
                rates={band: rates[rid] for band, rid in by_band.items()},
                max_cost=entry.max_cost,
                bundles=dest_bundles,
                line_prefix=f"{name}/{group}/",
                line_keys={band: f"{name}/{group}/{band}" for band in by_band},
                legs={band: Leg(rates[rid], band, dest_bundles) for band, rid in by_band.items()},
            )
            if did == ANY:
                default = dest
            else:
                for prefix in plan.destinations[did].prefixes:
                    table[prefix] = dest
        prefixes = PrefixTable(table, default)
        head = max(prefixes.longest, 1) + 1  # a "+" and at least one digit, or one digit more than needed
        meters[name] = CompiledMeter(name, meter.kind, prefixes, meter.kind == "voice", {}, head)
    return CompiledPlan(
        currency=plan.currency,
        quantum=quantum(plan.rounding.decimals),
        method=plan.rounding.method,
        rounding=METHODS[plan.rounding.method],
        schedule=schedule,
        meters=meters,
        spans=schedule.spans,
    )
