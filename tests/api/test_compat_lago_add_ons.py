"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQL store, no broker): add-ons
(create/find/find_all/update/destroy) parse in the SDK's own models, with their taxes as Lago tax objects; a 404 and
422s reach it as LagoApiError with Lago's error body. Expected values are written from the requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AddOn, Tax
from served_app import serve

BASE = "/compat/lago/api/v1"


@pytest.fixture
def app_and_lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create("t1", "admin", "sdk")[1]
        with serve(client.app) as base:
            yield client, Client(api_key=key, api_url=f"{base}/compat/lago/")


def test_add_ons_through_the_sdk(app_and_lago) -> None:  # type: ignore[no-untyped-def]
    _client, lago = app_and_lago
    lago.taxes.create(Tax(name="TVA", code="fr_vat", rate=20.0))
    made = lago.add_ons.create(AddOn(name="Setup fee", code="setup_fee", amount_cents=15000, amount_currency="EUR",
                                     invoice_display_name="Setup (one-time)", description="Onboarding",
                                     tax_codes=["fr_vat"]))  # fmt: skip
    assert (made.code, made.name, made.invoice_display_name, made.description) == (
        "setup_fee", "Setup fee", "Setup (one-time)", "Onboarding")  # fmt: skip
    assert (made.amount_cents, made.amount_currency) == (15000, "EUR")
    assert [(t.code, t.name, t.rate) for t in made.taxes.__root__] == [("fr_vat", "TVA", 20.0)]
    assert made.created_at.endswith("Z")
    day = lago.add_ons.create(AddOn(name="Consulting day", code="day", amount_cents=120000, amount_currency="JPY"))
    assert (day.amount_cents, day.amount_currency, day.invoice_display_name, day.taxes.__root__) == (
        120000, "JPY", None, [])  # yen have no minor unit: 120000 yen  # fmt: skip

    found = lago.add_ons.find("setup_fee")
    assert (found.lago_id, found.amount_cents) == (made.lago_id, 15000)
    listed = lago.add_ons.find_all()
    assert [a.code for a in listed["add_ons"]] == ["setup_fee", "day"]
    assert (listed["meta"]["total_count"], listed["meta"]["current_page"]) == (2, 1)
    page2 = lago.add_ons.find_all({"page": 2, "per_page": 1})
    assert ([a.code for a in page2["add_ons"]], page2["meta"]["prev_page"], page2["meta"]["total_pages"]) == (
        ["day"], 1, 2)  # fmt: skip

    updated = lago.add_ons.update(AddOn(amount_cents=17550, name="Setup"), "setup_fee")
    assert (updated.name, updated.amount_cents, updated.description, updated.invoice_display_name) == (
        "Setup", 17550, "Onboarding", "Setup (one-time)")  # the rest kept  # fmt: skip
    assert [t.code for t in updated.taxes.__root__] == ["fr_vat"]
    dollars = lago.add_ons.update(AddOn(amount_currency="USD"), "setup_fee")
    assert (dollars.amount_cents, dollars.amount_currency) == (17550, "USD")  # amount_cents kept
    untaxed = lago.add_ons.update(AddOn(tax_codes=[], code="onboarding"), "setup_fee")
    assert (untaxed.code, untaxed.taxes.__root__, untaxed.lago_id) == ("onboarding", [], made.lago_id)

    gone = lago.add_ons.destroy("onboarding")
    assert (gone.code, gone.amount_cents) == ("onboarding", 17550)  # answers what it deleted
    assert [a.code for a in lago.add_ons.find_all()["add_ons"]] == ["day"]


def test_errors_reach_the_sdk_in_lagos_shape(app_and_lago) -> None:  # type: ignore[no-untyped-def]
    client, lago = app_and_lago
    with pytest.raises(LagoApiError) as missing:
        lago.add_ons.find("nope")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "add_on_not_found")
    with pytest.raises(LagoApiError) as missing_update:
        lago.add_ons.update(AddOn(name="X"), "nope")
    assert (missing_update.value.status_code, missing_update.value.response["code"]) == (404, "add_on_not_found")
    with pytest.raises(LagoApiError) as unknown_tax:
        lago.add_ons.create(AddOn(name="S", code="s", amount_cents=100, amount_currency="EUR", tax_codes=["gst"]))
    assert (unknown_tax.value.status_code, unknown_tax.value.response["code"]) == (422, "validation_errors")
    assert list(unknown_tax.value.response["error_details"]) == ["tax_codes"]
    with pytest.raises(LagoApiError) as currency:
        lago.add_ons.create(AddOn(name="S", code="s", amount_cents=100, amount_currency="XXY"))
    assert list(currency.value.response["error_details"]) == ["amount_currency"]
    with pytest.raises(LagoApiError) as negative:
        lago.add_ons.create(AddOn(name="S", code="s", amount_cents=-1, amount_currency="EUR"))
    assert list(negative.value.response["error_details"]) == ["amount_cents"]
    lago.add_ons.create(AddOn(name="S", code="s", amount_cents=100, amount_currency="EUR"))
    with pytest.raises(LagoApiError) as taken:
        lago.add_ons.create(AddOn(name="S2", code="s", amount_cents=200, amount_currency="EUR"))
    assert (taken.value.status_code, list(taken.value.response["error_details"])) == (422, ["code"])
    assert lago.add_ons.find("s").amount_cents == 100  # unchanged

    admin = {"Authorization": f"Bearer {client.app.state.keys.create('t1', 'admin', 't')[1]}"}
    no_name = {"add_on": {"code": "x", "amount_cents": 1, "amount_currency": "EUR"}}
    r = client.post(f"{BASE}/add_ons", json=no_name, headers=admin)
    assert (r.status_code, r.json()["error_details"]) == (422, {"name": ["required"]})
    r = client.post(f"{BASE}/add_ons", json={"add_on": {**no_name["add_on"], "name": "X", "amount_cents": "1"}},
                    headers=admin)  # fmt: skip
    assert (r.status_code, list(r.json()["error_details"])) == (422, ["amount_cents"])
    r = client.post(f"{BASE}/add_ons", json={"coupon": {}}, headers=admin)
    assert (r.status_code, r.json()["status"]) == (400, 400)
    other = {"Authorization": f"Bearer {client.app.state.keys.create('t2', 'admin', 't')[1]}"}
    r = client.get(f"{BASE}/add_ons/s", headers=other)  # another tenant's add-on is not found
    assert (r.status_code, r.json()["code"]) == (404, "add_on_not_found")
    assert client.get(f"{BASE}/add_ons", headers=other).json()["add_ons"] == []
