"""/v1 wallets (api/routes/wallets.py) on the in-process app with the embedded ClickHouse as its usage store:
create, list, get, update, terminate; top-ups paid and granted (a repeated reference answers the first),
voids, pending then settled; refusals naming the field; the balance from rated_usage rows written after the
wallet started; tenants see only their own. Expected figures are worked by hand in the comments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lago_wallet_helpers import usage_app

from meterstream.entities.customers import put_customer
from meterstream.schemas.entities import CustomerDoc


def rated(tenant: str, customer: str, amount: str, at: datetime, eid: str | None = None,
          currency: str = "EUR") -> dict:  # fmt: skip
    time = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {
        "tenant": tenant, "id": eid or uuid.uuid4().hex, "customer": customer, "subject": "", "meter": "calls",
        "time": time, "period": time[:7], "quantity": "1", "amount": amount, "cumulative": "1",
        "currency": currency, "plan": "p", "line": "calls", "dimensions": {}, "source": "", "src_partition": 0,
        "src_offset": 1,
    }  # fmt: skip


@pytest.fixture
def app(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    application, insert = usage_app(tmp_path, chdb_client, "w")
    with TestClient(application) as client:
        for tenant, customer in (("t1", "c1"), ("t2", "c1")):
            put_customer(application.state.sessions, CustomerDoc(tenant=tenant, external_id=customer, name=customer,
                                                                 version=0, currency="EUR"))  # fmt: skip
        admin = {"Authorization": f"Bearer {application.state.keys.create('t1', 'admin', 'a')[1]}"}
        reader = {"Authorization": f"Bearer {application.state.keys.create('t1', 'read', 'r')[1]}"}
        other = {"Authorization": f"Bearer {application.state.keys.create('t2', 'admin', 'o')[1]}"}
        yield client, insert, admin, reader, other


def test_wallets_top_ups_and_the_balance_from_rated_usage(app) -> None:  # type: ignore[no-untyped-def]
    client, insert, admin, reader, other = app
    r = client.post("/v1/customers/c1/wallets", headers=admin,
                    json={"name": "Main", "priority": 1, "paid_credits": "20.00"})  # fmt: skip
    assert r.status_code == 201, r.text
    main = r.json()
    assert (main["currency"], main["rate_amount"], main["priority"], main["status"]) == ("EUR", "1", 1, "active")
    promo = client.post("/v1/customers/c1/wallets", headers=admin,
                        json={"name": "Promo", "priority": 2, "rate_amount": "0.10"}).json()  # fmt: skip
    r = client.post(f"/v1/wallets/{promo['id']}/transactions", headers=admin,
                    json={"kind": "granted", "credits": "100", "reference": "welcome"})  # fmt: skip
    assert r.status_code == 201 and r.json()["amount"] == "10.00"  # 100 credits x 0.10 EUR
    again = client.post(f"/v1/wallets/{promo['id']}/transactions", headers=admin,
                        json={"kind": "granted", "credits": "100", "reference": "welcome"})  # fmt: skip
    assert (again.status_code, again.json()["id"]) == (200, r.json()["id"])
    after = datetime.now(UTC) + timedelta(milliseconds=5)
    insert(rated("t1", "c1", "12.5", after), rated("t1", "c1", "0.004", after), rated("t1", "c1", "11.001", after),
           rated("t2", "c1", "99", after))  # fmt: skip
    body = client.get("/v1/customers/c1/balance", headers=reader).json()
    (eur,) = body["currencies"]
    # usage 12.5 + 0.004 + 11.001 = 23.505 -> 23.51 EUR (rounded once, half up); t2's row is not t1's
    # main (priority 1) 20.00 first, then promo 3.51 of its 10.00 -> 6.49 left = 64.9 credits
    assert (eur["currency"], eur["usage"], eur["uncovered"]) == ("EUR", "23.51", "0.00")
    got = {w["wallet"]["name"]: (w["balance"], w["consumed"], w["credits_balance"]) for w in eur["wallets"]}
    assert got == {"Main": ("0.00", "20.00", "0"), "Promo": ("6.49", "3.51", "64.9")}
    one = client.get(f"/v1/wallets/{promo['id']}/balance", headers=reader).json()
    assert [(h["kind"], h["amount"], h["balance"]) for h in one["history"]] == [
        ("inbound", "10.00", "10.00"), ("consumed", "3.51", "6.49")]  # fmt: skip
    assert one["billed_balance"] == "10.00"  # this month's usage is not invoiced yet

    void = client.post(f"/v1/wallets/{promo['id']}/transactions", headers=admin,
                       json={"kind": "void", "credits": "4.9"})  # fmt: skip
    assert void.status_code == 201 and void.json()["amount"] == "0.49"
    assert client.get(f"/v1/wallets/{promo['id']}/balance", headers=reader).json()["balance"] == "6.00"

    # the other tenant sees nothing of t1's
    assert client.get(f"/v1/wallets/{promo['id']}", headers=other).status_code == 404
    assert client.get("/v1/customers/c1/wallets", headers=other).json() == {"items": []}
    assert [w["name"] for w in client.get("/v1/customers/c1/wallets", headers=reader).json()["items"]] == [
        "Main", "Promo"]  # fmt: skip


def test_pending_top_up_settle_update_terminate(app) -> None:  # type: ignore[no-untyped-def]
    client, _insert, admin, reader, _ = app
    w = client.post("/v1/customers/c1/wallets", headers=admin, json={}).json()
    tx = client.post(f"/v1/wallets/{w['id']}/transactions", headers=admin,
                     json={"kind": "paid", "credits": "30", "status": "pending"}).json()  # fmt: skip
    assert client.get(f"/v1/wallets/{w['id']}/balance", headers=reader).json()["balance"] == "0.00"
    settled = client.post(f"/v1/wallets/{w['id']}/transactions/{tx['id']}/settle", headers=admin).json()
    assert settled["status"] == "settled"
    assert client.get(f"/v1/wallets/{w['id']}/balance", headers=reader).json()["balance"] == "30.00"
    patched = client.patch(f"/v1/wallets/{w['id']}", headers=admin, json={"name": "Renamed", "priority": 7}).json()
    assert (patched["name"], patched["priority"]) == ("Renamed", 7)
    gone = client.delete(f"/v1/wallets/{w['id']}", headers=admin).json()
    assert gone["status"] == "terminated"
    b = client.get(f"/v1/wallets/{w['id']}/balance", headers=reader).json()
    assert (b["balance"], b["expired"]) == ("0.00", "30.00")
    refused = client.post(f"/v1/wallets/{w['id']}/transactions", headers=admin, json={"kind": "paid", "credits": "1"})
    assert (refused.status_code, refused.json()["error"]["field"]) == (409, "status")
    assert client.post(f"/v1/wallets/{w['id']}/transactions", headers=reader,
                       json={"kind": "paid", "credits": "1"}).status_code == 403  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "paid", "credits": "-1"}, "credits"), ({"kind": "paid", "credits": "1.005"}, "credits"),
     ({"kind": "paid", "credits": 2.5}, "credits"), ({"kind": "paid", "credits": "ten"}, "credits"),
     ({"kind": "granted", "credits": "1", "expires_at": "2026-01-01T00:00:00"}, "expires_at"),
     ({"kind": "paid", "credits": "1E+999999999"}, "credits"), ({"kind": "bonus", "credits": "1"}, "kind")],
)  # fmt: skip
def test_bad_transactions_are_refused_naming_the_field(app, body, field) -> None:  # type: ignore[no-untyped-def]
    client, _insert, admin, reader, _ = app
    w = client.post("/v1/customers/c1/wallets", headers=admin, json={}).json()
    r = client.post(f"/v1/wallets/{w['id']}/transactions", headers=admin, json=body)
    assert (r.status_code, r.json()["error"]["field"]) == (422, field), r.text
    assert client.get(f"/v1/wallets/{w['id']}/transactions", headers=reader).json() == {"items": []}


def test_bad_wallets_are_refused_naming_the_field(app) -> None:  # type: ignore[no-untyped-def]
    client, _insert, admin, _reader, _ = app
    for body, field in (({"currency": "USD"}, "currency"), ({"rate_amount": "0"}, "rate_amount"),
                        ({"rate_amount": "x"}, "rate_amount"), ({"priority": 0}, "priority"),
                        ({"paid_credits": "-3"}, "paid_credits")):  # fmt: skip
        r = client.post("/v1/customers/c1/wallets", headers=admin, json=body)
        assert (r.status_code, r.json()["error"]["field"]) == (422, field), (body, r.text)
    assert client.post("/v1/customers/ghost/wallets", headers=admin, json={}).status_code == 404
    assert client.get("/v1/customers/c1/wallets", headers=admin).json() == {"items": []}  # nothing half-written
