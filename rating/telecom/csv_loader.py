"""Load a telecom plan from CGRateS-style tariff CSV exports.

Files (header rows start with ``#``; ``;`` separates list values):

* ``Destinations.csv``     ``Id,Prefix[,Group]`` (Group is our extension; default: Id lowercased)
* ``Rates.csv``            ``Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart``
* ``Timings.csv``          ``Id,Years,Months,MonthDays,WeekDays,Time``
* ``DestinationRates.csv`` ``Id,DestinationId,RatesTag,RoundingMethod,RoundingDecimals,MaxCost,
  MaxCostStrategy[,Group]``
* ``RatingPlans.csv``      ``Id,DestinationRatesId,TimingTag,Weight``
* ``RatingProfiles.csv``   ``Tenant,Category,Subject,ActivationTime,RatingPlanId,...``
  (Category ``call``/``sms``/``data`` or a meter name -> which rating plan prices that meter)
* ``PlanSettings.csv``     ``Key,Value``: ``timezone`` (required), ``data_unit`` (extension)
* ``Bundles.csv``          ``Id,Category,Amount,Unit,DestinationGroups,TimeBands,Period`` (extension,
  optional)

Mapping onto the ``telecom:`` section (docs/telecom.md has the details):
the timing id, lowercased, is the band name; the timing with ``*any`` everywhere
is the default band; a ``Time`` of ``start;end`` is a period (our extension — without
an end the period runs to midnight); timings with concrete Years/Months/MonthDays
declare holiday dates whose day type gets that band.  Rate rows of one id become
rate groups; increments are ``<first row's increment>/<later rows' increment>``.
"""

from __future__ import annotations

import csv
import itertools
import re
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from meterstream.rating import money
from meterstream.rating.telecom.errors import TelecomCatalogError
from meterstream.rating.telecom.model import ANY, DATA_UNITS, TelecomPlan, parse_telecom_plan

CATEGORIES = {"call": ("voice_seconds", "voice"), "sms": ("sms", "sms"), "data": ("data_bytes", "data")}
KIND_BY_METER = {m: k for m, k in CATEGORIES.values()}
ROUNDING = {"*up": "up", "*middle": "half_up", "*down": "down"}
WEEKDAYS = {"1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "0": "sun", "7": "sun"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(h|m|s|ms)?$")
_SCALE = {"h": Decimal(3600), "m": Decimal(60), "s": Decimal(1), "ms": Decimal("0.001"), None: Decimal(1)}


class _Rows:
    """Rows of one CSV file with ``file:line`` locations for error messages."""

    def __init__(self, directory: Path, name: str, required: bool = True) -> None:
        self.name = name
        self.rows: list[tuple[int, list[str]]] = []
        path = directory / name
        if not path.exists():
            if required:
                raise TelecomCatalogError([(name, "file missing")])
            return
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].startswith("#") or not any(c.strip() for c in row):
                    continue
                self.rows.append((n, [c.strip() for c in row]))

    def __iter__(self):
        return iter(self.rows)


def _col(row: list[str], i: int) -> str:
    return row[i] if i < len(row) else ""


def _quantity(text: str, where: str, problems: list) -> Decimal:
    m = _DURATION.match(text)
    if not m:
        problems.append((where, f"{text!r} is not a number or duration like 60s"))
        return Decimal(0)
    return Decimal(m[1]) * _SCALE[m[2]]


def _money(text: str, where: str, problems: list) -> Decimal:
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        problems.append((where, f"{text!r} is not a decimal"))
        return Decimal(0)
    return value


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _load_rates(rows: _Rows, problems: list) -> dict[str, list[tuple[Decimal, Decimal, Decimal, Decimal, Decimal]]]:
    raw: dict[str, list] = {}
    for n, row in rows:
        where = f"{rows.name}:{n}"
        rid = row[0]
        raw.setdefault(rid, []).append(
            (
                _quantity(_col(row, 5) or "0", f"{where}.GroupIntervalStart", problems),
                _money(_col(row, 1), f"{where}.ConnectFee", problems),
                _money(_col(row, 2), f"{where}.Rate", problems),
                _quantity(_col(row, 3), f"{where}.RateUnit", problems),
                _quantity(_col(row, 4), f"{where}.RateIncrement", problems),
            )
        )
    return {rid: sorted(groups, key=lambda g: g[0]) for rid, groups in raw.items()}


