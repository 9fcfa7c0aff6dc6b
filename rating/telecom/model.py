"""The ``telecom:`` catalog section as frozen pydantic models, plus cross-checks.

Structure is validated by pydantic; references between parts (rates named by
destination entries, bands named by rate maps, ...) are checked afterwards so that
every problem is reported with its full field path.  Everything ends up in one
:class:`TelecomCatalogError`.
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_serializer

from meterstream.rating.telecom.errors import TelecomCatalogError

ANY = "*any"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday")
DAY_ALIASES = {
    "weekdays": ("mon", "tue", "wed", "thu", "fri"),
    "weekend": ("sat", "sun"),
    "all": ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
}
DATA_UNITS = {
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
#: bundle ``unit`` -> (meter kind, multiplier into the kind's base quantity)
BUNDLE_UNITS: dict[str, tuple[str, int]] = {
    "seconds": ("voice", 1),
    "minutes": ("voice", 60),
    "hours": ("voice", 3600),
    "messages": ("sms", 1),
    "bytes": ("data", 1),
    **{u: ("data", b) for u, b in DATA_UNITS.items()},
}
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?$")
_INCREMENTS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_ID = r"^[A-Za-z0-9_.\-]+$"

Id = Annotated[str, Field(pattern=_ID, min_length=1, max_length=64)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def time_to_seconds(text: str) -> int:
    """``"08:00"`` / ``"08:00:00"`` / ``"24:00"`` -> seconds after local midnight."""
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"{text!r} is not HH:MM or HH:MM:SS")
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    total = h * 3600 + mi * 60 + s
    if total > 86400:
        raise ValueError(f"{text!r} is after 24:00")
    return total


class Rounding(_Frozen):
    """One rounding per rated event: ``decimals`` places with ``method``."""

    decimals: int = Field(4, ge=0, le=12)
    method: Literal["up", "half_up", "down"] = "half_up"


class Period(_Frozen):
    """Band ``band`` is active on ``days`` from ``start`` (inclusive) to ``end`` (exclusive)."""

    band: Id
    days: tuple[str, ...] = Field(min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("days", mode="before")
    @classmethod
    def _expand_days(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        out: list[str] = []
        for d in v:
            d = str(d).lower()
            for x in DAY_ALIASES.get(d, (d,)):
                if x not in DAY_NAMES:
                    raise ValueError(f"unknown day {d!r} (use mon..sun, holiday, weekdays, weekend, all)")
                if x not in out:
                    out.append(x)
        return tuple(sorted(out, key=DAY_NAMES.index))

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        h, rest = divmod(time_to_seconds(str(v)), 3600)
        m, s = divmod(rest, 60)
        return f"{h:02d}:{m:02d}:{s:02d}" if s else f"{h:02d}:{m:02d}"

    @property
    def start_s(self) -> int:
        return time_to_seconds(self.start)

    @property
    def end_s(self) -> int:
        return time_to_seconds(self.end)


class TimeBands(_Frozen):
    """Named time-of-use bands; ``default`` covers every moment no period claims."""

    default: Id
    periods: tuple[Period, ...] = ()


class Destination(_Frozen):
    """A named set of dialled-number prefixes; ``group`` names the invoice line."""

    group: Id
    prefixes: tuple[str, ...] = Field(min_length=1)

    @field_validator("prefixes", mode="before")
    @classmethod
    def _digits(cls, v: Any) -> Any:
        if isinstance(v, (str, int)):
            v = [v]
        out = []
        for p in v:
            p = str(p).lstrip("+")
            if not p.isdigit() or not p.isascii():
                raise ValueError(f"prefix {p!r} must be digits (E.164, optional '+')")
            out.append(p)
        return tuple(out)


class RateGroup(_Frozen):
    """Price ``price`` per ``per`` units, for increments starting at elapsed ``from``."""

    from_: Decimal = Field(Decimal(0), alias="from", ge=0, allow_inf_nan=False)
    price: Money
    per: int = Field(gt=0)


class Rate(_Frozen):
    """A priced rate: connect fee, billing increments ``first/step`` and rate groups."""

    connect_fee: Money = Decimal(0)
    increments: str = "1/1"
    groups: tuple[RateGroup, ...] = Field(min_length=1)

    @field_validator("increments")
    @classmethod
    def _increments(cls, v: str) -> str:
        m = _INCREMENTS.match(str(v))
        if not m or Decimal(m[1]) <= 0 or Decimal(m[2]) <= 0:
            raise ValueError(f"{v!r} is not 'first/step' with both > 0, e.g. '60/1'")
        return f"{m[1]}/{m[2]}"

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: tuple[RateGroup, ...]) -> tuple[RateGroup, ...]:
        if v[0].from_ != 0:
            raise ValueError("the first rate group must start at 0")
        for a, b in itertools.pairwise(v):
            if b.from_ <= a.from_:
                raise ValueError("rate groups must have strictly increasing 'from'")
        return v

    @property
    def first_step(self) -> tuple[Decimal, Decimal]:
        first, step = self.increments.split("/")
        return Decimal(first), Decimal(step)


class RateEntry(_Frozen):
    """Prices one destination (or ``*any``, the default rate) for a meter.

    Either ``rate`` (every band) or ``bands`` (band -> rate id) is given.
    """

    destination: str
    group: Id | None = None
    rate: Id | None = None
    bands: dict[str, Id] | None = None
    max_cost: Money | None = None


class Meter(_Frozen):
    """What a meter measures and how its destinations are priced."""

    kind: Literal["voice", "sms", "data"]
    unit: Literal["KB", "MB", "GB", "KiB", "MiB", "GiB"] | None = None
    rates: tuple[RateEntry, ...] = Field(min_length=1)


class Bundle(_Frozen):
    """An included allowance consumed before money, per customer per ``period``."""

    id: Id
    meter: str
    amount: Decimal = Field(gt=0, allow_inf_nan=False)
    unit: str
    groups: tuple[str, ...] = ()
    bands: tuple[str, ...] = ()
    period: Literal["day", "week", "month"] = "month"


Strategy = Literal["stop_charging", "disconnect"]


class BandCap(_Frozen):
    """At most ``amount`` for a session while ``band`` is in force (to ``destination``)."""

    destination: str | None = None  # a destination id of the plan, "*any" (the default rate), None: all
    band: str | None = None  # a time band of the plan, None: all
    amount: Money
    strategy: Strategy = "stop_charging"


class SessionRules(_Frozen):
    """How sessions are rounded and capped (defaults: one rounding per session, the plan's caps).

    The rules themselves: ``rating/telecom/session_rules.py`` and docs/telecom.md, *Sessions*.
    """

    rounding: Literal["per_record", "per_increment"] = "per_record"
    max_cost: tuple[BandCap, ...] = ()

    def cap(self, destination_id: str, band: str, default: Decimal | None) -> tuple[Decimal, Strategy] | None:
        """The cap for ``band`` on ``destination_id``: the first matching entry, else the plan's."""
        for c in self.max_cost:
            if c.destination in (None, destination_id) and c.band in (None, band):
                return c.amount, c.strategy
        return None if default is None else (default, "stop_charging")


DEFAULT_RULES = SessionRules()


class TelecomSection(_Frozen):
    """The ``telecom:`` section exactly as written in the catalog."""

    version: Literal[1] = 1
    timezone: str
    rounding: Rounding = Rounding()
    holidays: tuple[date, ...] = ()
    time_bands: TimeBands
    destinations: dict[Id, Destination] = {}
    rates: dict[Id, Rate] = Field(min_length=1)
    meters: dict[str, Meter] = Field(min_length=1)
    bundles: tuple[Bundle, ...] = ()
    sessions: SessionRules = DEFAULT_RULES  # interim/final records of one session: rounding, caps per band

    @field_validator("holidays")
    @classmethod
    def _sorted(cls, v: tuple[date, ...]) -> tuple[date, ...]:
        return tuple(sorted(set(v)))

    @model_serializer(mode="wrap")
    def _without_default_sessions(self, handler: Any) -> Any:
        """A plan without session rules dumps as before they existed (stored plans compare equal)."""
        out = handler(self)
        if isinstance(out, dict) and self.sessions == DEFAULT_RULES:
            out.pop("sessions", None)
        return out


class TelecomPlan(TelecomSection):
    """A validated telecom plan with its currency; compiled once for fast rating."""

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    _compiled: Any = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal when the plans say the same thing (the compiled cache is not compared)."""
        if not isinstance(other, TelecomPlan):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict fields: plans are not hashable

    @property
    def compiled(self) -> Any:
        """The precompiled lookup tables (built on first use, then reused)."""
        if self._compiled is None:
            from meterstream.rating.telecom.compiled import compile_plan

            self._compiled = compile_plan(self)
        return self._compiled

    def bands(self) -> tuple[str, ...]:
        """Every band name the plan uses, default first."""
        names = [self.time_bands.default]
        for p in self.time_bands.periods:
            if p.band not in names:
                names.append(p.band)
        return tuple(names)


def _loc(loc: tuple[Any, ...]) -> str:
    path = "telecom"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _cross_check(plan: TelecomPlan) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    try:
        ZoneInfo(plan.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("telecom.timezone", f"unknown IANA time zone {plan.timezone!r}"))

    bands = set(plan.bands())
    # periods: sane ranges, no overlap on the same day type
    by_day: dict[str, list[tuple[int, int, int]]] = {}
    for i, p in enumerate(plan.time_bands.periods):
        if p.end_s <= p.start_s:
            problems.append((f"telecom.time_bands.periods[{i}].end", "end must be after start"))
            continue
        for d in p.days:
            for s, e, j in by_day.get(d, []):
                if p.start_s < e and s < p.end_s:
                    problems.append((f"telecom.time_bands.periods[{i}]", f"overlaps periods[{j}] on {d}"))
            by_day.setdefault(d, []).append((p.start_s, p.end_s, i))

    # a prefix may belong to one destination only
    owner: dict[str, str] = {}
    for did, dest in plan.destinations.items():
        for k, prefix in enumerate(dest.prefixes):
            if prefix in owner and owner[prefix] != did:
                problems.append(
                    (f"telecom.destinations.{did}.prefixes[{k}]", f"prefix {prefix} also in {owner[prefix]}")
                )
            owner[prefix] = did

    for name, meter in plan.meters.items():
        base = f"telecom.meters.{name}"
        if meter.kind == "data" and meter.unit is None:
            problems.append((f"{base}.unit", "a data meter needs a unit (e.g. MB)"))
        if meter.kind != "data" and meter.unit is not None:
            problems.append((f"{base}.unit", "only data meters take a unit"))
        seen: set[str] = set()
        for i, entry in enumerate(meter.rates):
            path = f"{base}.rates[{i}]"
            if entry.destination in seen:
                problems.append((f"{path}.destination", f"{entry.destination} priced twice"))
            seen.add(entry.destination)
            if entry.destination != ANY and entry.destination not in plan.destinations:
                problems.append((f"{path}.destination", f"unknown destination {entry.destination!r}"))
            if entry.destination != ANY and entry.group is not None:
                problems.append((f"{path}.group", "group comes from the destination; only *any takes one"))
            if (entry.rate is None) == (entry.bands is None):
                problems.append((path, "give exactly one of 'rate' or 'bands'"))
                continue
            refs = {"rate": entry.rate} if entry.rate else {f"bands.{b}": r for b, r in entry.bands.items()}
            for field, rid in refs.items():
                if rid not in plan.rates:
                    problems.append((f"{path}.{field}", f"unknown rate {rid!r}"))
            if entry.bands is not None:
                for b in entry.bands:
                    if b not in bands:
                        problems.append((f"{path}.bands.{b}", f"unknown time band {b!r}"))
                for b in sorted(bands - set(entry.bands)):
                    problems.append((f"{path}.bands", f"no rate for time band {b!r}"))

    problems.extend(session_problems(plan.sessions, plan, "telecom.sessions"))

    groups = {d.group for d in plan.destinations.values()}
    groups |= {e.group or "other" for m in plan.meters.values() for e in m.rates if e.destination == ANY}
    ids: set[str] = set()
    for i, b in enumerate(plan.bundles):
        path = f"telecom.bundles[{i}]"
        if b.id in ids:
            problems.append((f"{path}.id", f"duplicate bundle id {b.id!r}"))
        ids.add(b.id)
        meter = plan.meters.get(b.meter)
        if meter is None:
            problems.append((f"{path}.meter", f"unknown meter {b.meter!r}"))
        elif b.unit not in BUNDLE_UNITS:
            problems.append((f"{path}.unit", f"unknown unit {b.unit!r}"))
        elif BUNDLE_UNITS[b.unit][0] != meter.kind:
            problems.append((f"{path}.unit", f"unit {b.unit!r} does not measure a {meter.kind} meter"))
        for k, g in enumerate(b.groups):
            if g not in groups:
                problems.append((f"{path}.groups[{k}]", f"unknown destination group {g!r}"))
        for k, band in enumerate(b.bands):
            if band not in bands:
                problems.append((f"{path}.bands[{k}]", f"unknown time band {band!r}"))
    return problems


def session_problems(rules: SessionRules, plan: TelecomPlan, where: str) -> list[tuple[str, str]]:
    """Caps naming a band or destination the plan does not have, as (field path, reason)."""
    bands = set(plan.bands())
    destinations = set(plan.destinations) | {ANY}
    problems = []
    for i, c in enumerate(rules.max_cost):
        if c.band is not None and c.band not in bands:
            problems.append((f"{where}.max_cost[{i}].band", f"unknown time band {c.band!r}"))
        if c.destination is not None and c.destination not in destinations:
            problems.append((f"{where}.max_cost[{i}].destination", f"unknown destination {c.destination!r}"))
    return problems


def parse_telecom_plan(section: dict[str, Any], *, currency: str) -> TelecomPlan:
    """Validate a ``telecom:`` catalog section and return the plan.

    Raises :class:`TelecomCatalogError` naming every bad field (path and reason).
    """
    if not isinstance(section, dict):
        raise TelecomCatalogError([("telecom", "must be a mapping")])
    try:
        plan = TelecomPlan.model_validate({**section, "currency": currency})
    except ValidationError as exc:
        problems = [(_loc(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        raise TelecomCatalogError(problems) from None
    problems = _cross_check(plan)
    if problems:
        raise TelecomCatalogError(problems)
    return plan
