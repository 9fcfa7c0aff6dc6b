"""The own coupon API (/v1/coupons, /v1/customers/{id}/coupons) through FastAPI's TestClient, on SQLite and
PostgreSQL. Expected values are written from the requests; the use of an applied coupon (derived from issued
invoices) is checked with an invoice issued by hand in the store."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from api_helpers import error
from api_helpers import role_key as key
from fastapi.testclient import TestClient

from meterstream.entities import invoices


@pytest.fixture
def client(offline_client: TestClient) -> TestClient:
    """The app on an empty store of each kind, SQLite and PostgreSQL (tests/api/conftest.py)."""
    return offline_client


FIXED = {"code": "credit25", "name": "Credit 25", "kind": "fixed", "amount_off": "25.00", "currency": "eur"}


def test_create_read_list_and_terminate_a_coupon(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    r = client.post("/v1/coupons", json=FIXED, headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["code"], body["kind"], body["amount_off"], body["currency"], body["duration"], body["status"]) == (
        "credit25", "fixed", "25.00", "EUR", "once", "active")  # fmt: skip
    assert error(client.post("/v1/coupons", json=FIXED, headers=admin)) == (409, "conflict", "code")
    pct = {"code": "ten", "name": "Ten", "kind": "percentage", "percent_off": "10", "duration": "repeating",
           "duration_periods": 3, "applies_to": ["api_calls"]}  # fmt: skip
    assert client.post("/v1/coupons", json=pct, headers=admin).status_code == 201
    listed = client.get("/v1/coupons", headers=reader).json()
    assert ([c["code"] for c in listed["items"]], listed["total"]) == (["credit25", "ten"], 2)
    assert client.get("/v1/coupons/ten", headers=reader).json()["applies_to"] == ["api_calls"]
    assert client.post("/v1/coupons", json=FIXED, headers=reader).status_code == 403  # a read key cannot write
    other = key(client, tenant="other")  # another tenant sees none of them
    assert client.get("/v1/coupons", headers=other).json()["total"] == 0
    assert error(client.get("/v1/coupons/ten", headers=other)) == (404, "not_found", None)

    r = client.delete("/v1/coupons/credit25", headers=admin)
    assert (r.status_code, r.json()["status"]) == (200, "terminated")
    assert [c["code"] for c in client.get("/v1/coupons", headers=reader).json()["items"]] == ["ten"]
    assert client.post("/v1/coupons", json=FIXED, headers=admin).status_code == 201  # the code is free again


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "percentage", "percent_off": "0"}, "percent_off"),
        ({"kind": "percentage", "percent_off": "120"}, "percent_off"),
        ({"kind": "percentage", "percent_off": 10.5}, "percent_off"),  # a float, not a decimal string
        ({"kind": "fixed", "amount_off": "10.001", "currency": "EUR"}, "amount_off"),  # not whole cents
        ({"kind": "fixed", "amount_off": "10"}, "currency"),
        ({"kind": "fixed", "amount_off": "10", "currency": "XXY"}, "currency"),
        ({"kind": "percentage", "percent_off": "5", "duration": "repeating"}, "duration_periods"),
        ({"kind": "percentage", "percent_off": "5", "applies_to": []}, "applies_to"),
        ({"kind": "bogus"}, "kind"),
    ],
)
def test_a_bad_coupon_is_refused_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/v1/coupons", json={"code": "c", "name": "C", **body}, headers=key(client))
    assert error(r) == (422, "invalid", field), r.text


def test_apply_list_and_remove_a_coupon_with_its_use_derived_from_issued_invoices(client: TestClient) -> None:
    admin = key(client)
    sf = client.app.state.sessions
    assert client.post("/v1/customers", json={"external_id": "c1", "name": "C1", "currency": "EUR"},
                       headers=admin).status_code == 201  # fmt: skip
    assert client.post("/v1/coupons", json=FIXED, headers=admin).status_code == 201
    usd = {"code": "usd5", "name": "USD 5", "kind": "fixed", "amount_off": "5", "currency": "USD"}
    assert client.post("/v1/coupons", json=usd, headers=admin).status_code == 201

    assert error(client.post("/v1/customers/nobody/coupons", json={"coupon_code": "credit25"}, headers=admin)) == (
        404, "not_found", None)  # fmt: skip
    assert error(client.post("/v1/customers/c1/coupons", json={"coupon_code": "usd5"}, headers=admin)) == (
        422, "invalid", "currency")  # a USD coupon for a EUR customer  # fmt: skip
    r = client.post("/v1/customers/c1/coupons", json={"coupon_code": "credit25", "amount_off": "30.00"},
                    headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    applied = r.json()
    assert (applied["amount_off"], applied["amount_remaining"], applied["periods_used"], applied["status"]) == (
        "30.00", "30.00", 0, "active")  # the override; nothing used yet: all of it left  # fmt: skip
    assert error(client.post("/v1/customers/c1/coupons", json={"coupon_code": "credit25"}, headers=admin)) == (
        409, "conflict", "coupon_code")  # already active for this customer  # fmt: skip

    # an invoice of 2026-10 issued with 12.50 of the coupon: 30.00 - 12.50 = 17.50 left, 1 period used
    document = ('{"discounts": [{"code": "credit25", "description": "Credit 25", "kind": "fixed", '
                '"amount": "12.50"}]}')  # fmt: skip
    invoices.upsert_draft(sf, tenant="acme", invoice_id="inv-1", customer="c1", period="2026-10", currency="EUR",
                          total="50.00", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 1),
                          document=document)  # fmt: skip
    invoices.finalize(sf, "acme", "inv-1", "ACME", "INV", at=datetime.now(UTC))
    (listed,) = client.get("/v1/customers/c1/coupons", headers=admin).json()["items"]
    assert (listed["id"], listed["periods_used"], listed["amount_remaining"]) == (applied["id"], 1, "17.50")
    one = client.get(f"/v1/customers/c1/coupons/{applied['id']}", headers=admin).json()
    assert one["amount_remaining"] == "17.50"

    r = client.delete(f"/v1/customers/c1/coupons/{applied['id']}", headers=admin)
    assert (r.status_code, r.json()["status"]) == (200, "terminated")
    assert client.get("/v1/customers/c1/coupons?status=active", headers=admin).json()["items"] == []
    assert error(client.delete("/v1/customers/c1/coupons/nope", headers=admin)) == (404, "not_found", None)
