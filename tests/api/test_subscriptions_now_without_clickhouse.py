"""Subscription writes while a configured ClickHouse is down (api/closed_periods.py): those taking effect in the
customer's current month need no closed-month read; one dated earlier is checked against the store only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from api_helpers import offline_app
from fastapi.testclient import TestClient

from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.schemas.entities import CustomerDoc, PlanVersionDoc

T = "acme"


def test_writes_taking_effect_now_succeed_while_clickhouse_is_down(tmp_path: Path) -> None:
    application = offline_app(tmp_path, relay=False)
    application.state.settings.clickhouse_http_port = 9  # configured, nothing listens
    with TestClient(application) as client:
        sf = application.state.sessions
        publish_plan(sf, PlanVersionDoc(tenant=T, code="basic", version=0, name="basic", currency="USD",
                                        usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}}))  # fmt: skip
        for name in ("org-b", "org-c", "org-d", "org-e"):
            put_customer(sf, CustomerDoc(tenant=T, external_id=name, name=name, version=0, currency="USD"))
        admin = {"Authorization": f"Bearer {application.state.keys.create(T, 'admin', 'a')[1]}"}
        made = client.post("/v1/subscriptions", json={"external_id": "s1", "customer": "org-b", "plan": "basic",
                                                      "start": "2099-01-01T00:00:00Z"}, headers=admin)  # fmt: skip
        assert made.status_code == 201, made.text
        cancel = client.post("/v1/subscriptions/s1/cancel", json={}, headers=admin)  # now
        assert cancel.status_code == 200, cancel.text
        body = {"subscription": {"external_id": "s-lago", "external_customer_id": "org-c", "plan_code": "basic"}}
        lago = client.post("/compat/lago/api/v1/subscriptions", json=body, headers=admin)  # starts now
        assert lago.status_code == 200, lago.text
        ended = client.delete("/compat/lago/api/v1/subscriptions/s-lago", headers=admin)  # terminated now
        assert ended.status_code == 200, ended.text
        month = datetime.now(UTC).strftime("%Y-%m-01T00:00:00Z")  # earlier this month: no closed month holds it
        this_month = client.post("/v1/subscriptions", json={"external_id": "s3", "customer": "org-d", "plan": "basic",
                                                            "start": month}, headers=admin)  # fmt: skip
        assert this_month.status_code == 201, this_month.text
        back = client.post("/v1/subscriptions", json={"external_id": "s2", "customer": "org-e", "plan": "basic",
                                                      "start": "2020-01-01T00:00:00Z"}, headers=admin)  # fmt: skip
        assert back.status_code == 201, back.text  # back-dated: the store's boundary only (nothing invoiced)
    application.state.engine.dispose()
