"""Finance after a real close: `close_period` (embedded ClickHouse, subscription customers of the entity store)
finalizes October 2026 for the issue's three customers (the set-up of tests/entities/test_close_subscriptions_
finance.py), then the own API and the Lago SDK read, render, pay, credit and export those invoices.

Figures by hand (the same as that test's): Muster GmbH (DE, reverse charge) 1,250.00 + 99.00 = 1,349.00 EUR;
Marie Curie (FR, 20 %) 42.37 + 19.99 = 62.36 + 12.47 VAT = 74.83 EUR; Example Inc. (US, 7.25 %) usage 180.00 +
fee 50.00 + minimum true-up 70.00 = 300.00 + 21.75 tax (13.05 + 3.63 + 5.07) = 321.75 USD. Numbered
ACME-2026-000001..3 in customer order.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import orjson
import pytest
from api_helpers import offline_app
from fastapi.testclient import TestClient
from lago_python_client.client import Client
from served_app import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "entities"))

from test_close_subscriptions_finance import close, setup

from meterstream.aggregation.ddl import create_schema

T = "acme"  # the tenant of the close's set-up


@pytest.fixture
def closed(chdb_client, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An app whose store holds October's three finalized invoices, and {customer: invoice id}."""
    db = f"fa_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    with TestClient(offline_app(tmp_path / "home")) as client:
        sf = client.app.state.sessions
        setup(sf, chdb_client, db)
        result = close(chdb_client, db, sf, "2026-10", tmp_path / "inv")
        assert result.failed == []
        yield client, {d["customer"]: d["id"] for d in result.invoices}


def test_finance_on_the_closes_invoices(closed) -> None:  # type: ignore[no-untyped-def]
    client, ids = closed
    admin = {"Authorization": f"Bearer {client.app.state.keys.create(T, 'admin', 'fin')[1]}"}

    items = client.get("/v1/invoices", params={"period": "2026-10"}, headers=admin).json()["items"]
    assert [(i["customer"], i["number"], i["status"], i["currency"], i["total"], i["amount_due"]) for i in items] == [
        ("de-gmbh", "ACME-2026-000001", "finalized", "EUR", "1349.00", "1349.00"),
        ("fr-consumer", "ACME-2026-000002", "finalized", "EUR", "74.83", "74.83"),
        ("us-inc", "ACME-2026-000003", "finalized", "USD", "321.75", "321.75")]  # fmt: skip

    french = client.get(f"/v1/invoices/{ids['fr-consumer']}.html", headers=admin)
    assert french.status_code == 200 and "74,83" in french.text and "ACME-2026-000002" in french.text  # fr_FR
    pdf = client.get(f"/v1/invoices/{ids['de-gmbh']}.pdf", headers=admin)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    # Marie Curie pays 74.83 in full; Example Inc. is credited the 70.00 true-up: 321.75 - 70.00 = 251.75 due
    payment = {"customer": "fr-consumer", "amount": "74.83", "currency": "EUR", "paid_at": "2026-11-05",
               "reference": "sepa-fr-1"}  # fmt: skip
    paid = client.post("/v1/payments", json=payment, headers=admin)
    assert paid.status_code == 201
    note = client.post("/v1/credit_notes", json={"invoice_id": ids["us-inc"], "reason": "minimum waived",
                                                 "lines": [{"description": "Minimum commitment", "amount": "70.00"}],
                                                 "issue_date": "2026-11-20"}, headers=admin)  # fmt: skip
    assert (note.status_code, note.json()["number"], note.json()["credit"]) == (201, "ACME-CN-2026-000001", "70.00")

    with serve(client.app) as base:
        lago = Client(api_key=admin["Authorization"].removeprefix("Bearer "), api_url=f"{base}/compat/lago/")
        us = lago.invoices.find(ids["us-inc"])
        assert (us.number, us.currency, us.fees_amount_cents, us.taxes_amount_cents, us.total_amount_cents,
                us.total_offsetted_credit_note_amount_cents, us.total_due_amount_cents) == (
            "ACME-2026-000003", "USD", 30000, 2175, 32175, 7000, 25175)  # fmt: skip
        assert [(f.amount_cents, f.taxes_rate, f.taxes_amount_cents) for f in us.fees.__root__] == [
            (18000, 7.25, 1305), (5000, 7.25, 363), (7000, 7.25, 507)]  # fmt: skip
        (fr,) = lago.invoices.find_all({"payment_status": "succeeded"})["invoices"]
        assert [(f.amount_cents, f.taxes_rate, f.taxes_amount_cents) for f in fr.fees.__root__] == [
            (4237, 20.0, 847), (1999, 20.0, 400)]  # fmt: skip
        assert (fr.number, fr.fees_amount_cents, fr.taxes_amount_cents, fr.total_paid_amount_cents) == (
            "ACME-2026-000002", 6236, 1247, 7483)  # fmt: skip
        de = lago.invoices.find(ids["de-gmbh"])
        assert [(t.tax_rate, t.amount_cents, t.fees_amount_cents) for t in de.applied_taxes.__root__] == [
            (0.0, 0, 134900)]  # fmt: skip

    raw = client.get(f"/compat/lago/api/v1/invoices/{ids['fr-consumer']}", headers=admin).content
    assert b'"taxes_rate":20,' in raw and b"E+" not in raw  # a plain JSON number, as Lago writes it

    export = orjson.loads(client.get("/v1/exports/2026-11.json", headers=admin).content)  # issued on Nov 1
    assert [(i["number"], i["status"], i["paid"], i["credited"]) for i in export["invoices"]] == [
        ("ACME-2026-000001", "finalized", "0.00", "0.00"), ("ACME-2026-000002", "paid", "74.83", "0.00"),
        ("ACME-2026-000003", "finalized", "0.00", "70.00")]  # fmt: skip
    assert [(n["number"], n["total"]) for n in export["credit_notes"]] == [("ACME-CN-2026-000001", "70.00")]
    assert [(p["reference"], p["amount"]) for p in export["payments"]] == [("sepa-fr-1", "74.83")]
