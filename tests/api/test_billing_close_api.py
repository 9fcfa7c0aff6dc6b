"""POST /v1/billing/close (api/routes/billing.py): an operator action behind the close guards, run as a child
`meterstream billing close` on a real broker and an embedded ClickHouse store of its own.

Price from tests/data/catalog.yaml, tenant t1 on plan `basic`: 30 api calls = (30 - 10) x 0.50 = 10.00 USD.
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
row = ["t1", uuid.uuid4().hex, "c1", "", "api_calls", datetime(2026, 10, 15, tzinfo=UTC), "2026-10", Decimal(30),
       Decimal(0), Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]
client.insert("meterstream.rated_usage", [row], column_names=list(RATED_COLUMNS))
"""


@pytest.mark.kafka
def test_an_operator_closes_a_period_through_the_api_behind_the_guards(
    client, api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics

    out = tmp_path / "invoices"
    child = {"METERSTREAM_HOME": str(tmp_path), "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
             "METERSTREAM_CATALOG": str(CATALOG), "METERSTREAM_KAFKA_BOOTSTRAP": api_settings.bootstrap,
             "METERSTREAM_TOPIC_PREFIX": api_settings.topic_prefix, "METERSTREAM_INVOICES_DIR": str(out)}  # fmt: skip
    for k, v in child.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("METERSTREAM_OPERATOR_TENANT", raising=False)
    subprocess.run([sys.executable, "-c", SEED], check=True, timeout=120)
    ops = bearer(client, "ops", "admin")
    body = {"period": "2026-10", "publish": False}

    # no operator tenant configured: nobody may close
    r = client.post("/v1/billing/close", json=body, headers=ops)
    assert r.status_code == 403 and "METERSTREAM_OPERATOR_TENANT" in r.json()["error"]["message"]
    monkeypatch.setenv("METERSTREAM_OPERATOR_TENANT", "ops")
    assert client.post("/v1/billing/close", json=body, headers=bearer(client, "acme", "admin")).status_code == 403
    assert client.post("/v1/billing/close", json=body, headers=bearer(client, "ops", "read")).status_code == 403
    r = client.post("/v1/billing/close", json={"period": "2026-13"}, headers=ops)
    assert r.status_code == 422 and r.json()["error"]["field"] == "period"

    # an event nobody processed: refused, with the number
    producer = make_producer(api_settings)
    producer.produce(Topics.from_settings(api_settings).usage, key=b"t1/c1", value=b'{"id": "x"}', partition=0)
    assert producer.flush(30) == 0
    r = client.post("/v1/billing/close", json=body, headers=ops)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == {"code": "close_refused", "field": "force",
                                 "message": "processor lag 1 event; use --force to close anyway"}  # fmt: skip
    assert not (out / "2026-10").exists()

    r = client.post("/v1/billing/close", json={**body, "force": True}, headers=ops)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["period"], answer["invoices"], answer["totals"], answer["failed"], answer["forced"]) == (
        "2026-10",
        1,
        {"USD": "10.00"},
        [],
        True,
    )
    assert orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())["total"] == "10.00"

    # closed: closing again re-issues the stored documents, no guard stands in the way
    r = client.post("/v1/billing/close", json=body, headers=ops)
    assert r.status_code == 200 and r.json()["reissued"] is True and r.json()["invoices"] == 1
