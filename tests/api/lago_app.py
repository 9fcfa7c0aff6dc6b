"""An in-process app for the Lago entity tests (no broker, no ClickHouse): SQL store only, fast.

Plans, customers and subscriptions touch only the SQL store, so these tests run without Kafka; current
usage gets a stand-in for the close's `draft_usage` (`app.state.lago.draft_usage = ...`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from api_helpers import offline_app
from fastapi.testclient import TestClient

from meterstream.ingest.translate import MeterDefinition

BASE = "/compat/lago/api/v1"


def make_app(home: Path, clickhouse_client: Any = None) -> TestClient:
    return TestClient(offline_app(home, relay=False, clickhouse_client=clickhouse_client))


def headers(client: TestClient, tenant: str = "t1", role: str = "admin") -> dict[str, str]:
    _info, token = client.app.state.keys.create(tenant, role, "test")  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def add_metric(client: TestClient, tenant: str, code: str, aggregation: str = "SUM", field: str | None = "gb") -> str:
    """A billable metric (= meter definition); returns its lago_id."""
    meter = client.app.state.lago.meters.create(  # type: ignore[attr-defined]
        tenant, MeterDefinition(slug=code, event_type=code, aggregation=aggregation,
                                value_property=f"$.{field}" if field else None), name=code.title(),
    )  # fmt: skip
    return meter.id


def storage_and_calls(client: TestClient, tenant: str = "t1") -> tuple[str, str]:
    """The billable metrics `storage` (sum of `gb`) and `api_calls` (a count); their lago_ids."""
    storage = add_metric(client, tenant, "storage")
    return storage, add_metric(client, tenant, "api_calls", aggregation="COUNT", field=None)


def plan_body(code: str, metric_id: str, **extra: Any) -> dict[str, Any]:
    """A monthly USD plan: a 10.00 fee in arrears and graduated storage (0-10 at 0.50, then 0.40)."""
    plan = {
        "name": code.title(), "code": code, "interval": "monthly", "amount_cents": 1000, "amount_currency": "USD",
        "pay_in_advance": False,
        "charges": [{"billable_metric_id": metric_id, "charge_model": "graduated", "properties": {"graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "0.50", "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "0.40", "flat_amount": "0"}]}}],
    }  # fmt: skip
    plan.update(extra)
    return {"plan": plan}


def subscribe_to_pro(client: TestClient, tenant: str, start: datetime) -> dict[str, str]:
    """Through the Lago routes: metrics `storage` (SUM of gb) and `api_calls` (COUNT), plan `pro` (`plan_body` plus
    api_calls at 0.02 each) and customer acme's subscription `s1` to it from `start`. Returns the admin headers."""
    admin = headers(client, tenant)
    storage = add_metric(client, tenant, "storage")
    calls = add_metric(client, tenant, "api_calls", aggregation="COUNT", field=None)
    body = plan_body("pro", storage)
    body["plan"]["charges"].append({"billable_metric_id": calls, "charge_model": "standard",
                                    "properties": {"amount": "0.02"}})  # fmt: skip
    assert client.post(f"{BASE}/plans", json=body, headers=admin).status_code == 200
    sub = {"external_id": "s1", "external_customer_id": "acme", "plan_code": "pro",
           "subscription_at": start.isoformat()}  # fmt: skip
    assert client.post(f"{BASE}/subscriptions", json={"subscription": sub}, headers=admin).status_code == 200
    return admin


def pro_row(tenant: str, meter: str, quantity: str, amount: str, at: datetime) -> list[Any]:
    """A rated_usage row (aggregation/rows.py RATED_COLUMNS) of acme's subscription s1 to `pro`."""
    return [tenant, uuid.uuid4().hex, "acme", "s1", meter, at, f"{at:%Y-%m}", Decimal(quantity), Decimal(amount),
            Decimal(0), "USD", "pro@1", meter, {}, "", 0, 0]  # fmt: skip
