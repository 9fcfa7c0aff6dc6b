"""Reads under a customer id answer 404 for a customer the key's tenant does not have (an unknown id, or another
tenant's customer), in the API's own shape on /v1 and in Lago's on /compat/lago: the balance, the wallets, the
applied coupons. Before, they answered 200 with nothing in it, as if the customer existed without wallets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import error, offline_app
from fastapi.testclient import TestClient

from meterstream.entities.customers import put_customer
from meterstream.schemas.entities import CustomerDoc

LAGO = "/compat/lago/api/v1"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """t1 has customer c1 (no wallets, no coupons), t2 has customer c2; a read key of t1."""
    app = offline_app(tmp_path, relay=False)
    with TestClient(app) as c:
        for tenant, customer in (("t1", "c1"), ("t2", "c2")):
            doc = CustomerDoc(tenant=tenant, external_id=customer, name=customer, version=0, currency="EUR")
            put_customer(app.state.sessions, doc)
        yield c, {"Authorization": f"Bearer {app.state.keys.create('t1', 'read', 'r')[1]}"}
    app.state.engine.dispose()


@pytest.mark.parametrize("path", ["/v1/customers/{}/balance", "/v1/customers/{}/wallets", "/v1/customers/{}/coupons"])
def test_own_api_reads_of_an_unknown_customer_are_404(client, path: str) -> None:  # type: ignore[no-untyped-def]
    c, reader = client
    for unknown in ("ghost", "c2"):  # c2 is t2's: unknown to t1
        r = c.get(path.format(unknown), headers=reader)
        assert error(r) == (404, "not_found", None), r.text
        assert r.json()["error"]["message"] == f"customer {unknown!r} not found"
    known = c.get(path.format("c1"), headers=reader)
    assert known.status_code == 200, known.text
    body = known.json()
    assert body.get("currencies", body.get("items")) == []  # a known customer without wallets or coupons


@pytest.mark.parametrize("path", ["/wallets?external_customer_id={}", "/customers/{}/wallets",
                                  "/customers/{}/applied_coupons"])  # fmt: skip
def test_lago_reads_of_an_unknown_customer_are_customer_not_found(client, path: str) -> None:  # type: ignore[no-untyped-def]
    c, reader = client
    for unknown in ("ghost", "c2"):
        r = c.get(LAGO + path.format(unknown), headers=reader)
        assert (r.status_code, r.json()) == (404, {"status": 404, "error": "Not Found", "code": "customer_not_found"})
    assert c.get(LAGO + path.format("c1"), headers=reader).status_code == 200


def test_lago_applied_coupons_filter_stays_a_filter(client) -> None:  # type: ignore[no-untyped-def]
    """GET /applied_coupons?external_customer_id= filters the tenant's applied coupons (Lago's index): an id
    nobody has matches nothing, 200 with an empty list."""
    c, reader = client
    r = c.get(f"{LAGO}/applied_coupons?external_customer_id=ghost", headers=reader)
    assert (r.status_code, r.json()["applied_coupons"]) == (200, [])


def test_lago_remove_coupon_of_an_unknown_customer_is_customer_not_found(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    admin = {"Authorization": f"Bearer {c.app.state.keys.create('t1', 'admin', 'a')[1]}"}
    r = c.delete(f"{LAGO}/customers/ghost/applied_coupons/x", headers=admin)
    assert (r.status_code, r.json()["code"]) == (404, "customer_not_found")
    r = c.delete(f"{LAGO}/customers/c1/applied_coupons/x", headers=admin)
    assert (r.status_code, r.json()["code"]) == (404, "applied_coupon_not_found")
