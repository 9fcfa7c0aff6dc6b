"""OpenMeter meter queries answered from `rated_usage FINAL` (pure: SQL text + parameters, rows -> results).

Each OpenMeter event that fed a meter is one row of `rated_usage` (meter = the slug), so every
aggregation is computed over per-event rows, exactly:

| aggregation  | row quantity (ingest/translate.py)  | SQL                                        |
| SUM          | the value                           | sum(quantity)                              |
| COUNT        | 1                                   | count()                                    |
| AVG          | the value                           | sum(quantity) / count(), divided in Python |
| MIN, MAX     | the value                           | min(quantity), max(quantity)               |
| LATEST       | the value                           | argMax(quantity, (time, event_id))         |
| UNIQUE_COUNT | 1, value in dimension `$unique`     | uniqExact(dimensions['$unique'])           |

Windows: MINUTE/HOUR/DAY/MONTH in `windowTimeZone` (DAY and MONTH follow the zone's midnights, DST
included); `from` inclusive, `to` exclusive. Without a window each group is one row whose window is
[from, to) when given, else the group's first and last event time. Group keys: `subject`,
`customer_id` and the meter's `groupBy` names; filtering by subject or customer also groups by it (as
OpenMeter does). Every user value is a query parameter; the only names in the SQL text are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

from meterstream.api.queries import QueryError, check_tz, time_range, window_bounds
from meterstream.ingest.translate import UNIQUE_DIMENSION

WINDOWS = ("MINUTE", "HOUR", "DAY", "MONTH")
_WINDOW_FN = {"HOUR": "toStartOfHour", "DAY": "toStartOfDay", "MONTH": "toStartOfMonth"}
_AGG_SQL = {
    "SUM": "toString(sum(toDecimal256(quantity, 12)))",
    "COUNT": "toString(count())",
    "AVG": "toString(sum(toDecimal256(quantity, 12)))",
    "MIN": "toString(min(quantity))",
    "MAX": "toString(max(quantity))",
    "LATEST": "toString(argMax(quantity, (time, event_id)))",
    "UNIQUE_COUNT": "toString(uniqExact(dimensions[{unique:String}]))",
}
_DIVIDE = Context(prec=40)  # AVG: 38-digit sums divided by a count; the answer is a JSON float anyway


@dataclass(frozen=True)
class MeterQuery:
    tenant: str
    meter: str  # slug
    aggregation: str
    meter_group_by: tuple[str, ...] = ()  # the meter's groupBy names
    start: datetime | None = None
    end: datetime | None = None
    window_size: str | None = None
    tz: str = "UTC"
    subjects: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()  # Meterstream customer ids (key or id)
    filter_group_by: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()


def plan(q: MeterQuery, db: str) -> tuple[str, dict[str, Any], list[str]]:
    """(SQL, parameters, names of the group columns in order) for one meter query."""
    if q.window_size is not None and q.window_size not in WINDOWS:
        raise QueryError("windowSize", f"must be one of {', '.join(WINDOWS)}")
    try:
        check_tz(q.tz)
    except QueryError as exc:
        raise QueryError("windowTimeZone", exc.reason) from None
    if q.start is not None and q.end is not None and q.end <= q.start:
        raise QueryError("to", "must be after from")
    params: dict[str, Any] = {"tenant": q.tenant, "meter": q.meter, "tz": q.tz, "unique": UNIQUE_DIMENSION}
    keys: list[str] = []
    names: list[str] = []
    if q.window_size == "MINUTE":
        keys.append("toUnixTimestamp(toStartOfMinute(time)) AS w")
        names.append("window")
    elif q.window_size is not None:
        fn = _WINDOW_FN[q.window_size]
        keys.append(f"toUnixTimestamp(toDateTime({fn}(time, {{tz:String}}), {{tz:String}})) AS w")
        names.append("window")
    wanted = list(dict.fromkeys(q.group_by))
    if q.subjects and "subject" not in wanted:
        wanted.insert(0, "subject")
    if q.customers and "customer_id" not in wanted:
        wanted.insert(0, "customer_id")
    for i, g in enumerate(wanted):
        if g == "subject":
            keys.append("subject AS s")
        elif g == "customer_id":
            keys.append("customer AS c")
        elif g in q.meter_group_by:
            params[f"g{i}"] = g
            keys.append(f"dimensions[{{g{i}:String}}] AS g{i}")
        else:
            allowed = ", ".join(["subject", "customer_id", *q.meter_group_by])
            raise QueryError("groupBy", f"{g!r} is not a group-by of meter {q.meter} (use {allowed})")
        names.append(g)
    where = _conditions(q, params)
    agg = _aggregate(q)
    columns = [*keys, f"{agg} AS v", "count() AS n",
               "toUnixTimestamp64Milli(min(time)) AS t0", "toUnixTimestamp64Milli(max(time)) AS t1"]  # fmt: skip
    sql = f"SELECT {', '.join(columns)} FROM {db}.rated_usage FINAL WHERE {' AND '.join(where)}"
    if keys:
        aliases = [k.rsplit(" AS ", 1)[-1] for k in keys]
        sql += f" GROUP BY {', '.join(aliases)} ORDER BY {', '.join(aliases)}"
    return sql, params, names


def _conditions(q: MeterQuery, params: dict[str, Any]) -> list[str]:
    """The WHERE conditions of a query (tenant, meter, time range, subjects, customers, group-by filters)."""
    params.setdefault("tenant", q.tenant)
    params.setdefault("meter", q.meter)
    where = ["tenant = {tenant:String}", "meter = {meter:String}"]
    time_range(q.start, q.end, where, params)
    if q.subjects:
        where.append("subject IN {subjects:Array(String)}")
        params["subjects"] = list(q.subjects)
    if q.customers:
        where.append("customer IN {customers:Array(String)}")
        params["customers"] = list(q.customers)
    for i, (k, v) in enumerate(sorted(q.filter_group_by.items())):
        if k not in q.meter_group_by:
            raise QueryError(f"filterGroupBy.{k}", f"not a group-by of meter {q.meter}")
        params[f"fk{i}"], params[f"fv{i}"] = k, v
        where.append(f"dimensions[{{fk{i}:String}}] = {{fv{i}:String}}")
    return where


def _aggregate(q: MeterQuery) -> str:
    agg = _AGG_SQL.get(q.aggregation)
    if agg is None:
        raise QueryError("aggregation", f"unknown aggregation {q.aggregation}")
    return agg


def bucket_plan(q: MeterQuery, db: str, bounds: list[datetime]) -> tuple[str, dict[str, Any]]:
    """(SQL, parameters) of the query's aggregate per span between consecutive `bounds` (sorted, at least two; the
    query's own start and end are ignored): rows `(k, value, count)` where span k (from 0) is `[bounds[k],
    bounds[k+1])`. Few spans (an entitlement's burn-down phases): each row's span is found by a scan of `bounds`."""
    ranged = MeterQuery(**{**q.__dict__, "start": bounds[0], "end": bounds[-1]})
    params: dict[str, Any] = {"unique": UNIQUE_DIMENSION,
                              "bounds": [b.astimezone(UTC).replace(tzinfo=None) for b in bounds]}  # fmt: skip
    where = _conditions(ranged, params)
    # arrayFirstIndex: the 1-based position of the first bound after the row's time, bounds[k+1] for span k
    sql = (f"SELECT arrayFirstIndex(b -> b > time, {{bounds:Array(DateTime64(3, 'UTC'))}}) - 2 AS k, "
           f"{_aggregate(q)} AS v, count() AS n FROM {db}.rated_usage FINAL WHERE {' AND '.join(where)} "
           "GROUP BY k ORDER BY k")  # fmt: skip
    return sql, params


def _bounds(ts: int, window: str, tz: str) -> tuple[datetime, datetime]:
    if window == "MINUTE":
        start = datetime.fromtimestamp(ts, UTC)
        return start, start + timedelta(minutes=1)
    return window_bounds(ts, window.lower(), check_tz(tz))  # type: ignore[arg-type]


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def value_of(aggregation: str, v: str, n: int) -> Decimal:
    """The exact aggregated value of one group (AVG divides the exact sum by the count)."""
    value = Decimal(v)
    if aggregation == "AVG":
        return _DIVIDE.divide(value, Decimal(n)) if n else Decimal(0)
    return value


def rows(q: MeterQuery, names: list[str], result: list[tuple]) -> list[dict[str, Any]]:
    """ClickHouse rows -> OpenMeter MeterQueryRow dicts (value as an exact Decimal; the route renders it)."""
    out: list[dict[str, Any]] = []
    for row in result:
        n = int(row[len(names) + 1])
        if n == 0:
            continue  # an aggregate over no rows (no GROUP BY): OpenMeter answers no row
        rec: dict[str, Any] = {"subject": None, "customerId": None, "groupBy": {}}
        window_start = window_end = None
        for i, name in enumerate(names):
            value = row[i]
            if name == "window":
                window_start, window_end = _bounds(int(value), q.window_size or "", q.tz)
            elif name == "subject":
                rec["subject"] = value
            elif name == "customer_id":
                rec["customerId"] = value
            else:
                rec["groupBy"][name] = value if value != "" else None
        if window_start is None:
            t0, t1 = int(row[len(names) + 2]), int(row[len(names) + 3])
            window_start = q.start or datetime.fromtimestamp(t0 / 1000, UTC)
            window_end = q.end or datetime.fromtimestamp(t1 / 1000, UTC)
        rec["windowStart"], rec["windowEnd"] = _utc_text(window_start), _utc_text(window_end)  # type: ignore[arg-type]
        rec["value"] = value_of(q.aggregation, str(row[len(names)]), n)
        out.append(rec)
    return out


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\r\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def to_csv(group_names: list[str], data: list[dict[str, Any]]) -> str:
    """CSV of a query result: window_start, window_end, subject, customer_id, the group-bys, value (exact)."""
    dims = [g for g in group_names if g not in ("window", "subject", "customer_id")]
    header = ["window_start", "window_end", "subject", "customer_id", *dims, "value"]
    lines = [",".join(header)]
    for rec in data:
        value = rec["value"]
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        cells = [rec["windowStart"], rec["windowEnd"], rec["subject"], rec["customerId"],
                 *(rec["groupBy"].get(d) for d in dims), text]  # fmt: skip
        lines.append(",".join(_csv_cell(c) for c in cells))
    return "\r\n".join(lines) + "\r\n"
