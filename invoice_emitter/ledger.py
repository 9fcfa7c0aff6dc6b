"""What has been invoiced: closed periods, stored documents and billed lines (ClickHouse I/O only)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

LINE_COLUMNS = [
    "tenant", "customer", "period", "line_no", "meter", "description", "quantity", "amount", "currency",
    "closed_at", "line_key", "applies_to", "kind",
]  # fmt: skip


def closed_periods(client: Client, db: str) -> list[str]:
    return [r[0] for r in client.query(f"SELECT DISTINCT period FROM {db}.period_closes ORDER BY period").result_rows]


def mark_closed(client: Client, db: str, period: str) -> None:
    client.insert(f"{db}.period_closes", [[period, datetime.now(UTC)]], column_names=["period", "closed_at"])


def stored_invoices(client: Client, db: str, period: str) -> list[dict[str, Any]]:
    """The documents a close wrote, unchanged (final)."""
    rows = client.query(
        f"SELECT document FROM {db}.invoices FINAL WHERE period = {{p:String}} ORDER BY tenant, customer",
        parameters={"p": period},
    ).result_rows
    return [orjson.loads(r[0]) for r in rows]


def billed_lines(
    client: Client, db: str, applies_to: str, before: str
) -> dict[tuple[str, str], dict[str, tuple[str, Decimal, Decimal]]]:
    """Per customer and line key: (meter, quantity, amount) billed for `applies_to` by closes before `before`."""
    rows = client.query(
        f"""
        SELECT tenant, customer, line_key, any(meter), sum(quantity), sum(amount)
        FROM {db}.invoice_lines FINAL
        WHERE applies_to = {{q:String}} AND period < {{p:String}}
        GROUP BY tenant, customer, line_key
        """,
        parameters={"q": applies_to, "p": before},
    ).result_rows
    out: dict[tuple[str, str], dict[str, tuple[str, Decimal, Decimal]]] = {}
    for tenant, customer, key, meter, quantity, amount in rows:
        out.setdefault((tenant, customer), {})[key] = (meter, quantity, amount)
    return out


def billed_quantities(client: Client, db: str, applies_to: str, before: str) -> dict[tuple[str, str, str], Decimal]:
    """Per (tenant, customer, meter): the quantity billed for `applies_to` by closes before `before`."""
    rows = client.query(
        f"""
        SELECT tenant, customer, meter, sum(quantity) FROM {db}.invoice_lines FINAL
        WHERE applies_to = {{q:String}} AND period < {{p:String}}
        GROUP BY tenant, customer, meter
        """,
        parameters={"q": applies_to, "p": before},
    ).result_rows
    return {(t, c, m): q for t, c, m, q in rows}


def store_invoices(client: Client, db: str, invoices: list[dict[str, Any]]) -> None:
    """Insert documents and their lines; the tables replace rows of the same invoice and line number."""
    if not invoices:
        return
    now = datetime.now(UTC)
    client.insert(
        f"{db}.invoices",
        [
            [d["tenant"], d["customer"], d["period"], d["invoice_id"], d["plan"], d["currency"],
             Decimal(d["subtotal"]), Decimal(d["total"]), len(d["lines"]), orjson.dumps(d).decode(), now]
            for d in invoices
        ],
        column_names=["tenant", "customer", "period", "invoice_id", "plan", "currency", "subtotal", "total",
                      "line_count", "document", "closed_at"],
    )  # fmt: skip
    lines = [
        [d["tenant"], d["customer"], d["period"], line["line_no"], line["meter"], line["description"],
         Decimal(line["quantity"]), Decimal(line["amount"]), d["currency"], now,
         line.get("line_key", line["meter"]), line.get("applies_to", d["period"]), line.get("kind", "usage")]
        for d in invoices
        for line in d["lines"]
    ]  # fmt: skip
    if lines:
        client.insert(f"{db}.invoice_lines", lines, column_names=LINE_COLUMNS)
