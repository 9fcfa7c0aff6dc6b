"""`revenue_monthly`: MRR, ARR, churn and net revenue retention per tenant, month and currency, for analysts.

The figures are `billing.revenue_metrics`' (from the subscriptions in the entity store, which ClickHouse does not
hold), as `meterstream revenue` prints them: money rounded once to the currency's minor unit, ratios to 4 places.
The daily billing run (`deploy/billing_run.py`) writes the current and the previous month of every tenant with
subscriptions, `meterstream revenue --store` the month asked. A month written again replaces its row
(ReplacingMergeTree by `computed_at`, sort key tenant, month, currency): read it with FINAL. A currency stored for a
month that has no figures any more (its subscriptions deleted) is written as zeros by the next write of that month
(`deploy/cli_revenue.store_rows`), not left with old figures.

Its `tenant` column puts it under the embedded front's tenant filters like every table (`tenant_access`). The DDL
is appended to `views.statements` (run by `ddl.create_schema` and on every upgrade): `CREATE TABLE IF NOT EXISTS`,
so it is created in an existing store and left alone after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

TABLE = "revenue_monthly"
DDL = """CREATE TABLE IF NOT EXISTS {db}.revenue_monthly
(
    tenant              LowCardinality(String),
    month               Date,
    currency            LowCardinality(String),
    start_mrr           Decimal(38, 6),
    end_mrr             Decimal(38, 6),
    new_mrr             Decimal(38, 6),
    expansion_mrr       Decimal(38, 6),
    contraction_mrr     Decimal(38, 6),
    churned_mrr         Decimal(38, 6),
    arr                 Decimal(38, 6),
    customers_start     UInt32,
    customers_end       UInt32,
    customers_churned   UInt32,
    customer_churn_rate Nullable(Decimal(18, 4)),
    net_revenue_retention Nullable(Decimal(18, 4)),
    churned_customers   Array(String),
    computed_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (tenant, month, currency)"""

# the table's columns -> the keys of `meterstream revenue --json`'s rows (`deploy/cli_revenue.report_rows`)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant", "tenant"), ("month", "month"), ("currency", "currency"), ("start_mrr", "start_mrr"),
    ("end_mrr", "end_mrr"), ("new_mrr", "new"), ("expansion_mrr", "expansion"), ("contraction_mrr", "contraction"),
    ("churned_mrr", "churned"), ("arr", "arr"), ("customers_start", "customers_start"),
    ("customers_end", "customers_end"), ("customers_churned", "customers_churned"),
    ("customer_churn_rate", "customer_churn_rate"), ("net_revenue_retention", "net_revenue_retention"),
    ("churned_customers", "churned_customers"),
)  # fmt: skip
_RATIOS = ("customer_churn_rate", "net_revenue_retention")
_COUNTS = ("customers_start", "customers_end", "customers_churned")


def statements(db: str) -> list[str]:
    """The table's DDL for database `db` (idempotent)."""
    return [DDL.replace("{db}", db)]


def _value(column: str, value: Any) -> Any:
    if column == "month":
        return date(int(value[:4]), int(value[5:7]), 1)
    if column in _RATIOS:
        return None if value is None else Decimal(value)
    if column in _COUNTS or column in ("tenant", "currency", "churned_customers"):
        return value
    return Decimal(value)


def table_rows(report: Iterable[Mapping[str, Any]], computed_at: datetime) -> list[list[Any]]:
    """`meterstream revenue`'s rows (one per tenant, month and currency; `month` YYYY-MM, money and ratios as
    decimal text) as rows of the table, in `COLUMNS` order then `computed_at`. Rows without a currency (a tenant
    without subscriptions) are left out."""
    at = computed_at.astimezone(UTC)
    return [[_value(col, row[key]) for col, key in COLUMNS] + [at] for row in report if row["currency"] is not None]


def insert(client: Any, db: str, rows: Sequence[Sequence[Any]]) -> int:
    """Write rows of `table_rows` (one insert); the number written."""
    if rows:
        client.insert(f"{db}.{TABLE}", [list(r) for r in rows],
                      column_names=[c for c, _ in COLUMNS] + ["computed_at"])  # fmt: skip
    return len(rows)