def _rate_section(rid: str, groups: list, scale: Decimal, problems: list) -> dict[str, Any]:
    """CSV rate rows (in base units) -> one ``rates:`` entry in the meter's rating unit."""
    where = f"Rates.csv.{rid}"
    first = groups[0][4] / scale
    step = groups[1][4] / scale if len(groups) > 1 else first
    if any(g[4] / scale != step for g in groups[1:]):
        problems.append((where, "all rows after the first must share one RateIncrement"))
    if len(groups) > 1 and first != step and groups[1][0] / scale != first:
        problems.append((where, "second row must start where the first increment ends (e.g. 60s/1s from 60s)"))
    out_groups: list[dict[str, Any]] = []
    for start, _, price, unit, _ in groups:
        per = unit / scale
        if per != per.to_integral_value() or per <= 0:
            problems.append((where, f"RateUnit must be a whole number of units, got {_plain(per)}"))
            continue
        if out_groups and out_groups[-1]["price"] == price and out_groups[-1]["per"] == int(per):
            continue  # same price, only the increment changed: one rate group
        out_groups.append({"from": start / scale, "price": price, "per": int(per)})
    section: dict[str, Any] = {"increments": f"{_plain(first)}/{_plain(step)}", "groups": out_groups}
    if groups[0][1]:
        section["connect_fee"] = groups[0][1]
    return section


def _load_timings(rows: _Rows, problems: list) -> tuple[str | None, list[dict[str, Any]], list[date]]:
    default: str | None = None
    periods: dict[tuple[str, str, str], list[str]] = {}
    holidays: list[date] = []
    holiday_periods: set[tuple[str, str, str]] = set()
    for n, row in rows:
        where = f"{rows.name}:{n}"
        tid, years, months, mdays, wdays, time = (_col(row, i) for i in range(6))
        band = tid.lower()
        start, _, end = time.partition(";")
        start, end = start or "00:00:00", end or "24:00:00"
        dated = (years, months, mdays) != (ANY, ANY, ANY)
        if not dated and wdays == ANY:
            if (start, end) != ("00:00:00", "24:00:00") or default not in (None, band):
                problems.append((where, "only one all-*any timing (the default band), starting 00:00:00"))
            default = band
            continue
        if dated:
            try:
                for y, mo, d in itertools.product(years.split(";"), months.split(";"), mdays.split(";")):
                    holidays.append(date(int(y), int(mo), int(d)))
            except ValueError as exc:
                problems.append((where, f"bad holiday date: {exc}"))
            holiday_periods.add((band, start, end))
            days = ["holiday"]
        else:
            try:
                days = [WEEKDAYS[w] for w in wdays.split(";")]
            except KeyError as exc:
                problems.append((f"{where}.WeekDays", f"unknown weekday {exc} (0/7=Sunday .. 6=Saturday)"))
                continue
        for d in days:
            if d not in periods.setdefault((band, start, end), []):
                periods[(band, start, end)].append(d)
    if len(holiday_periods) > 1:
        problems.append((rows.name, "all holiday timings must share one band and time"))
    if default is None:
        problems.append((rows.name, "no default timing (Years, Months, MonthDays, WeekDays all *any)"))
    out = [{"band": b, "days": days, "start": s, "end": e} for (b, s, e), days in periods.items()]
    return default, out, holidays


def load_telecom_csv(directory: Path, *, currency: str) -> TelecomPlan:
    """Build a :class:`TelecomPlan` from a directory of tariff CSV files.

    Raises :class:`TelecomCatalogError` naming ``file:line.column`` or the plan field. Unit conversions
    run in ``money.ROUNDING`` (60 digits), not the default 28-digit context.
    """
    with localcontext(money.ROUNDING):
        return _load_telecom_csv(directory, currency)


