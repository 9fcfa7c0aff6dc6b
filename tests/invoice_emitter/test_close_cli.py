"""`meterstream close` (deploy/cli.py): without an entity store it closes from the catalog file alone; a customer
that cannot be invoiced is printed with the reason, the others are written, and the exit status is 1.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls 0-10 free, 10-100 at 0.50 (USD).
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.deploy import cli
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"


def row(customer: str, plan: str, quantity: str) -> list:
    return ["t1", uuid.uuid4().hex, customer, "", "api_calls", datetime(2026, 10, 15, tzinfo=UTC), "2026-10",
            Decimal(quantity), Decimal(0), Decimal(0), "USD", plan, "api_calls", {}, "", 0, 0]  # fmt: skip


def test_close_without_a_store_reports_the_customer_it_cannot_invoice_and_exits_1(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"c_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    chdb_client.insert(f"{db}.rated_usage", [row("c1", "basic", "30"), row("c2", "gone", "5")],
                       column_names=list(RATED_COLUMNS))  # fmt: skip
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db, database_url=None)
    assert StoreView.open(settings) is None  # no store file: the catalog file alone
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda _settings: chdb_client)
    out = tmp_path / "inv"
    status = cli._close(argparse.Namespace(period="2026-10", out=str(out), no_publish=True), settings)
    assert status == 1
    err = capsys.readouterr().err
    assert "error: t1/c2 not invoiced: plan: usage of t1/c2 in 2026-10 was rated with plan 'gone'" in err
    doc = orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())
    assert doc["total"] == "10.00"  # (30 - 10) x 0.50
    assert not (out / "2026-10" / "t1" / "c2.json").exists()
    assert not (tmp_path / "home" / "meterstream.db").exists()  # the close did not create a store
