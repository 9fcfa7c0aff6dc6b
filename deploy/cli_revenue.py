"""`meterstream revenue --tenant T --month YYYY-MM`: MRR, ARR, churn and net revenue retention of a month from
the subscriptions in the entity store (`billing.revenue_metrics`; docs/analytics.md)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterstream.deploy.cli_common import call

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("revenue", help="MRR, ARR, churn and net revenue retention of a month, from subscriptions")
    def revenue(
        tenant: Annotated[str, typer.Option()],
        month: Annotated[str, typer.Option(help="YYYY-MM: MRR at its first instant (UTC) and at the next month's")],
        json: Annotated[bool, typer.Option("--json", help="one JSON object per currency, one per line")] = False,
    ) -> int:
        return call(_revenue, locals())


def _month(text: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--month: YYYY-MM (got {text!r})") from None
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, end


def _revenue(args: Any, settings: Settings) -> int:
    from meterstream.billing.revenue_metrics import movements, mrr_by_customer
    from meterstream.entities.db import make_engine, session_factory
    from meterstream.entities.plans import find_plan_row, plan_doc
    from meterstream.entities.subscriptions import list_subscriptions
    from meterstream.rating.money import round_money

    try:
        start, end = _month(args.month)
    except ValueError as exc:
        print(f"meterstream revenue: error: {exc}", file=sys.stderr)
        return 1
    sf = session_factory(make_engine(settings))
    cache: dict[tuple[str, int | None], object] = {}

    def plan(code: str, version: int | None, at: datetime):  # type: ignore[no-untyped-def]
        if (code, version) not in cache:  # a phase's version, or an add-on's newest (history kept when deleted)
            with sf() as s:
                row = find_plan_row(s, args.tenant, code, version, include_deleted=version is not None)
                if row is None:
                    raise RuntimeError(f"plan {code!r} (version {version or 'newest'}) not found")
                cache[(code, version)] = plan_doc(row)
        return cache[(code, version)]

    subs = list_subscriptions(sf, args.tenant)
    result = movements(mrr_by_customer(subs, start, plan), mrr_by_customer(subs, end, plan))
    for currency, m in sorted(result.items()):
        money = {k: str(round_money(getattr(m, k), currency)) for k in
                 ("start_mrr", "end_mrr", "new", "expansion", "contraction", "churned", "arr")}  # fmt: skip
        ratio = {k: None if v is None else str(v.quantize(Decimal("0.0001")))
                 for k, v in (("customer_churn_rate", m.customer_churn_rate),
                              ("net_revenue_retention", m.net_revenue_retention))}  # fmt: skip
        row = {"tenant": args.tenant, "month": args.month, "currency": currency, **money, **ratio,
               "customers_start": m.customers_start, "customers_end": m.customers_end,
               "customers_churned": m.customers_churned, "churned_customers": m.churned_customers}  # fmt: skip
        if args.json:
            print(json.dumps(row))
        else:
            print(" ".join(f"{k}={v}" for k, v in row.items() if k not in ("tenant", "month")))
    return 0
