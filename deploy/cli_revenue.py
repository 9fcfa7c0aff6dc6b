"""`meterstream revenue --tenant T --month YYYY-MM [--store]`: MRR, ARR, churn and net revenue retention of a month
from the subscriptions in the entity store (`billing.revenue_metrics`; docs/analytics.md). `--store` also writes the
figures to ClickHouse's `revenue_monthly` (`aggregation.revenue_table`), as the daily billing run does for the
current and the previous month of every tenant (`store_recent`)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterstream.deploy.cli_common import call

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from sqlalchemy.orm import sessionmaker

    from meterstream.billing.revenue_metrics import Movements
    from meterstream.schemas.settings import Settings

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
LAST_MONTH = (9999, 11)  # the last month whose end (the first day of the next) a date can hold
_MONEY = ("start_mrr", "end_mrr", "new", "expansion", "contraction", "churned", "arr")


def register(app: typer.Typer) -> None:
    @app.command("revenue", help="MRR, ARR, churn and net revenue retention of a month, from subscriptions")
    def revenue(
        tenant: Annotated[str, typer.Option()],
        month: Annotated[str, typer.Option(help="YYYY-MM: MRR at its first instant (UTC) and at the next month's")],
        json: Annotated[bool, typer.Option("--json", help="one JSON object per currency, one per line")] = False,
        store: Annotated[bool, typer.Option("--store", help="also write it to ClickHouse's revenue_monthly")] = False,
    ) -> int:
        return call(_revenue, locals())


def month_bounds(text: str) -> tuple[datetime, datetime]:
    """The first instant (UTC) of month `text` (YYYY-MM, two-digit month) and of the next; ValueError naming
    `--month` otherwise."""
    m = _MONTH.match(text)
    if m is None:
        raise ValueError(f"--month: must be YYYY-MM with a month 01-12 (got {text!r})")
    year, month = int(m.group(1)), int(m.group(2))
    if year < 1:
        raise ValueError(f"--month: year must be 0001 or later (got {text!r})")
    if (year, month) > LAST_MONTH:  # its end, the next month's first day, is no date: "year 10000 is out of range"
        raise ValueError(f"--month: must be a month from 0001-01 to 9999-11, e.g. 2026-11 (got {text!r}: the month "
                         "after it, where it ends, is no date)")  # fmt: skip
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, start.replace(year=year + month // 12, month=month % 12 + 1)


def report_row(tenant: str, month: str, currency: str, m: Movements) -> dict[str, Any]:
    """One currency's figures as printed and stored: money rounded once to the currency's minor unit, the ratios
    to 4 places (None without customers or MRR at the start)."""
    from meterstream.rating.money import round_money

    money = {k: str(round_money(getattr(m, k), currency)) for k in _MONEY}
    ratio = {k: None if v is None else str(v.quantize(Decimal("0.0001")))
             for k, v in (("customer_churn_rate", m.customer_churn_rate),
                          ("net_revenue_retention", m.net_revenue_retention))}  # fmt: skip
    return {"tenant": tenant, "month": month, "currency": currency, **money, **ratio,
            "customers_start": m.customers_start, "customers_end": m.customers_end,
            "customers_churned": m.customers_churned, "churned_customers": m.churned_customers}  # fmt: skip


def tenant_report(sf: sessionmaker, tenant: str, month: str) -> list[dict[str, Any]]:
    """The tenant's figures for `month` (YYYY-MM), one row per currency in currency order; [] when it has no
    subscription in effect at the month's start or end."""
    from meterstream.billing.revenue_metrics import movements, mrr_by_customer
    from meterstream.entities.figures import plan_lookup
    from meterstream.entities.subscriptions import list_subscriptions

    start, end = month_bounds(month)
    plan = plan_lookup(sf, tenant)
    subs = list_subscriptions(sf, tenant)
    result: dict[str, Movements] = movements(mrr_by_customer(subs, start, plan), mrr_by_customer(subs, end, plan))
    return [report_row(tenant, month, currency, m) for currency, m in sorted(result.items())]


def tenants_with_subscriptions(sf: sessionmaker) -> list[str]:
    from sqlalchemy import select

    from meterstream.entities.subscriptions import SubscriptionRow

    with sf() as s:
        return sorted(s.scalars(select(SubscriptionRow.tenant).distinct()))


def store_rows(client: Any, db: str, tenant: str, month: str, rows: list[dict[str, Any]], now: datetime) -> int:
    """Write a tenant's month (`tenant_report`) to `revenue_monthly`; a currency stored before that has no row
    now (its last subscription deleted) is written as zeros, so no stale figure stays. Rows written."""
    from meterstream.aggregation import revenue_table
    from meterstream.billing.revenue_metrics import Movements

    start, _ = month_bounds(month)
    stored = client.query(
        f"SELECT DISTINCT currency FROM {db}.{revenue_table.TABLE} FINAL WHERE tenant = {{t:String}} "
        "AND month = {m:Date}",
        parameters={"t": tenant, "m": start.date()},
    ).result_rows
    have = {r["currency"] for r in rows}
    gone = [report_row(tenant, month, c, Movements(c)) for (c,) in stored if c not in have]
    return revenue_table.insert(client, db, revenue_table.table_rows([*rows, *gone], now))


def store_recent(sf: sessionmaker, client: Any, db: str, now: datetime) -> dict[str, Any]:
    """The billing run's step: the previous and the current month (of `now`, UTC) of every tenant with
    subscriptions, written to `revenue_monthly`."""
    current = f"{now.astimezone(UTC):%Y-%m}"
    months = [_previous_month(current), current]
    tenants = tenants_with_subscriptions(sf)
    written = 0
    for tenant in tenants:
        for month in months:
            written += store_rows(client, db, tenant, month, tenant_report(sf, tenant, month), now)
    return {"months": months, "tenants": len(tenants), "rows": written}


def _previous_month(month: str) -> str:
    year, m = int(month[:4]), int(month[5:7])
    return f"{year - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"


def _revenue(args: Any, settings: Settings) -> int:
    from meterstream.entities.db import make_engine, session_factory

    try:
        month_bounds(args.month)
    except ValueError as exc:
        print(f"meterstream revenue: error: {exc}", file=sys.stderr)
        return 1
    sf = session_factory(make_engine(settings))
    rows = tenant_report(sf, args.tenant, args.month)
    if args.store:
        from meterstream.deploy.billing_run import store_client

        client = store_client(settings)
        written = store_rows(client, settings.clickhouse_database, args.tenant, args.month, rows, datetime.now(UTC))
        print(f"meterstream revenue: {written} rows written to {settings.clickhouse_database}.revenue_monthly",
              file=sys.stderr)  # fmt: skip
    if not rows:
        start, end = month_bounds(args.month)
        note = (f"tenant {args.tenant} has no subscription in effect on {start:%Y-%m-%d} or {end:%Y-%m-%d}: "
                "no recurring revenue")  # fmt: skip
        if args.json:  # one object all the same, so a script reading the output gets an answer
            print(json.dumps({"tenant": args.tenant, "month": args.month, "currency": None,
                              **{k: None for k in _MONEY}, "customer_churn_rate": None,
                              "net_revenue_retention": None, "customers_start": 0, "customers_end": 0,
                              "customers_churned": 0, "churned_customers": [], "note": note}))  # fmt: skip
        else:
            print(note)
        return 0
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(" ".join(f"{k}={v}" for k, v in row.items() if k not in ("tenant", "month")))
    return 0
