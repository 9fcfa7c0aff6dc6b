"""A usage price only on a meter that is a sum, through the HTTP entry points (entities/priceable.py): the
own /v1/plans, Lago's billable metrics and plans, OpenMeter's meters, on SQLite and PostgreSQL, no Kafka.

The audit's cases: a MAX meter `peak` (3 events of 10: its query says 10) priced at unit_amount 1 would be
billed 30; the demo catalog's cloud-standard plan (cloudco's default) prices `storage_gb_hours` and
`api_calls`, so a LATEST `storage_gb_hours` (readings 5, 7.5, 3: query 3) would be billed as 15.5 units and a
UNIQUE_COUNT `api_calls` (5 events of 3 users: query 3) as 5. Each is now refused where it is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import NoIngest, error, offline_settings
from api_helpers import role_key as key
from fastapi.testclient import TestClient

from meterstream.api.app import create_app

ROOT = Path(__file__).resolve().parents[2]
OM = "/compat/openmeter/api/v1"
LAGO = "/compat/lago/api/v1"
PK2 = {"code": "pk2", "name": "PK2", "currency": "USD", "usage": {"peak": {"model": "unit", "unit_amount": "1"}}}


@pytest.fixture
def client(fresh_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The app without Kafka on an empty store of each kind, its file catalog the demo catalog."""
    settings = offline_settings(tmp_path, fresh_url, catalog=ROOT / "deploy" / "demo_catalog.yaml")
    app = create_app(settings, ingest=NoIngest())  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def om_meter(slug: str, aggregation: str, value: str | None = "$.v") -> dict[str, object]:
    body: dict[str, object] = {"slug": slug, "eventType": slug, "aggregation": aggregation}
    if value is not None:
        body["valueProperty"] = value
    return body


def om_field(r) -> tuple[int, str | None]:
    return r.status_code, r.json().get("extensions", {}).get("field")


def test_v1_plan_pricing_a_lago_max_metric_is_refused(client: TestClient) -> None:
    admin = key(client, tenant="t1")
    metric = {"code": "peak", "name": "Peak", "aggregation_type": "max_agg", "field_name": "v"}
    assert client.post(f"{LAGO}/billable_metrics", json={"billable_metric": metric}, headers=admin).status_code == 200
    r = client.post("/v1/plans", json=PK2, headers=admin)
    assert error(r) == (422, "invalid", "usage.peak")
    assert "MAX" in r.json()["error"]["message"]
    assert client.get("/v1/plans/pk2", headers=admin).status_code == 404  # nothing published
    free = {**PK2, "usage": {"peak": {"model": "unit", "unit_amount": "0"}}}  # meters without charging
    assert client.post("/v1/plans", json=free, headers=admin).status_code == 201


def test_v1_plan_pricing_an_openmeter_max_meter_is_refused(client: TestClient) -> None:
    admin = key(client, tenant="t1")
    assert client.post(f"{OM}/meters", json=om_meter("peak", "MAX"), headers=admin).status_code == 201
    assert error(client.post("/v1/plans", json=PK2, headers=admin)) == (422, "invalid", "usage.peak")
    sums = {**PK2, "usage": {"calls": {"model": "unit", "unit_amount": "1"}}}  # no definition: native events
    assert client.post("/v1/plans", json=sums, headers=admin).status_code == 201


def test_a_meter_a_live_plan_prices_must_be_a_sum(client: TestClient) -> None:
    admin = key(client, tenant="t1")
    assert client.post("/v1/plans", json=PK2, headers=admin).status_code == 201
    assert om_field(client.post(f"{OM}/meters", json=om_meter("peak", "MAX"), headers=admin)) == (400, "aggregation")
    metric = {"code": "peak", "name": "Peak", "aggregation_type": "latest_agg", "field_name": "v"}
    lago = client.post(f"{LAGO}/billable_metrics", json={"billable_metric": metric}, headers=admin)
    assert lago.status_code == 422 and "aggregation" in lago.json()["error_details"]
    assert client.get(f"{OM}/meters", headers=admin).json() == []
    assert client.post(f"{OM}/meters", json=om_meter("peak", "SUM"), headers=admin).status_code == 201


def test_openmeter_meters_the_catalog_file_prices_must_be_sums(client: TestClient) -> None:
    """cloudco's default plan in deploy/demo_catalog.yaml prices storage_gb_hours and api_calls."""
    admin = key(client, tenant="cloudco")
    latest = client.post(f"{OM}/meters", json=om_meter("storage_gb_hours", "LATEST"), headers=admin)
    assert om_field(latest) == (400, "aggregation")
    assert "cloud-standard" in latest.json()["detail"]
    unique = client.post(f"{OM}/meters", json=om_meter("api_calls", "UNIQUE_COUNT", "$.user"), headers=admin)
    assert om_field(unique) == (400, "aggregation")
    assert client.get(f"{OM}/meters", headers=admin).json() == []
    # querying-only meters (not priced) and sums stay allowed
    assert client.post(f"{OM}/meters", json=om_meter("peak_gb", "MAX"), headers=admin).status_code == 201
    assert client.post(f"{OM}/meters", json=om_meter("storage_gb_hours", "SUM"), headers=admin).status_code == 201
    assert client.post(f"{OM}/meters", json=om_meter("api_calls", "COUNT", None), headers=admin).status_code == 201
    # a tenant without an assignment in the file: its meters are not priced there
    other = key(client, tenant="nobody")
    assert client.post(f"{OM}/meters", json=om_meter("api_calls", "UNIQUE_COUNT"), headers=other).status_code == 201


def test_lago_metrics_the_catalog_file_prices_must_be_sums(client: TestClient) -> None:
    admin = key(client, tenant="cloudco")
    metric = {"code": "storage_gb_hours", "name": "Storage", "aggregation_type": "latest_agg", "field_name": "gb"}
    r = client.post(f"{LAGO}/billable_metrics", json={"billable_metric": metric}, headers=admin)
    assert r.status_code == 422 and "cloud-standard" in r.json()["error_details"]["aggregation"][0]
    metric = {**metric, "aggregation_type": "sum_agg"}
    assert client.post(f"{LAGO}/billable_metrics", json={"billable_metric": metric}, headers=admin).status_code == 200
