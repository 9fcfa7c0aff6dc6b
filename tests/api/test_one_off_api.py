"""One-off invoices through the own API (POST /v1/invoices) with FastAPI's TestClient, on SQLite and PostgreSQL:
issued and numbered at once, readable and renderable like every invoice, a repeated `reference` answered without
a second invoice, the refusals naming the field. Figures by hand in the comments."""

from __future__ import annotations

import pytest
from api_helpers import error
from api_helpers import role_key as key
from fastapi.testclient import TestClient


@pytest.fixture
def client(offline_client: TestClient) -> TestClient:
    admin = key(offline_client)
    r = offline_client.post("/v1/customers", headers=admin, json={
        "external_id": "c1", "name": "Kunde GmbH", "currency": "EUR", "country": "DE", "payment_terms_days": 14,
        "timezone": "Europe/Berlin"})  # fmt: skip
    assert r.status_code == 201, r.text
    for add_on in ({"code": "setup", "name": "Setup fee", "amount": "150.00", "currency": "EUR"},
                   {"code": "day", "name": "Consulting day", "amount": "1000.00", "currency": "USD"}):  # fmt: skip
        assert offline_client.post("/v1/add_ons", headers=admin, json=add_on).status_code == 201
    return offline_client


def test_issue_read_and_render_a_one_off_invoice(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    body = {
        "customer": "c1",
        "fees": [{"add_on": "setup"}, {"add_on": "day", "units": "1.5", "unit_amount": "900.00", "name": "Workshop"}],
    }
    r = client.post("/v1/invoices", json=body, headers=admin)
    assert r.status_code == 201, r.text
    inv = r.json()
    # 150.00 + 1.5 x 900.00 = 1500.00; 19 % German VAT = 285.00; total 1785.00
    assert (inv["status"], inv["period"], inv["currency"], inv["total"], inv["amount_due"], inv["number"]) == (
        "finalized", "one-off", "EUR", "1785.00", "1785.00", "DEMO-2026-000001")  # fmt: skip
    doc = client.get(f"/v1/invoices/{inv['invoice_id']}", headers=reader).json()
    assert [(x["code"], x["description"], x["quantity"], x["unit_price"], x["amount"]) for x in doc["lines"]] == [
        ("setup", "Setup fee", "1", "150.00", "150.00"), ("day", "Workshop", "1.5", "900.00", "1350.00")]  # fmt: skip
    assert (doc["subtotal"], doc["tax_total"], doc["total"]) == ("1500.00", "285.00", "1785.00")
    html = client.get(f"/v1/invoices/{inv['invoice_id']}.html", headers=reader)
    assert html.status_code == 200 and "DEMO-2026-000001" in html.text and "Workshop" in html.text
    listed = client.get("/v1/invoices", params={"period": "one-off"}, headers=reader).json()["items"]
    assert [x["invoice_id"] for x in listed] == [inv["invoice_id"]]
    # payments and credit notes work on it as on any invoice
    paid = client.post("/v1/payments", headers=admin, json={"invoice_id": inv["invoice_id"], "amount": "1785.00",
                                                            "currency": "EUR", "paid_at": inv["issue_date"],
                                                            "reference": "bank-1"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    assert client.get("/v1/invoices", params={"period": "one-off"}, headers=reader).json()["items"][0]["status"] == (
        "paid"
    )


def test_a_repeated_reference_is_answered_not_billed_again(client: TestClient) -> None:
    admin = key(client)
    body = {"customer": "c1", "reference": "PO-2026-77", "fees": [{"add_on": "setup", "units": "2"}]}
    first = client.post("/v1/invoices", json=body, headers=admin)
    again = client.post("/v1/invoices", json=body, headers=admin)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["invoice_id"] == first.json()["invoice_id"]
    assert again.json()["number"] == first.json()["number"] == "DEMO-2026-000001"
    other = {**body, "fees": [{"add_on": "setup", "units": "3"}]}
    assert error(client.post("/v1/invoices", json=other, headers=admin)) == (409, "conflict", "reference")
    assert len(client.get("/v1/invoices", headers=admin).json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"customer": "nobody", "fees": [{"add_on": "setup"}]}, (404, "not_found", None)),
        ({"customer": "c1", "fees": [{"add_on": "nothing"}]}, (404, "not_found", None)),
        ({"customer": "c1", "fees": [{"add_on": "day"}]}, (422, "invalid", "fees[0].unit_amount")),  # USD add-on
        ({"customer": "c1", "fees": [{"add_on": "setup", "units": "0"}]}, (422, "invalid", "fees[0].units")),
        ({"customer": "c1", "fees": []}, (422, "invalid", "fees")),
        ({"customer": "c1", "fees": [{"add_on": "setup", "units": 2.5}]}, (422, "invalid", "fees[0].units")),  # a float
    ],
)
def test_refusals_name_the_field(client: TestClient, body: dict, expected: tuple) -> None:
    assert error(client.post("/v1/invoices", json=body, headers=key(client))) == expected


def test_only_an_admin_key_issues_and_only_for_its_tenant(client: TestClient) -> None:
    body = {"customer": "c1", "fees": [{"add_on": "setup"}]}
    assert client.post("/v1/invoices", json=body, headers=key(client, "read")).status_code == 403
    # another tenant has neither the customer nor the add-on
    assert error(client.post("/v1/invoices", json=body, headers=key(client, tenant="other")))[0] == 404


def test_the_list_filters(client: TestClient) -> None:
    admin = key(client)
    made = client.post("/v1/invoices", json={"customer": "c1", "fees": [{"add_on": "setup"}]}, headers=admin).json()

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/invoices", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return [x["invoice_id"] for x in r.json()["items"]]

    day = made["issue_date"]
    assert ids(currency="eur", issued_from=day, issued_to=day, q="kunde") == [made["invoice_id"]]  # name, case aside
    assert ids(q=made["number"]) == [made["invoice_id"]]
    assert ids(currency="USD") == [] and ids(q="nobody") == [] and ids(issued_to="2020-01-01") == []
    assert error(client.get("/v1/invoices", params={"issued_from": "soon"}, headers=admin))[:2] == (422, "invalid")
