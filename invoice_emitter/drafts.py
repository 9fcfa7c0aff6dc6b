"""Drafts kept current as usage arrives (issue #15 item 1): every open period's invoices as DRAFT records.

`refresh_drafts` computes, for every label still open for someone, each customer's invoice with the close's own
code in draft mode (`close.draft_period`: no number, nothing finalized, no finalization mark, no `period_closes`,
no ledger rows, no files) and upserts it into the invoice store (`Recorder.upsert_drafts`), where
GET /v1/invoices?status=draft lists it. The close later finalizes that same record (same invoice id, status
`finalized`, a number). Open labels: from the month after the newest label in `period_closes` (none: the
earliest month with usage) up to the current UTC month — so a period whose close waits (its end in some time
zone, customers in their grace period) keeps its drafts current, late usage included, until each customer's
invoice is issued; issued customers are left alone.

Only what changed is refreshed when that is cheap to know: ClickHouse numbers every insert into `rated_usage`
(block numbers grow with each insert, per partition), so the refresh keeps, per partition, the highest block
number it has read (`DraftState.marks`, from `system.parts`) and next time recomputes only the customers with
rows in parts holding newer blocks (`_part`; a merged part counts as new, which only refreshes more than
needed). Everything is refreshed when anything else could have changed a draft: the first time, a new label,
another label closed, or an entity write (customers, subscriptions, plans: `entity_outbox`'s newest sequence).
The marks are read BEFORE the usage, so rows inserted during a refresh are picked up by the next one.

On a ClickHouse cluster (`METERSTREAM_CLICKHOUSE_CLUSTER`, aggregation/cluster_ddl.py) the parts are those of
`rated_usage_local` on every replica, listed with `clusterAllReplicas(<cluster>, system.parts)`; they give the
months with usage (the open labels), and every refresh there is a full one: block numbers are counted per shard
and a replica may not have fetched a part yet, so no mark read on one host says what another host holds.

The state is a small JSON file (`<METERSTREAM_HOME>/billing/drafts-state.json`) written after a refresh
succeeds; without it the next refresh is a full one. Runs as `meterstream billing drafts` and, inside
`meterstream up`, every `METERSTREAM_DRAFT_REFRESH_SECONDS` (deploy/billing_run.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from sqlalchemy import func, select

from meterstream.invoice_emitter.close import draft_period
from meterstream.invoice_emitter.issue import Issuing
from meterstream.invoice_emitter.ledger import closed_periods
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import Catalog

Key = tuple[str, str]


@dataclass
class DraftState:
    """What the last refresh saw: `period_closes` labels, open labels, the entity write position and, per
    `rated_usage` partition, the highest block number read."""

    closed: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    entities: int = 0
    marks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DraftState | None:
        try:
            raw = orjson.loads(path.read_bytes())
            return cls(list(raw["closed"]), list(raw["labels"]), int(raw["entities"]),
                       {str(k): int(v) for k, v in raw["marks"].items()})  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # none, or unreadable: the next refresh is a full one

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(asdict(self)))
        tmp.replace(path)


@dataclass
class DraftRefresh:
    labels: list[str] = field(default_factory=list)
    full: bool = True
    customers: int | None = None  # customers refreshed (None: all)
    drafts: int = 0  # draft records written
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- pure ---------------------------------------------------------------------------------------------------


def _next_month(label: str) -> str:
    y, m = int(label[:4]), int(label[5:7])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def open_labels(closed: list[str], usage: list[str], now: datetime) -> list[str]:
    """Labels with drafts: after the newest closed one (none: from the earliest with usage) to `now`'s UTC month."""
    current = f"{now.astimezone(UTC):%Y-%m}"
    start = _next_month(max(closed)) if closed else min([*usage, current])
    out = []
    while start <= current:
        out.append(start)
        start = _next_month(start)
    return out


# --- I/O ----------------------------------------------------------------------------------------------------


def parts_source(cluster: str | None = None) -> tuple[str, str]:
    """(where the parts are listed, the table whose parts hold `rated_usage`'s rows): one server's
    `system.parts` and `rated_usage`; on `cluster`, every replica's (`clusterAllReplicas`) and `rated_usage_local`."""
    if not cluster:
        return "system.parts", "rated_usage"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ValueError(f"clickhouse_cluster: {cluster!r} is not a plain identifier")
    from meterstream.aggregation.cluster_ddl import local_table

    return f"clusterAllReplicas('{cluster}', system.parts)", local_table("rated_usage")


