"""The ONE query path of the API to ClickHouse: clickhouse-connect over HTTP, same SQL everywhere.

Target: `Settings.clickhouse_url` when it is http(s)://, else the ClickHouse HTTP front the sink process
serves for the embedded store on `Settings.clickhouse_http_port`. Reads of `rated_usage` use FINAL;
every query is scoped by tenant in SQL, and every user value travels as a query parameter (never
formatted into the SQL text); the only names in the text come from fixed whitelists.
"""

from __future__ import annotations

import threading
from calendar import monthrange
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from meterstream.billing.allocation import cell_shares
from meterstream.rating.money import EXACT, round_money
from meterstream.schemas.errors import FieldReasonError
from meterstream.schemas.settings import Settings

Window = Literal["hour", "day", "month"]
GROUPABLE = ("customer", "subject", "meter")
_EXTRA = ("customer", "meter", "period")  # what a subject's fair share is computed over (`UsageQueries.usage`)
_WINDOW_SQL = {"hour": "toStartOfHour", "day": "toStartOfDay", "month": "toStartOfMonth"}
_FINAL = {"do_not_merge_across_partitions_select_final": 1}


class QueryError(FieldReasonError):
    """A request the query path refuses: `field` names the parameter, `reason` says why."""


class ClickHouseUnavailable(Exception):
    pass


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_tz(tz: str) -> ZoneInfo:
    if tz != "UTC" and tz not in _zones():
        raise QueryError("tz", f"unknown IANA time zone {tz!r}")
    return ZoneInfo(tz)


@dataclass(frozen=True)
class UsageQuery:
    """What GET /v1/usage asks for (validated by `plan_usage`)."""

    tenant: str
    group_by: tuple[str, ...] = ("customer", "meter")  # customer | subject | meter | dimensions.<key>
    window: Window | None = None
    tz: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    customer: str | None = None
    subject: str | None = None
    meters: tuple[str, ...] = ()


def plan_usage(q: UsageQuery, db: str, extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any], list[str]]:
    """(SQL, parameters, names of the grouped columns in order): pure, so it is tested without ClickHouse.
    `extra`: columns grouped after the asked ones (fixed names of this module, never user input)."""
    check_tz(q.tz)
    params: dict[str, Any] = {"tenant": q.tenant, "tz": q.tz}
    select: list[str] = []
    names: list[str] = []
    if q.window is not None:
        fn = _WINDOW_SQL[q.window]
        select.append(f"toUnixTimestamp(toDateTime({fn}(time, {{tz:String}}), {{tz:String}})) AS w")
        names.append("window")
    seen: set[str] = set()
    for i, g in enumerate(q.group_by):
        if g in seen:
            raise QueryError("group_by", f"{g!r} given twice")
        seen.add(g)
        if g in GROUPABLE:
            select.append(g)
        elif g.startswith("dimensions.") and len(g) > len("dimensions."):
            params[f"d{i}"] = g.removeprefix("dimensions.")
            select.append(f"dimensions[{{d{i}:String}}] AS d{i}")
        else:
            raise QueryError("group_by", f"{g!r}: use customer, subject, meter or dimensions.<key>")
        names.append(g)
    for g in extra:
        if g not in _EXTRA:
            raise ValueError(f"extra: {g!r} is not a column of the fair-share path")
        select.append(g)
        names.append(g)
    where = ["tenant = {tenant:String}"]
    time_range(q.start, q.end, where, params)
    if q.start is not None and q.end is not None and q.end <= q.start:
        raise QueryError("to", "must be after `from`")
    if q.customer is not None:
        where.append("customer = {customer:String}")
        params["customer"] = q.customer
    if q.subject is not None:
        where.append("subject = {subject:String}")
        params["subject"] = q.subject
    if q.meters:
        where.append("meter IN {meters:Array(String)}")
        params["meters"] = list(q.meters)
    keys = [*select, "currency"]
    key_names = [s.rsplit(" AS ", 1)[-1] for s in keys]
    sql = (
        f"SELECT {', '.join(keys)}, sum(toDecimal256(quantity, 12)), sum(toDecimal256(amount, 18)), count() "
        f"FROM {db}.rated_usage FINAL WHERE {' AND '.join(where)} "
        f"GROUP BY {', '.join(key_names)} ORDER BY {', '.join(key_names)}"
    )
    return sql, params, names


def time_range(start: datetime | None, end: datetime | None, where: list[str], params: dict[str, Any]) -> None:
    """Add `start <= time < end` (either side optional) to a query's conditions, as parameters."""
    if start is not None:
        where.append("time >= {start:DateTime64(3, 'UTC')}")
        params["start"] = start.astimezone(UTC).replace(tzinfo=None)
    if end is not None:
        where.append("time < {end:DateTime64(3, 'UTC')}")
        params["end"] = end.astimezone(UTC).replace(tzinfo=None)


