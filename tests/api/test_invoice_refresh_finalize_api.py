"""A draft refreshed on request and finalized before its customer's grace period ends: POST
/v1/invoices/{id}/refresh and /finalize, and Lago's `invoices.refresh` / `invoices.finalize` (lago-python-client on
a real server), each running a child `meterstream billing drafts --customer` / `billing close --customer
--end-grace` (api/routes/billing.py `refresh_draft`, `finalize_draft`), real broker.

Prices from tests/data/catalog.yaml, tenant t1 on plan `basic`, 10 calls free then 0.50 each: 30 api calls =
(30 - 10) x 0.50 = 10.00 USD for each of c1 and c2 in 2026-10; with 10 more for c1, 40 calls = 15.00; with 2 more
for c2, 32 calls = 11.00. Both have 60 days of grace, so on the machine's clock (December 2026) October is still
in grace: a plain close of either is refused, the drafts stay drafts until finalized.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from api_helpers import bearer
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from served_app import serve
from test_billing_close_customer_api import CATALOG, SEED

from meterstream.schemas.settings import Settings

MORE = """
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from meterstream.aggregation.client import connect
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.schemas.settings import Settings
row = ["t1", uuid.uuid4().hex, "{customer}", "", "api_calls", datetime(2026, 10, 20, tzinfo=UTC), "2026-10",
       Decimal({calls}), Decimal(0), Decimal(0), "USD", "basic", "api_calls", {{}}, "", 0, 0]
connect(Settings()).insert("meterstream.rated_usage", [row], column_names=list(RATED_COLUMNS))
"""


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", *args], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    return orjson.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.kafka
def test_a_draft_in_grace_is_finalized_early(client, api_settings: Settings, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    child = {"METERSTREAM_HOME": str(tmp_path), "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
             "METERSTREAM_CATALOG": str(CATALOG), "METERSTREAM_KAFKA_BOOTSTRAP": api_settings.bootstrap,
             "METERSTREAM_TOPIC_PREFIX": api_settings.topic_prefix,
             "METERSTREAM_INVOICES_DIR": str(tmp_path / "invoices")}  # fmt: skip
    for k, v in child.items():
        monkeypatch.setenv(k, v)
    subprocess.run([sys.executable, "-c", SEED], check=True, timeout=120)
    admin = bearer(client, "t1", "admin")
    for c in ("c1", "c2"):
        made = client.post("/v1/customers", json={"external_id": c, "name": c.upper(), "currency": "USD",
                                                  "invoice_grace_days": 60}, headers=admin)  # fmt: skip
        assert made.status_code == 201, made.text
    assert _child("billing", "drafts", "--all", "--json")["drafts"] == 2
    drafts = {i["customer"]: i for i in client.get("/v1/invoices?status=draft", headers=admin).json()["items"]}
    assert {c: (i["total"], i["period"]) for c, i in drafts.items()} == {"c1": ("10.00", "2026-10"),
                                                                         "c2": ("10.00", "2026-10")}  # fmt: skip

    # a close of c1 is refused while it is in its grace period
    refused = client.post("/v1/billing/close", json={"period": "2026-10", "customer": "c1", "publish": False},
                          headers=admin)  # fmt: skip
    assert refused.status_code == 409 and "grace" in refused.json()["error"]["message"]

    # 10 more calls for c1 (late usage in its grace period): the draft says so once refreshed
    subprocess.run([sys.executable, "-c", MORE.format(customer="c1", calls=10)], check=True, timeout=120)
    c1 = drafts["c1"]["invoice_id"]
    refreshed = client.post(f"/v1/invoices/{c1}/refresh", headers=admin)
    assert refreshed.status_code == 200, refreshed.text
    assert (refreshed.json()["status"], refreshed.json()["total"]) == ("draft", "15.00")
    done = client.post(f"/v1/invoices/{c1}/finalize", headers=admin)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["invoice_id"], body["status"], body["total"], body["number"]) == (c1, "finalized", "15.00",
                                                                                    "DEMO-2026-000001")  # fmt: skip
    not_draft = client.post(f"/v1/invoices/{c1}/refresh", headers=admin)
    assert not_draft.status_code == 409 and not_draft.json()["error"]["field"] == "status"
    again = client.post(f"/v1/invoices/{c1}/finalize", headers=admin)
    assert again.status_code == 409 and again.json()["error"]["field"] == "status"
    assert client.post("/v1/invoices/NOPE/finalize", headers=admin).status_code == 404
    assert client.post(f"/v1/invoices/{c1}/finalize", headers=bearer(client, "t1", "read")).status_code == 403
    assert client.get(f"/v1/invoices/{drafts['c2']['invoice_id']}", headers=admin).headers[
        "Meterstream-Invoice-Status"] == "draft"  # c2's grace goes on  # fmt: skip

    # Lago's invoices.finalize, through the SDK
    key = client.app.state.keys.create("t1", "admin", "sdk")[1]
    with serve(client.app) as base:
        lago = Client(api_key=key, api_url=f"{base}/compat/lago/")
        subprocess.run([sys.executable, "-c", MORE.format(customer="c2", calls=2)], check=True, timeout=120)
        fresh = lago.invoices.refresh(drafts["c2"]["invoice_id"])
        assert (fresh.status, fresh.number, fresh.total_amount_cents) == ("draft", "DRAFT", 1100)
        finalized = lago.invoices.finalize(drafts["c2"]["invoice_id"])
        expected = ("finalized", "DEMO-2026-000002", 1100)
        assert (finalized.status, finalized.number, finalized.total_amount_cents) == expected
        with pytest.raises(LagoApiError) as not_draft:
            lago.invoices.finalize(drafts["c2"]["invoice_id"])
        assert (not_draft.value.status_code, not_draft.value.response["code"]) == (405, "not_finalizable")
        with pytest.raises(LagoApiError) as not_refreshable:
            lago.invoices.refresh(drafts["c2"]["invoice_id"])
        assert (not_refreshable.value.status_code, not_refreshable.value.response["code"]) == (405, "not_refreshable")
        with pytest.raises(LagoApiError) as missing:
            lago.invoices.finalize("NOPE")
        assert (missing.value.status_code, missing.value.response["code"]) == (404, "invoice_not_found")
