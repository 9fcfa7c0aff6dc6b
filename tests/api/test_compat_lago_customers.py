"""Lago customers on the one customer table (in-process): upsert by external_id, the field mapping, what
the own API sees, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from lago_app import BASE, headers, make_app

from meterstream.api.compat.lago.customers import customer_from_lago
from meterstream.entities.common import Invalid
from meterstream.entities.customers import get_customer_doc
from meterstream.schemas.entities import Address, CustomerDoc

FULL = {
    "external_id": "acme", "name": "Acme", "legal_name": "Acme SAS", "email": "billing@acme.test",
    "tax_identification_number": "FR123", "currency": "eur", "timezone": "Europe/Paris", "country": "fr",
    "address_line1": "1 rue de la Paix", "address_line2": "Bât. B", "city": "Paris", "zipcode": "75002",
    "state": "IDF", "net_payment_term": 30, "billing_configuration": {"invoice_grace_period": 3},
    "metadata": [{"key": "crm_id", "value": "42", "display_in_invoice": True}],
}  # fmt: skip


def test_every_field_maps_onto_the_customer_document() -> None:
    doc = customer_from_lago(FULL, "t1", None)
    assert doc == CustomerDoc(
        tenant="t1", external_id="acme", name="Acme", version=0, legal_name="Acme SAS", email="billing@acme.test",
        tax_id="FR123", country="FR", currency="EUR", timezone="Europe/Paris", invoice_grace_days=3,
        payment_terms_days=30, metadata={"crm_id": "42"},
        address=Address(line1="1 rue de la Paix", line2="Bât. B", city="Paris", postal_code="75002", state="IDF"),
    )  # fmt: skip


def test_upsert_keeps_what_the_request_leaves_out() -> None:
    stored = customer_from_lago(FULL, "t1", None)
    again = customer_from_lago({"external_id": "acme", "email": "ap@acme.test", "city": "Lyon"}, "t1", stored)
    assert (again.email, again.name, again.legal_name, again.currency) == ("ap@acme.test", "Acme", "Acme SAS", "EUR")
    assert (again.address.city, again.address.line1) == ("Lyon", "1 rue de la Paix")  # type: ignore[union-attr]
    cleared = customer_from_lago({"external_id": "acme", "legal_name": None, "timezone": None}, "t1", stored)
    assert (cleared.legal_name, cleared.timezone) == (None, "UTC")


def test_name_defaults() -> None:
    assert customer_from_lago({"external_id": "x", "firstname": "Ada", "lastname": "L"}, "t1", None).name == "Ada L"
    assert customer_from_lago({"external_id": "x"}, "t1", None).name == "x"


@pytest.mark.parametrize(("raw", "field"), [
    ({"name": "no id"}, "external_id"),
    ({"external_id": "x", "email": 5}, "email"),
    ({"external_id": "x", "net_payment_term": "30"}, "net_payment_term"),
    ({"external_id": "x", "metadata": [{"value": "v"}]}, "metadata[0].key"),
    ({"external_id": "x", "billing_configuration": {"payment_provider": "stripe"}},
     "billing_configuration.payment_provider"),
    ({"external_id": "x", "integration_customers": [{"integration_type": "netsuite"}]}, "integration_customers"),
])  # fmt: skip
def test_refused_with_the_field_named(raw: dict, field: str) -> None:
    with pytest.raises(Invalid) as err:
        customer_from_lago(raw, "t1", None)
    assert err.value.field == field


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as c:
        yield c


def test_create_is_an_upsert_and_find_reads_it(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    resp = client.post(f"{BASE}/customers", json={"customer": FULL}, headers=admin)
    assert resp.status_code == 200, resp.text
    created = resp.json()["customer"]
    assert (created["external_id"], created["currency"], created["country"], created["zipcode"]) == (
        "acme",
        "EUR",
        "FR",
        "75002",
    )
    assert (created["net_payment_term"], created["billing_configuration"]["invoice_grace_period"]) == (30, 3)
    assert created["metadata"][0]["key"] == "crm_id" and created["metadata"][0]["value"] == "42"
    assert created["applicable_timezone"] == "Europe/Paris"
    updated = client.post(f"{BASE}/customers", json={"customer": {"external_id": "acme", "name": "Acme Corp"}},
                          headers=admin).json()["customer"]  # fmt: skip
    assert (updated["lago_id"], updated["name"], updated["legal_name"]) == (created["lago_id"], "Acme Corp", "Acme SAS")
    assert updated["meterstream"]["version"] == 2
    # the one customer table: the store (own API, close) reads the same customer
    doc = get_customer_doc(client.app.state.sessions, "t1", "acme")
    assert (doc.name, doc.timezone, doc.payment_terms_days) == ("Acme Corp", "Europe/Paris", 30)
    assert client.get(f"{BASE}/customers/acme", headers=headers(client, role="read")).json()["customer"] == updated


def test_errors(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    missing = client.get(f"{BASE}/customers/nobody", headers=admin)
    assert (missing.status_code, missing.json()) == (404, {"status": 404, "error": "Not Found",
                                                          "code": "customer_not_found"})  # fmt: skip
    bad = client.post(f"{BASE}/customers", json={"customer": {"external_id": "x", "timezone": "Mars/Base"}},
                      headers=admin)  # fmt: skip
    assert bad.status_code == 422
    assert list(bad.json()["error_details"]) == ["timezone"]
    other = client.get(f"{BASE}/customers/x", headers=headers(client, tenant="t2"))
    assert other.status_code == 404  # nothing was written, and tenants do not see each other's
