"""Drafts kept current (invoice_emitter/drafts.py) are readable through GET /v1/invoices?status=draft, and the
close finalizes the same record (same id, status finalized, a number).

Price from tests/data/catalog.yaml, tenant t1 on plan `basic`: 30 api calls = (30 - 10) x 0.50 = 10.00 USD; 40 calls
= 15.00.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from api_helpers import bearer

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.drafts import refresh_drafts
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.settings import Settings

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def insert(client, db: str, quantity: str) -> None:  # type: ignore[no-untyped-def]
    row = ["t1", uuid.uuid4().hex, "c1", "", "api_calls", datetime(2026, 11, 10, tzinfo=UTC), "2026-11",
           Decimal(quantity), Decimal(0), Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def test_drafts_are_listed_and_the_close_finalizes_the_same_record(
    client, api_settings: Settings, chdb_client, tmp_path: Path
) -> None:
    db = f"a_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    store = StoreView.open(api_settings)  # the API's own entity store
    insert(chdb_client, db, "30")
    _, state = refresh_drafts(chdb_client, db, CATALOG, store, datetime(2026, 11, 20, tzinfo=UTC))
    key = bearer(client, "t1", "read")

    [draft] = client.get("/v1/invoices?status=draft", headers=key).json()["items"]
    assert (draft["customer"], draft["status"], draft["number"], draft["total"]) == ("c1", "draft", None, "10.00")
    insert(chdb_client, db, "10")
    refresh_drafts(chdb_client, db, CATALOG, store, datetime(2026, 11, 21, tzinfo=UTC), state)
    [again] = client.get("/v1/invoices?status=draft", headers=key).json()["items"]
    assert (again["invoice_id"], again["total"]) == (draft["invoice_id"], "15.00")

    close_period(chdb_client, db, CATALOG, "2026-11", tmp_path / "inv", progress=False, store=store)
    assert client.get("/v1/invoices?status=draft", headers=key).json()["items"] == []
    [final] = client.get("/v1/invoices", headers=key).json()["items"]
    assert (final["invoice_id"], final["status"], final["number"], final["total"]) == (
        draft["invoice_id"],
        "finalized",
        "DEMO-2026-000001",
        "15.00",
    )