def window_bounds(ts: int, window: Window, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Start and end of the window that starts at unix time `ts` in `zone` (DST-aware: days may be 23/25 h)."""
    start = datetime.fromtimestamp(ts, zone)
    if window == "hour":
        end = (start.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
    elif window == "day":
        nxt = start.date() + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    else:
        days = monthrange(start.year, start.month)[1]
        nxt = start.date().replace(day=1) + timedelta(days=days)
        end = datetime(nxt.year, nxt.month, 1, tzinfo=zone)
    return start, end


def _dec(value: Any) -> str:
    """Exact decimal text without trailing zeros (no context involved: nothing is rounded)."""
    text = format(value if isinstance(value, Decimal) else Decimal(str(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _record(row: tuple, names: list[str], q: UsageQuery, zone: ZoneInfo) -> dict[str, Any]:
    """One row of `plan_usage`'s SQL as a row of GET /v1/usage (exact decimal text)."""
    rec: dict[str, Any] = {}
    dims: dict[str, str] = {}
    for i, name in enumerate(names):
        value = row[i]
        if name == "window":
            start, end = window_bounds(int(value), q.window, zone)  # type: ignore[arg-type]
            rec["window_start"], rec["window_end"] = start.isoformat(), end.isoformat()
        elif name.startswith("dimensions."):
            dims[name.removeprefix("dimensions.")] = value
        else:
            rec[name] = value
    if dims:
        rec["dimensions"] = dims
    i = len(names)
    rec["currency"] = row[i]
    rec["quantity"], rec["amount"], rec["events"] = _dec(row[i + 1]), _dec(row[i + 2]), int(row[i + 3])
    return rec


Pool = tuple[str, str, str, str]  # customer, meter, currency, billing period
PoolSubjects = dict[str, tuple[Decimal, Decimal]]  # subject -> quantity and streamed amount in the period


def fair_amounts(cells: list[dict[str, Any]], pools: Mapping[Pool, PoolSubjects]) -> None:
    """Replace each cell's streamed amount by its fair share, in place. Pure.

    A cell is usage of one subject of one customer, meter, currency and billing period (and whatever else was
    asked: a day, a dimension). `pools` has, per (customer, meter, currency, period), every subject's quantity
    and streamed amount in the whole period. The period's amount of the customer and meter is rounded to the
    currency's minor unit, as its invoice line would be, and shared among its subjects by quantity, then each
    subject's share among its cells by quantity (`billing.allocation.cell_shares`, the rule of the invoices'
    per-user section, with usage without a subject named "(no subject)" as there). So no share is negative
    whatever volume pricing did to the per-event deltas, and the shares of a period add up exactly to the
    customer's rounded amount. A pool the rule cannot share (a negative quantity, an unknown currency) keeps
    its streamed amounts.
    """
    from meterstream.invoice_emitter.issue import NO_SUBJECT

    grouped: dict[Pool, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, c in enumerate(cells):
        grouped[(c["customer"], c["meter"], c["currency"], c["period"])][c["subject"]].append(i)
    for pool, subjects in grouped.items():
        known = pools.get(pool, {})
        total = Decimal(0)
        for _, amount in known.values():
            total = EXACT.add(total, amount)
        quantities = {(s or NO_SUBJECT): qty for s, (qty, _) in known.items()}
        try:
            shares = cell_shares(round_money(total, pool[2]), quantities, {
                (s or NO_SUBJECT): [Decimal(cells[i]["quantity"]) for i in idx] for s, idx in subjects.items()
            }, pool[2])  # fmt: skip
        except ValueError:
            continue
        for s, idx in subjects.items():
            for i, amount in zip(idx, shares[s or NO_SUBJECT], strict=True):
                cells[i]["amount"] = _dec(amount)


class UsageQueries:
    """Reads for the API. `client` may be injected (tests: an embedded chdb client); else opened lazily."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self.db = settings.clickhouse_database
        self._client = client
        self._injected = client is not None
        self._lock = threading.Lock()

    def configured(self) -> bool:
        """Is there a ClickHouse to read (an injected client, or an endpoint in the settings)?"""
        return self._injected or self.target() is not None

    def target(self) -> str | None:
        url = self.settings.clickhouse_url
        if url and url.startswith(("http://", "https://")):
            return url
        port = self.settings.clickhouse_http_port
        return f"http://{self.settings.clickhouse_http_host}:{port}" if port else None

    def client(self) -> Any:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                dsn = self.target()
                if dsn is None:
                    raise ClickHouseUnavailable("no ClickHouse HTTP endpoint configured")
                import clickhouse_connect

                try:
                    self._client = clickhouse_connect.get_client(
                        dsn=dsn,
                        connect_timeout=3,
                        send_receive_timeout=30,
                        autogenerate_session_id=False,
                        **self._front_credentials(dsn),
                    )
                except Exception as exc:
                    raise ClickHouseUnavailable(str(exc)[:300]) from None
            return self._client

    def _front_credentials(self, dsn: str) -> dict[str, Any]:
        """On the embedded store's front: its internal user, read-only (it reads every tenant; every query here
        is scoped by tenant in SQL). A server URL carries its own credentials."""
        if dsn == self.settings.clickhouse_url:
            return {}
        from meterstream.aggregation.http_front import INTERNAL_USER, writer_password

        password = writer_password(self.settings)
        return {"username": INTERNAL_USER, "password": password, "settings": {"readonly": 2}} if password else {}

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """Rows of a read (`{name:Type}` placeholders, values in `params`); ClickHouseUnavailable on failure."""
        return self._query(sql, params)

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        client = self.client()
        try:
            return client.query(sql, parameters=params, settings=_FINAL).result_rows
        except Exception as exc:
            if not self._injected:
                self._client = None  # reconnect next time
            raise ClickHouseUnavailable(str(exc)[:300]) from None

    def ping(self) -> tuple[bool, str]:
        try:
            rows = self._query("SELECT version()", {})
            return True, f"ClickHouse {rows[0][0]}"
        except ClickHouseUnavailable as exc:
            return False, str(exc)

    def usage(self, q: UsageQuery) -> list[dict[str, Any]]:
        """Rows of GET /v1/usage. Grouped by subject, a row's amount is the subject's fair share of its
        customer's amount (`fair_amounts`), not the sum of its events' streamed amounts."""
        if "subject" in q.group_by:
            return self._usage_by_subject(q)
        sql, params, names = plan_usage(q, self.db)
        zone = check_tz(q.tz)
        return [_record(row, names, q, zone) for row in self._query(sql, params)]

    def _usage_by_subject(self, q: UsageQuery) -> list[dict[str, Any]]:
        """The asked rows cut finer (per customer, meter and billing period too), each given its fair share
        of the period's amount of its customer and meter (read in a second query over the whole periods,
        every subject), then added up to the asked grouping."""
        extra = tuple(g for g in _EXTRA if g not in q.group_by)
        sql, params, names = plan_usage(q, self.db, extra)
        zone = check_tz(q.tz)
        rows = self._query(sql, params)
        cells = [_record(row, names, q, zone) for row in rows]
        if not cells:
            return []
        pools = self._period_subjects(q.tenant, cells)
        fair_amounts(cells, pools)
        asked = len(names) - len(extra)
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row, cell in zip(rows, cells, strict=True):
            key = (*row[:asked], cell["currency"])
            for g in extra:
                del cell[g]
            got = out.get(key)
            if got is None:
                out[key] = cell
                continue
            for field in ("quantity", "amount"):
                got[field] = _dec(EXACT.add(Decimal(got[field]), Decimal(cell[field])))
            got["events"] += cell["events"]
        return [out[k] for k in sorted(out)]

    def _period_subjects(self, tenant: str, cells: list[dict[str, Any]]) -> dict[Pool, PoolSubjects]:
        """Quantity and streamed amount per subject of every (customer, meter, currency, period) of `cells`, over
        the whole period and all subjects."""
        sql = (
            "SELECT customer, meter, currency, period, subject, sum(toDecimal256(quantity, 12)), "
            f"sum(toDecimal256(amount, 18)) FROM {self.db}.rated_usage FINAL "
            "WHERE tenant = {tenant:String} AND customer IN {customers:Array(String)} "
            "AND meter IN {meters:Array(String)} AND period IN {periods:Array(String)} "
            "GROUP BY customer, meter, currency, period, subject"
        )
        params = {"tenant": tenant, **{f"{k}s": sorted({c[k] for c in cells}) for k in _EXTRA}}
        pools: dict[Pool, PoolSubjects] = defaultdict(dict)
        for customer, meter, currency, period, subject, qty, amount in self._query(sql, params):
            pools[(customer, meter, currency, period)][subject] = (_decimal(qty), _decimal(amount))
        return pools

    def running_amount(self, tenant: str, customer: str, period: str) -> dict[str, Any]:
        """The period's streamed (running) amount of one customer, per meter and per currency."""
        sql = (
            "SELECT meter, currency, sum(toDecimal256(quantity, 12)), sum(toDecimal256(amount, 18)), count() "
            f"FROM {self.db}.rated_usage FINAL "
            "WHERE tenant = {tenant:String} AND customer = {customer:String} AND period = {period:String} "
            "GROUP BY meter, currency ORDER BY meter, currency"
        )
        rows = self._query(sql, {"tenant": tenant, "customer": customer, "period": period})
        meters = []
        totals: dict[str, Decimal] = {}
        for meter, currency, qty, amount, n in rows:
            amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
            meters.append({"meter": meter, "currency": currency, "quantity": _dec(qty), "amount": _dec(amount),
                           "events": int(n)})  # fmt: skip
            totals[currency] = EXACT.add(totals.get(currency, Decimal(0)), amount)
        return {
            "tenant": tenant,
            "customer": customer,
            "period": period,
            "meters": meters,
            "totals": [
                {"currency": c, "amount": _dec(t), "amount_rounded": str(round_money(t, c))}
                for c, t in sorted(totals.items())
            ],
        }
