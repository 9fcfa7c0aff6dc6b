"""The own add-on API (/v1/add_ons) through FastAPI's TestClient, on SQLite and PostgreSQL: create (201), list by
pages, read, change the fields sent, delete (200 with what was deleted), roles, tenants kept apart, errors naming
the field. Expected values are written from the requests."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import error
from api_helpers import role_key as key
from fastapi.testclient import TestClient

from meterstream.entities.tax_objects import TaxSpec, create_tax

SETUP = {"code": "setup_fee", "name": "Setup fee", "amount": "150.00", "currency": "eur",
         "description": "Onboarding"}  # fmt: skip


@pytest.fixture
def client(offline_client: TestClient) -> TestClient:
    """The app on an empty store of each kind, SQLite and PostgreSQL (tests/api/conftest.py)."""
    return offline_client


def test_create_read_list_update_and_delete(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    r = client.post("/v1/add_ons", json=SETUP, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["code"], made["name"], made["amount"], made["currency"], made["description"]) == (
        "setup_fee", "Setup fee", "150.00", "EUR", "Onboarding")  # fmt: skip
    assert (made["invoice_display_name"], made["tax_codes"], len(made["id"])) == (None, [], 26)
    assert client.get("/v1/add_ons/setup_fee", headers=reader).json() == made

    day = {"code": "consulting_day", "name": "Consulting day", "amount": "1200", "currency": "USD"}
    assert client.post("/v1/add_ons", json=day, headers=admin).json()["amount"] == "1200.00"
    assert client.post("/v1/add_ons", json={**day, "code": "third"}, headers=admin).status_code == 201
    listed = client.get("/v1/add_ons", headers=reader).json()
    assert ([a["code"] for a in listed["items"]], listed["total"]) == (["setup_fee", "consulting_day", "third"], 3)
    page2 = client.get("/v1/add_ons?page=2&per_page=2", headers=reader).json()
    assert ([a["code"] for a in page2["items"]], page2["page"], page2["per_page"], page2["total"]) == (
        ["third"], 2, 2, 3)  # fmt: skip

    r = client.patch("/v1/add_ons/setup_fee", json={"amount": "175.5", "invoice_display_name": "Setup"},
                     headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["amount"], changed["invoice_display_name"], changed["name"], changed["description"]) == (
        "175.50", "Setup", "Setup fee", "Onboarding")  # the rest kept  # fmt: skip
    assert changed["id"] == made["id"]
    cleared = client.patch("/v1/add_ons/setup_fee", json={"description": None, "code": "onboarding"}, headers=admin)
    assert (cleared.json()["description"], cleared.json()["code"]) == (None, "onboarding")
    assert error(client.get("/v1/add_ons/setup_fee", headers=reader)) == (404, "not_found", None)

    r = client.delete("/v1/add_ons/onboarding", headers=admin)
    assert (r.status_code, r.json()["code"], r.json()["amount"]) == (200, "onboarding", "175.50")
    assert [a["code"] for a in client.get("/v1/add_ons", headers=reader).json()["items"]] == ["consulting_day",
                                                                                              "third"]  # fmt: skip
    assert error(client.delete("/v1/add_ons/onboarding", headers=admin)) == (404, "not_found", None)


def test_roles_and_tenants(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    assert client.post("/v1/add_ons", json=SETUP, headers=reader).status_code == 403  # a read key cannot write
    assert client.post("/v1/add_ons", json=SETUP, headers=admin).status_code == 201
    assert client.patch("/v1/add_ons/setup_fee", json={"name": "X"}, headers=reader).status_code == 403
    assert client.delete("/v1/add_ons/setup_fee", headers=reader).status_code == 403
    assert client.get("/v1/add_ons").status_code == 401
    other = key(client, tenant="other")  # another tenant sees none of them and may use the same code
    assert client.get("/v1/add_ons", headers=other).json()["total"] == 0
    assert error(client.get("/v1/add_ons/setup_fee", headers=other)) == (404, "not_found", None)
    assert error(client.patch("/v1/add_ons/setup_fee", json={"name": "X"}, headers=other)) == (404, "not_found", None)
    assert client.post("/v1/add_ons", json=SETUP, headers=other).status_code == 201
    assert client.get("/v1/add_ons/setup_fee", headers=admin).json()["name"] == "Setup fee"
    # the tenant comes from the key, never from the body
    assert error(client.post("/v1/add_ons", json={**SETUP, "tenant": "other"}, headers=admin)) == (
        422, "invalid", "tenant")  # fmt: skip


def test_tax_codes_are_the_tenants_taxes(client: TestClient) -> None:
    admin = key(client)
    create_tax(client.app.state.sessions, TaxSpec(tenant="acme", code="vat", name="VAT", rate=Decimal(20)))
    r = client.post("/v1/add_ons", json={**SETUP, "tax_codes": ["vat"]}, headers=admin)
    assert (r.status_code, r.json()["tax_codes"]) == (201, ["vat"])
    assert error(client.patch("/v1/add_ons/setup_fee", json={"tax_codes": ["gst"]}, headers=admin)) == (
        422, "invalid", "tax_codes")  # fmt: skip
    assert client.patch("/v1/add_ons/setup_fee", json={"tax_codes": []}, headers=admin).json()["tax_codes"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "150.001"}, "amount"),  # EUR has two decimals: never rounded
        ({"amount": "10.5", "currency": "JPY"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": 150.0}, "amount"),  # a JSON number, not a decimal string
        ({"currency": "XXY"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"code": "has space"}, "code"),
        ({"name": ""}, "name"),
        ({"tax_codes": ["unknown"]}, "tax_codes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_add_on_is_refused_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/v1/add_ons", json={**SETUP, **body}, headers=key(client))
    assert error(r) == (422, "invalid", field), r.text


def test_a_taken_code_is_a_conflict(client: TestClient) -> None:
    admin = key(client)
    assert client.post("/v1/add_ons", json=SETUP, headers=admin).status_code == 201
    assert error(client.post("/v1/add_ons", json=SETUP, headers=admin)) == (409, "conflict", "code")
    assert client.post("/v1/add_ons", json={**SETUP, "code": "b", "amount": "150.50"},
                       headers=admin).status_code == 201  # fmt: skip
    assert error(client.patch("/v1/add_ons/b", json={"code": "setup_fee"}, headers=admin)) == (409, "conflict", "code")
    assert error(client.patch("/v1/add_ons/b", json={"name": None}, headers=admin)) == (422, "invalid", "name")
    assert error(client.patch("/v1/add_ons/b", json={"currency": "JPY"}, headers=admin)) == (
        422, "invalid", "amount")  # 150.50 EUR has no yen amount without rounding  # fmt: skip
    moved = client.patch("/v1/add_ons/b", json={"currency": "JPY", "amount": "20000"}, headers=admin).json()
    assert (moved["currency"], moved["amount"]) == ("JPY", "20000")