def usage_marks(client: Client, db: str, cluster: str | None = None) -> dict[str, int]:
    """Per partition of `rated_usage` (YYYYMM): the highest block number of its active parts (on a cluster: over
    every replica of every shard, which names the partitions but is no refresh mark: see the module docstring)."""
    source, table = parts_source(cluster)
    rows = client.query(
        f"SELECT partition_id, max(max_block_number) FROM {source} WHERE database = {{db:String}} "
        "AND table = {table:String} AND active GROUP BY partition_id",
        parameters={"db": db, "table": table},
    ).result_rows
    return {str(p): int(b) for p, b in rows}


def changed_customers(client: Client, db: str, marks: dict[str, int]) -> set[Key]:
    """Customers with rows in parts holding blocks newer than `marks` (a superset of those with new usage)."""
    parts = [
        name for name, partition, top in client.query(
            "SELECT name, partition_id, max_block_number FROM system.parts WHERE database = {db:String} "
            "AND table = 'rated_usage' AND active", parameters={"db": db}).result_rows
        if int(top) > marks.get(str(partition), -1)
    ]  # fmt: skip
    if not parts:
        return set()
    rows = client.query(
        f"SELECT DISTINCT tenant, customer FROM {db}.rated_usage WHERE _part IN {{parts:Array(String)}}",
        parameters={"parts": parts},
    ).result_rows
    return {(t, c) for t, c in rows}


def entity_position(store: StoreView) -> int:
    """The newest entity write (customers, subscriptions, plans...): `entity_outbox` sequence, or the relay's
    position when the relay has pruned the outbox."""
    from meterstream.entities.outbox import OutboxRow, RelayPositionRow

    with store.sf() as s:
        newest = s.scalar(select(func.max(OutboxRow.seq))) or 0
        relayed = s.scalar(select(func.max(RelayPositionRow.seq))) or 0
    return max(int(newest), int(relayed))


def refresh_drafts(
    client: Client,
    db: str,
    catalog: Catalog,
    store: StoreView,
    now: datetime,
    state: DraftState | None = None,
    issuing: Issuing | None = None,
    full: bool = False,
    cluster: str | None = None,
) -> tuple[DraftRefresh, DraftState]:
    """Bring every open label's drafts up to date (module docstring); the refresh done and the new state.
    `cluster` (METERSTREAM_CLICKHOUSE_CLUSTER): the parts are read on every replica and the refresh is full."""
    t0 = time.perf_counter()
    closed = closed_periods(client, db)
    marks = usage_marks(client, db, cluster)  # before reading any usage
    labels = open_labels(closed, _usage_labels(marks), now)
    position = entity_position(store)
    new = DraftState(closed, labels, position, marks)
    seen = (state.closed, state.labels, state.entities) if state is not None else None
    full = full or bool(cluster) or seen != (closed, labels, position)
    customers = None if full else changed_customers(client, db, state.marks)  # type: ignore[union-attr]
    out = DraftRefresh(labels, full, None if customers is None else len(customers))
    if customers is None or customers:
        _draft_labels(client, db, catalog, store, issuing, customers, out)
    out.seconds = time.perf_counter() - t0
    return out, new


def _usage_labels(marks: dict[str, int]) -> list[str]:
    """The labels (YYYY-MM) of the usage parts' months (`usage_marks` keys are YYYYMM...), sorted."""
    return sorted({f"{p[:4]}-{p[4:6]}" for p in marks})


def refresh_customer(
    client: Client,
    db: str,
    catalog: Catalog,
    store: StoreView,
    now: datetime,
    tenant: str,
    customer: str,
    issuing: Issuing | None = None,
    cluster: str | None = None,
) -> DraftRefresh:
    """Bring one customer's drafts of every open label up to date now (an invoice refreshed on request: Lago's
    `invoices.refresh`); the refresh state of `refresh_drafts` is neither read nor advanced."""
    t0 = time.perf_counter()
    labels = open_labels(closed_periods(client, db), _usage_labels(usage_marks(client, db, cluster)), now)
    out = DraftRefresh(labels, False, 1)
    _draft_labels(client, db, catalog, store, issuing, {(tenant, customer)}, out)
    out.seconds = time.perf_counter() - t0
    return out


def _draft_labels(client: Client, db: str, catalog: Catalog, store: StoreView, issuing: Issuing | None,
                  customers: set[tuple[str, str]] | None, out: DraftRefresh) -> None:  # fmt: skip
    """The drafts of `out.labels` for `customers` (None: all), counted in `out`."""
    for label in out.labels:
        result = draft_period(client, db, catalog, label, store, issuing, customers)
        out.drafts += len(result.invoices)
        out.failed += [{"period": label, "tenant": t, "customer": c, "reason": r} for t, c, r in result.failed]


__all__ = [
    "DraftRefresh",
    "DraftState",
    "changed_customers",
    "open_labels",
    "parts_source",
    "refresh_customer",
    "refresh_drafts",
    "usage_marks",
]
