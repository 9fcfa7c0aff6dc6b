"""Period close: deduplicated usage from ClickHouse -> invoice documents (files, table, topic).

Idempotent: documents are deterministic (no wall clock inside), files are rewritten atomically, the
invoices table is keyed by (tenant, customer, period), and topic consumers key on `invoice_id`.
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from aggregation.usage_query import MeterUsage, UsageRecord, period_records, period_usage
from invoice_emitter.document import build_invoice
from invoice_emitter.telecom_lines import telecom_lines
from rating.catalog import Catalog

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class CloseResult:
    period: str
    invoices: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)  # lines whose streamed amount differs

    @property
    def totals_by_currency(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            out[inv["currency"]] += Decimal(inv["total"])
        return dict(out)


def close_period(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    out_dir: Path,
    producer: Any = None,
    topic: str | None = None,
    progress: bool = True,
) -> CloseResult:
    """Compute and write every invoice of `period` (YYYY-MM); safe to run again."""
    if not PERIOD_RE.match(period):
        raise ValueError(f"period: must be YYYY-MM, got {period!r}")
    usage = period_usage(client, db, period)
    groups: dict[tuple[str, str, str], list[MeterUsage]] = defaultdict(list)
    for u in usage:
        groups[(u.tenant, u.customer, u.plan)].append(u)
    telecom_plans = sorted({u.plan for u in usage if (p := catalog.plans.get(u.plan)) and p.telecom is not None})
    records: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for r in period_records(client, db, period, telecom_plans):
        records[(r.tenant, r.customer)].append(r)
    result = CloseResult(period)
    folder = out_dir / period
    total = len(groups)
    for n, ((tenant, customer, plan_id), rows) in enumerate(sorted(groups.items()), 1):
        plan = catalog.plans.get(plan_id)
        if plan is None:
            raise ValueError(f"usage of {tenant}/{customer} was rated with plan {plan_id!r}, not in the catalog")
        extra: list[dict[str, Any]] = []
        if plan.telecom is not None:
            extra, rerated, streamed = telecom_lines(plan, records[(tenant, customer)])
            if rerated != streamed:
                result.unreconciled.append(f"{tenant}/{customer}/telecom")
        doc = build_invoice(tenant, customer, period, plan, rows, extra)
        result.invoices.append(doc)
        result.unreconciled += [
            f"{tenant}/{customer}/{line['meter']}"
            for line in doc["lines"]
            if "streamed_amount" in line and Decimal(line["precise_amount"]) != Decimal(line["streamed_amount"])
        ]
        result.files.append(_write_atomic(folder / tenant / f"{customer}.json", doc))
        if progress and (n % 1000 == 0 or n == total):
            print(f"\r[close] {period}: {n}/{total} invoices", end="" if n < total else "\n", file=sys.stderr)
    _store(client, db, result.invoices)
    if producer is not None and topic:
        for doc in result.invoices:
            producer.produce(topic, key=f"{doc['tenant']}/{doc['customer']}".encode(), value=orjson.dumps(doc))
            producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("invoices topic: not every document was delivered")
    return result


def _write_atomic(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)
    return path


def _store(client: Client, db: str, invoices: list[dict[str, Any]]) -> None:
    if not invoices:
        return
    now = datetime.now(UTC)
    client.insert(
        f"{db}.invoices",
        [
            [
                d["tenant"],
                d["customer"],
                d["period"],
                d["invoice_id"],
                d["plan"],
                d["currency"],
                Decimal(d["subtotal"]),
                Decimal(d["total"]),
                len(d["lines"]),
                orjson.dumps(d).decode(),
                now,
            ]
            for d in invoices
        ],
        column_names=[
            "tenant",
            "customer",
            "period",
            "invoice_id",
            "plan",
            "currency",
            "subtotal",
            "total",
            "line_count",
            "document",
            "closed_at",
        ],
    )
    lines = [
        [
            d["tenant"],
            d["customer"],
            d["period"],
            line["line_no"],
            line["meter"],
            line["description"],
            Decimal(line["quantity"]),
            Decimal(line["amount"]),
            d["currency"],
            now,
        ]
        for d in invoices
        for line in d["lines"]
    ]
    if lines:
        client.insert(
            f"{db}.invoice_lines",
            lines,
            column_names=[
                "tenant",
                "customer",
                "period",
                "line_no",
                "meter",
                "description",
                "quantity",
                "amount",
                "currency",
                "closed_at",
            ],
        )
