"""Draft refresh cost (invoice_emitter/drafts.py): 10,000 customers x 5 meters, the open period's drafts.

    python bench/drafts_refresh.py [--customers 10000] [--changed 100] [--json FILE]

A fresh embedded chdb store and a fresh SQLite entity store under a temporary folder; `rated_usage` filled with
the period-close bench's synthetic rows (bench/period_close.py `populate`: 5 metered prices, 2 events per meter
and customer, October 2026). Timed, with the clock at 2026-10-20 (October is the open label):
1. the first refresh: every customer's draft computed and inserted (`full`);
2. a refresh with no new usage (`idle`: reads system.parts only);
3. after one new event for each of `--changed` customers: a refresh of those customers only (`changed`);
4. `--all` again, every draft replaced (`full_again`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _period_close_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("period_close_bench", ROOT / "bench" / "period_close.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run(customers: int, changed: int, work: Path) -> dict:
    from meterstream.aggregation.client import connect
    from meterstream.aggregation.ddl import create_schema
    from meterstream.aggregation.rows import RATED_COLUMNS
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.invoice_emitter.drafts import refresh_drafts
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import load_catalog

    bench = _period_close_bench()
    cat_path = work / "catalog.json"
    cat_path.write_text(json.dumps(bench.catalog_doc()))
    catalog = load_catalog(cat_path)
    client = connect(dsn=f"chdb://{work / 'clickhouse'}")
    db = "meterstream"
    create_schema(client, db)
    rows = bench.populate(client, db, catalog, customers, 2)
    engine = make_engine(url=f"sqlite:///{work / 'store.db'}")
    migrate(engine=engine)
    store = StoreView(session_factory(engine))
    now = datetime(2026, 10, 20, tzinfo=UTC)
    out: dict = {"customers": customers, "rows": rows}

    def timed(name: str, state, full: bool = False):  # type: ignore[no-untyped-def]
        c0, t0 = os.times(), time.perf_counter()
        refresh, new = refresh_drafts(client, db, catalog, store, now, state, full=full)
        seconds, c1 = time.perf_counter() - t0, os.times()
        out[name] = {
            "seconds": round(seconds, 3),
            "cpu_s": round(c1.user - c0.user + c1.system - c0.system, 2),
            "drafts": refresh.drafts,
            "customers": refresh.customers,
            "failed": len(refresh.failed),
        }
        print(f"[drafts-bench] {name}: {out[name]}", file=sys.stderr)
        return new

    state = timed("full", None)
    state = timed("idle", state)
    new_rows = [[bench.TENANT, f"late-{i}", f"cust-{i * (customers // max(changed, 1)):06d}", "", "api_calls",
                 datetime(2026, 10, 19, tzinfo=UTC), bench.PERIOD, Decimal(1), Decimal(0), Decimal(0), "USD",
                 bench.PLAN, "api_calls", {}, "bench", 0, 10**9 + i] for i in range(changed)]  # fmt: skip
    client.insert(f"{db}.rated_usage", new_rows, column_names=list(RATED_COLUMNS))
    state = timed("changed", state)
    timed("full_again", state, full=True)
    out["load_1m"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--changed", type=int, default=100)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="drafts-bench-"))
    try:
        result = run(args.customers, args.changed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