def _load_telecom_csv(directory: Path, currency: str) -> TelecomPlan:
    directory = Path(directory)
    problems: list[tuple[str, str]] = []
    settings = {row[0]: _col(row, 1) for _, row in _Rows(directory, "PlanSettings.csv")}
    data_unit = settings.get("data_unit", "MB")
    if data_unit not in DATA_UNITS:
        problems.append(("PlanSettings.csv.data_unit", f"unknown data unit {data_unit!r}"))
        data_unit = "MB"

    destinations: dict[str, dict[str, Any]] = {}
    dest_rows = _Rows(directory, "Destinations.csv")
    for _, row in dest_rows:
        did, prefix, group = row[0], _col(row, 1), _col(row, 2) or row[0].lower()
        entry = destinations.setdefault(did, {"group": group, "prefixes": []})
        entry["prefixes"].append(prefix)

    rate_rows = _load_rates(_Rows(directory, "Rates.csv"), problems)
    default_band, periods, holidays = _load_timings(_Rows(directory, "Timings.csv"), problems)

    dr_rows = _Rows(directory, "DestinationRates.csv")
    drs: dict[str, dict[str, Any]] = {}
    roundings: set[tuple[str, int]] = set()
    for n, row in dr_rows:
        where = f"{dr_rows.name}:{n}"
        method = ROUNDING.get(_col(row, 3) or "*middle")
        if method is None:
            problems.append((f"{where}.RoundingMethod", f"unknown {_col(row, 3)!r} (use *up, *middle, *down)"))
            method = "half_up"
        decimals = int(_col(row, 4) or 4) if (_col(row, 4) or "4").isdigit() else -1
        if decimals < 0:
            problems.append((f"{where}.RoundingDecimals", "must be a whole number"))
        roundings.add((method, decimals))
        max_cost = _money(_col(row, 5), f"{where}.MaxCost", problems)
        if max_cost and _col(row, 6) not in ("", "*free"):
            problems.append((f"{where}.MaxCostStrategy", "only *free (cap the call) is supported"))
        drs[row[0]] = {
            "destination": _col(row, 1),
            "rate": _col(row, 2),
            "max_cost": max_cost or None,
            "group": _col(row, 7) or None,
            "where": where,
        }
    if len(roundings) > 1:
        problems.append((dr_rows.name, "all rows must share one RoundingMethod and RoundingDecimals"))

    plan_rows: dict[str, list[tuple[str, str, str]]] = {}
    rp_rows = _Rows(directory, "RatingPlans.csv")
    for n, row in rp_rows:
        plan_rows.setdefault(row[0], []).append((_col(row, 1), _col(row, 2), f"{rp_rows.name}:{n}"))

    rates: dict[str, dict[str, Any]] = {}
    rate_scale: dict[str, Decimal] = {}
    meters: dict[str, dict[str, Any]] = {}
    profiles = _Rows(directory, "RatingProfiles.csv")
    for n, row in profiles:
        where = f"{profiles.name}:{n}"
        category, rp_id = _col(row, 1), _col(row, 4)
        if category in CATEGORIES:
            meter, kind = CATEGORIES[category]
        elif category in KIND_BY_METER:
            meter, kind = category, KIND_BY_METER[category]
        else:
            problems.append((f"{where}.Category", f"unknown category {category!r} (call, sms, data)"))
            continue
        if rp_id not in plan_rows:
            problems.append((f"{where}.RatingPlanId", f"unknown rating plan {rp_id!r}"))
            continue
        scale = Decimal(DATA_UNITS[data_unit]) if kind == "data" else Decimal(1)
        entries: dict[str, dict[str, Any]] = {}
        for dr_id, timing, rp_where in plan_rows[rp_id]:
            dr = drs.get(dr_id)
            if dr is None:
                problems.append((f"{rp_where}.DestinationRatesId", f"unknown destination rate {dr_id!r}"))
                continue
            rid = dr["rate"]
            if rid not in rate_rows:
                problems.append((f"{dr['where']}.RatesTag", f"unknown rate {rid!r}"))
                continue
            if rate_scale.setdefault(rid, scale) != scale:
                problems.append((f"{dr['where']}.RatesTag", f"rate {rid} used with two different units"))
            rates[rid] = _rate_section(rid, rate_rows[rid], scale, problems)
            entry = entries.setdefault(dr["destination"], {"destination": dr["destination"]})
            if dr["group"] and dr["destination"] == ANY:
                entry["group"] = dr["group"]
            if dr["max_cost"] is not None:
                if entry.get("max_cost", dr["max_cost"]) != dr["max_cost"]:
                    problems.append((f"{dr['where']}.MaxCost", "differs between bands of one destination"))
                entry["max_cost"] = dr["max_cost"]
            if timing == ANY:
                entry["rate"] = rid
            else:
                entry.setdefault("bands", {})[timing.lower()] = rid
        meters[meter] = {"kind": kind, "rates": list(entries.values())}
        if kind == "data":
            meters[meter]["unit"] = data_unit

    bundles = []
    bundle_rows = _Rows(directory, "Bundles.csv", required=False)
    for n, row in bundle_rows:
        category = _col(row, 1)
        groups, bands_ = _col(row, 4), _col(row, 5)
        bundles.append(
            {
                "id": row[0],
                "meter": CATEGORIES.get(category, (category,))[0],
                "amount": _money(_col(row, 2), f"{bundle_rows.name}:{n}.Amount", problems),
                "unit": _col(row, 3),
                "groups": [] if groups in ("", ANY) else groups.split(";"),
                "bands": [] if bands_ in ("", ANY) else [b.lower() for b in bands_.split(";")],
                "period": _col(row, 6) or "month",
            }
        )
    if problems:
        raise TelecomCatalogError(problems)

    section: dict[str, Any] = {
        "version": 1,
        "timezone": settings.get("timezone", ""),
        "holidays": holidays,
        "time_bands": {"default": default_band, "periods": periods},
        "destinations": destinations,
        "rates": rates,
        "meters": meters,
        "bundles": bundles,
    }
    if roundings:
        method, decimals = roundings.pop()
        section["rounding"] = {"decimals": decimals, "method": method}
    return parse_telecom_plan(section, currency=currency)
