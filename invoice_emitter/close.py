"""Period close: deduplicated usage from ClickHouse -> invoice documents (files, table, topic).

A period is closed once. Closing it again re-issues the stored documents unchanged (final invoices
never change); usage of a closed period that arrives later is billed as adjustment lines on the next
close (see `adjustments.py`). Documents are deterministic (no wall clock inside), files are rewritten
atomically, tables are keyed by (tenant, customer, period), and topic consumers key on `invoice_id`.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord, period_records, period_usage
from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.document import MeterPricer, empty_invoice, invoice_and_differences, with_lines
from meterstream.invoice_emitter.files import DocumentFiles
from meterstream.invoice_emitter.ledger import (
    billed_lines,
    billed_quantities,
    closed_periods,
    mark_closed,
    store_invoices,
    stored_invoices,
)
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Catalog
from meterstream.rating.money import EXACT

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class CloseResult:
    period: str
    invoices: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)  # lines whose streamed amount differs
    reissued: bool = False  # the period was already closed: stored documents, unchanged

    @property
    def totals_by_currency(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            out[inv["currency"]] = EXACT.add(out[inv["currency"]], Decimal(inv["total"]))
        return dict(out)


def compute_invoices(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    only: set[tuple[str, str]] | None = None,
    finish: Callable[[tuple[str, str], dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Each customer's invoice for `period` from the usage in ClickHouse now; plus unreconciled lines.

    `finish(key, document)`, if given, gets each document as it is built and returns the one to keep.
    """
    usage = period_usage(client, db, period)
    if only is not None:
        usage = [u for u in usage if (u.tenant, u.customer) in only]
    groups: dict[tuple[str, str, str], list[MeterUsage]] = defaultdict(list)
    for u in usage:
        groups[(u.tenant, u.customer, u.plan)].append(u)
    telecom_plans = sorted({u.plan for u in usage if (p := catalog.plans.get(u.plan)) and p.telecom is not None})
    records: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for r in period_records(client, db, period, telecom_plans):
        records[(r.tenant, r.customer)].append(r)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    unreconciled: list[str] = []
    pricer = MeterPricer()  # each distinct (price, quantity) of this close is quoted once
    for (tenant, customer, plan_id), rows in sorted(groups.items()):
        plan = catalog.plans.get(plan_id)
        if plan is None:
            raise ValueError(f"usage of {tenant}/{customer} was rated with plan {plan_id!r}, not in the catalog")
        if (tenant, customer) in docs:
            raise ValueError(f"{tenant}/{customer} has usage under two plans in {period}; not supported yet")
        extra: list[dict[str, Any]] = []
        if plan.telecom is not None:
            extra, rerated, streamed = telecom_lines(plan, records[(tenant, customer)])
            if rerated != streamed:
                unreconciled.append(f"{tenant}/{customer}/telecom")
        doc, differ = invoice_and_differences(tenant, customer, period, plan, rows, extra, pricer)
        docs[(tenant, customer)] = doc if finish is None else finish((tenant, customer), doc)
        unreconciled += [f"{tenant}/{customer}/{meter}" for meter in differ]
    return docs, unreconciled


def late_adjustments(
    client: Client, db: str, catalog: Catalog, closed: str, period: str
) -> dict[tuple[str, str], tuple[str, str, list[dict[str, Any]]]]:
    """Adjustment lines, per customer, for usage of `closed` not billed by closes before `period`."""
    now = {(u.tenant, u.customer, u.meter): u for u in period_usage(client, db, closed)}
    billed = billed_quantities(client, db, closed, period)
    changed = {
        (t, c) for (t, c, m) in set(now) | set(billed)
        if (now[(t, c, m)].quantity if (t, c, m) in now else Decimal(0)) != billed.get((t, c, m), Decimal(0))
    }  # fmt: skip
    if not changed:
        return {}
    docs, _ = compute_invoices(client, db, catalog, closed, only=changed)
    lines_billed = billed_lines(client, db, closed, period)
    out = {}
    for key in sorted(changed):
        doc = docs.get(key)
        if doc is None:  # usage never leaves the deduplicated table; nothing to adjust against
            continue
        lines = adjustment_lines(doc["lines"], lines_billed.get(key, {}), closed, doc["currency"])
        if lines:
            out[key] = (doc["plan"], doc["currency"], lines)
    return out


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
    """Close `period` (YYYY-MM): compute, store and write every invoice; a closed period is re-issued."""
    if not PERIOD_RE.match(period):
        raise ValueError(f"period: must be YYYY-MM, got {period!r}")
    with _gc_paused():
        return _close(client, db, catalog, period, out_dir, producer, topic, progress)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a close: it builds millions of long-lived, acyclic objects (the
    documents), and every full collection would walk all of them again (15-25% of a large close).
    Reference counting still frees everything the close drops; cycles wait until the close returns. The
    one young-generation pass over what the close allocated (which the first allocation after it would
    trigger anyway) runs here, so its cost stays in the close."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect(0)


def _close(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    out_dir: Path,
    producer: Any,
    topic: str | None,
    progress: bool,
) -> CloseResult:
    closed = closed_periods(client, db)
    files = DocumentFiles(out_dir / period, progress)
    try:
        if period in closed:
            result = CloseResult(period, stored_invoices(client, db, period), reissued=True)
            for doc in result.invoices:
                files.add(doc)
        else:
            # late usage of closed periods first, so that each document is final when built: its file
            # is written while the close goes on
            late: dict[tuple[str, str], list[tuple[str, str, str, list[dict[str, Any]]]]] = defaultdict(list)
            for earlier in (p for p in closed if p < period):
                for key, (plan, currency, lines) in late_adjustments(client, db, catalog, earlier, period).items():
                    late[key].append((earlier, plan, currency, lines))

            def finish(key: tuple[str, str], doc: dict[str, Any]) -> dict[str, Any]:
                for earlier, _, currency, lines in late.pop(key, ()):
                    if doc["currency"] != currency:
                        raise ValueError(
                            f"{key[0]}/{key[1]}: late {earlier} usage in {currency}, invoice in {doc['currency']}"
                        )
                    doc = with_lines(doc, lines)
                files.add(doc)
                return doc

            docs, unreconciled = compute_invoices(client, db, catalog, period, finish=finish)
            for (tenant, customer), adjustments in sorted(late.items()):  # late usage only
                _, plan, currency, _ = adjustments[0]
                doc = empty_invoice(tenant, customer, period, plan, currency)
                docs[(tenant, customer)] = finish((tenant, customer), doc)
            result = CloseResult(period, [docs[k] for k in sorted(docs)], unreconciled=unreconciled)
            store_invoices(client, db, result.invoices)
            mark_closed(client, db, period)
        files.publish()
    except BaseException:
        files.abort()
        raise
    result.files = [out_dir / period / d["tenant"] / f"{d['customer']}.json" for d in result.invoices]
    if producer is not None and topic:
        for doc in result.invoices:
            producer.produce(topic, key=f"{doc['tenant']}/{doc['customer']}".encode(), value=orjson.dumps(doc))
            producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("invoices topic: not every document was delivered")
    return result
