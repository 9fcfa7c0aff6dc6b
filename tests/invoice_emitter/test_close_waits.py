"""`close_period` holds the entity store's close lock (invoice_emitter/close_lock.py) from before it reads what was
billed until its invoices are stored: while another close holds it, a close waits and writes nothing."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.close import _own_records, close_period
from meterstream.invoice_emitter.close_lock import close_lock
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def test_a_close_waits_while_another_holds_the_lock(chdb_client, db: str, tmp_path: Path) -> None:
    # plan basic: api_calls 0-10 free, 10-100 at 0.50 -> 50 calls = 20.00 (tests/data/catalog.yaml)
    row = ["t1", uuid.uuid4().hex, "c1", "", "api_calls", datetime(2026, 9, 15, tzinfo=UTC), "2026-09", Decimal(50),
           Decimal(20), Decimal(50), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))
    out = tmp_path / "inv"
    done: dict[str, object] = {}

    def close() -> None:
        done["result"] = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)

    with close_lock(_own_records(out).sf):  # another close of the same store (its own records under `out`)
        t = threading.Thread(target=close)
        t.start()
        t.join(2.0)
        assert t.is_alive() and "result" not in done  # waiting for the lock
        assert not list(out.rglob("*.json"))  # nothing written meanwhile
    t.join(120)
    assert not t.is_alive()
    (invoice,) = done["result"].invoices  # type: ignore[attr-defined]
    assert Decimal(invoice["total"]) == Decimal("20.00")
