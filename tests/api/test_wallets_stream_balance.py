"""/v1 wallet balances current to the processor, not to the sink: with the customer's balance snapshot in the
API's feed (api/balance_feed.py), GET /v1/wallets/{id}/balance and GET /v1/customers/{id}/balance count the
usage the processor debited that ClickHouse does not hold yet, once (api/wallet_usage.balances_now, the read
Lago's wallets use). Embedded ClickHouse, no broker: the test puts the snapshots in the feed itself. One EUR
wallet of 20.00, rate 1; figures by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lago_wallet_helpers import usage_app
from test_wallets_api import rated

from meterstream.api.routes.authorize import feed_of
from meterstream.entities.customers import put_customer
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.provisioning import BalanceSnapshot


def snap(consumed: str, currency: str = "EUR") -> BalanceSnapshot:
    return BalanceSnapshot(tenant="t1", customer="c1", currency=currency, balance="0", consumed=consumed,
                           as_of="2026-12-01T10:00:00Z")  # fmt: skip


@pytest.fixture
def app(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    application, insert = usage_app(tmp_path, chdb_client, "ws")
    with TestClient(application) as client:
        put_customer(application.state.sessions, CustomerDoc(tenant="t1", external_id="c1", name="c1", version=0,
                                                             currency="EUR"))  # fmt: skip
        admin = {"Authorization": f"Bearer {application.state.keys.create('t1', 'admin', 'a')[1]}"}
        yield client, insert, admin, feed_of(application)


def test_the_v1_balance_follows_the_processor(app) -> None:  # type: ignore[no-untyped-def]
    client, insert, admin, feed = app
    wallet = client.post("/v1/customers/c1/wallets", headers=admin, json={"paid_credits": "20.00"}).json()
    url = f"/v1/wallets/{wallet['id']}/balance"
    at = datetime.now(UTC) + timedelta(milliseconds=5)
    insert(rated("t1", "c1", "3.333", at), rated("t1", "c1", "1.5", at))
    # ClickHouse alone: 4.833 -> 4.83 consumed; 20.00 - 4.83 = 15.17
    assert [client.get(url, headers=admin).json()[k] for k in ("consumed", "balance")] == ["4.83", "15.17"]
    # the processor debited 6.00 (1.167 of it not in ClickHouse yet): 6.00 consumed, 14.00 left
    feed.put(snap("6.00"))
    assert [client.get(url, headers=admin).json()[k] for k in ("consumed", "balance")] == ["6.00", "14.00"]
    (eur,) = client.get("/v1/customers/c1/balance", headers=admin).json()["currencies"]
    assert (eur["usage"], eur["wallets"][0]["balance"]) == ("6.00", "14.00")
    # the sink catches up (4.833 + 1.167 = 6.000): counted once
    insert(rated("t1", "c1", "1.167", at))
    assert client.get(url, headers=admin).json()["balance"] == "14.00"
    # a snapshot behind ClickHouse (the feed lagging) adds nothing; one in another currency neither
    feed.put(snap("2.00"))
    assert client.get(url, headers=admin).json()["balance"] == "14.00"
    feed.put(snap("9.00", "USD"))
    assert client.get(url, headers=admin).json()["balance"] == "14.00"
    # a top-up after the snapshot shows at once (the ledger is read now): 14.00 + 10.00 = 24.00
    feed.put(snap("6.00"))
    r = client.post(f"/v1/wallets/{wallet['id']}/transactions", headers=admin, json={"kind": "paid", "credits": "10"})
    assert r.status_code == 201, r.text
    assert client.get(url, headers=admin).json()["balance"] == "24.00"
