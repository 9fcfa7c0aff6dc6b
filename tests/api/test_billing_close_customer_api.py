"""POST /v1/billing/close with a customer (api/routes/billing.py): one customer's invoice finalized alone, by an
admin key of the customer's own tenant (or the operator's), run as a child `meterstream billing close`.

Prices from tests/data/catalog.yaml, tenant t1 on plan `basic`: 30 api calls = (30 - 10) x 0.50 = 10.00 USD.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from api_helpers import bearer

from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"
SEED = """
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.schemas.settings import Settings
client = connect(Settings())
create_schema(client, "meterstream")
rows = [["t1", uuid.uuid4().hex, c, "", "api_calls", datetime(2026, 10, 15, tzinfo=UTC), "2026-10", Decimal(30),
         Decimal(0), Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0] for c in ("c1", "c2")]
client.insert("meterstream.rated_usage", rows, column_names=list(RATED_COLUMNS))
"""


@pytest.mark.kafka
def test_a_tenant_admin_closes_one_of_its_customers(
    client, api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "invoices"
    child = {"METERSTREAM_HOME": str(tmp_path), "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
             "METERSTREAM_CATALOG": str(CATALOG), "METERSTREAM_KAFKA_BOOTSTRAP": api_settings.bootstrap,
             "METERSTREAM_TOPIC_PREFIX": api_settings.topic_prefix, "METERSTREAM_INVOICES_DIR": str(out),
             "METERSTREAM_OPERATOR_TENANT": "ops"}  # fmt: skip
    for k, v in child.items():
        monkeypatch.setenv(k, v)
    subprocess.run([sys.executable, "-c", SEED], check=True, timeout=120)
    t1 = bearer(client, "t1", "admin")
    body = {"period": "2026-10", "customer": "c1", "force": True, "publish": False}

    r = client.post("/v1/billing/close", json={**body, "tenant": "t2"}, headers=t1)
    assert r.status_code == 403 and r.json()["error"]["field"] == "tenant"
    r = client.post(
        "/v1/billing/close", json={"period": "2026-10", "tenant": "t1"}, headers=bearer(client, "ops", "admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "tenant"
    assert (
        client.post("/v1/billing/close", json={"period": "2026-10", "force": True}, headers=t1).status_code == 403
    )  # the whole period stays an operator action

    r = client.post("/v1/billing/close", json=body, headers=t1)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["invoices"], answer["totals"], answer["customers"], answer["failed"]) == (
        1,
        {"USD": "10.00"},
        ["t1/c1"],
        [],
    )
    assert sorted(p.name for p in (out / "2026-10" / "t1").iterdir()) == ["c1.json"]
    doc = orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())
    assert (doc["total"], doc["number"], doc["status"]) == ("10.00", "DEMO-2026-000001", "finalized")

    # the operator closes another tenant's customer by naming it; an unknown id is a 422 naming the field
    ops = bearer(client, "ops", "admin")
    r = client.post("/v1/billing/close", json={**body, "customer": "c2", "tenant": "t1"}, headers=ops)
    assert r.status_code == 200 and r.json()["customers"] == ["t1/c2"]
    assert orjson.loads((out / "2026-10" / "t1" / "c2.json").read_bytes())["number"] == "DEMO-2026-000002"
    r = client.post("/v1/billing/close", json={**body, "customer": "nobody"}, headers=ops)
    assert r.status_code == 422 and r.json()["error"]["field"] == "customer"
