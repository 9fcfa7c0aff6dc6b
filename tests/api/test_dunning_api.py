"""The own dunning API (/v1/dunning_policies, /v1/customers/{id}/dunning_policy, /v1/customers/{id}/dunning)
through FastAPI's TestClient on SQLite. Expected values are written from the requests; the state after a
collections run is checked against the worked example (invoice 100.00 EUR due 2026-10-15, +3 days reminder,
2 % after 30 days = 2.00 on 11-14, suspension the day after the last reminder, 10-19)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from api_helpers import error, offline_app
from api_helpers import role_key as key
from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = offline_app(tmp_path)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def customer(client: TestClient) -> None:
    from meterstream.entities.customers import put_customer
    from meterstream.schemas.entities import CustomerDoc

    put_customer(client.app.state.sessions, CustomerDoc(tenant="acme", external_id="c1", name="C1", version=0))


POLICY = {"reminder_days": [3], "late_fee": {"kind": "percent", "value": "2"}, "suspend_after_last": True}


def test_policies_default_and_override(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    r = client.put("/v1/dunning_policies/default", json=POLICY, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["late_fee"] == {"kind": "percent", "value": "2", "after_days": 30, "period_days": 30,
                                    "max_periods": None}  # fmt: skip
    assert client.put("/v1/dunning_policies/default", json={"reminder_days": [5, 10]}, headers=admin).status_code == 200
    assert client.get("/v1/dunning_policies/default", headers=reader).json()["reminder_days"] == [5, 10]
    assert error(client.put("/v1/customers/c1/dunning_policy", json=POLICY, headers=admin)) == (404, "not_found", None)
    customer(client)
    assert client.put("/v1/customers/c1/dunning_policy", json=POLICY, headers=admin).status_code == 201
    listed = client.get("/v1/dunning_policies", headers=reader).json()["items"]
    assert [(p["customer"], p["reminder_days"]) for p in listed] == [(None, [5, 10]), ("c1", [3])]
    # reads cannot write; another tenant sees nothing
    assert error(client.put("/v1/dunning_policies/default", json=POLICY, headers=reader))[0] == 403
    assert client.get("/v1/dunning_policies", headers=key(client, "read", "other")).json()["items"] == []
    assert client.delete("/v1/customers/c1/dunning_policy", headers=admin).status_code == 204
    state = client.get("/v1/customers/c1/dunning", headers=reader).json()
    assert (state["policy_source"], state["policy"]["reminder_days"], state["suspended"]) == ("tenant", [5, 10], False)
    assert client.delete("/v1/dunning_policies/default", headers=admin).status_code == 204
    assert client.get("/v1/customers/c1/dunning", headers=reader).json()["policy"] is None
    assert error(client.get("/v1/customers/nobody/dunning", headers=reader)) == (404, "not_found", None)


@pytest.mark.parametrize(("body", "field"), [
    ({"reminder_days": [7, 3]}, "reminder_days"),
    ({"reminder_days": [0]}, "reminder_days[0]"),
    ({"late_fee": {"kind": "percent", "value": "101"}}, "late_fee.value"),
    ({"late_fee": {"kind": "percent", "value": 2.5}}, "late_fee.value"),  # a JSON number: refused
    ({"late_fee": {"kind": "interest", "value": "1"}}, "late_fee.kind"),
    ({"late_fee": {"kind": "fixed", "value": "5", "period_days": 0}}, "late_fee.period_days"),
    ({"suspend": True}, "suspend"),
])  # fmt: skip
def test_bad_policies_are_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    status, code, named = error(client.put("/v1/dunning_policies/default", json=body, headers=key(client)))
    assert (status, code, named) == (422, "invalid", field)


def test_the_state_after_a_collections_run(client: TestClient) -> None:
    from meterstream.entities import invoices
    from meterstream.invoice_emitter.dunning_run import run_dunning

    admin = key(client)
    customer(client)
    client.put("/v1/customers/c1/dunning_policy", json=POLICY, headers=admin)
    sf = client.app.state.sessions
    invoices.upsert_draft(sf, tenant="acme", invoice_id="inv-1", customer="c1", period="2026-09", currency="EUR",
                          total="100.00", issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15),
                          document=b"{}")  # fmt: skip
    invoices.finalize(sf, "acme", "inv-1", "ACME", at=datetime(2026, 10, 1, tzinfo=UTC))
    invoices.mark_overdue(sf, date(2026, 11, 14))
    run_dunning(sf, date(2026, 11, 14))
    state = client.get("/v1/customers/c1/dunning", headers=admin).json()
    assert [(s["step"], s["due_on"]) for s in state["steps"]] == [
        ("reminder:1", "2026-10-18"),
        ("suspend", "2026-10-19"),
        ("late_fee:1", "2026-11-14"),
    ]
    assert (state["suspended"], state["suspended_for"]) == (True, ["inv-1"])
    assert [(c["amount"], c["amount_minor"], c["billed_invoice_id"]) for c in state["charges"]] == [("2.00", 200, None)]
