"""A Lago event whose `properties` lack its billable metric's `field_name` is accepted and charged nothing for that
metric, as Lago does (Lago stores every event; its sum/max/latest/unique-count aggregation skips an event without
the property, and its post-validation only reports it in the `events.errors` webhook). Before, it was 422. A value
that is there but not a quantity is still refused, and the native path (ingest/translate.py: /v1 via OpenMeter
CloudEvents) still refuses a missing value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from api_helpers import bearer, topic_messages
from fastapi.testclient import TestClient

from meterstream.aggregation.ddl import create_schema
from meterstream.api.compat.lago.events import parse_lago_event
from meterstream.api.compat.lago.translate import translate_lago
from meterstream.ingest.translate import MeterDefinition, translate
from meterstream.schemas.settings import Settings

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
BASE = "/compat/lago/api/v1"


def lago(properties: object, code: str = "storage", tx: str = "tx-1") -> dict:
    return {"transaction_id": tx, "external_subscription_id": "sub-1", "code": code, "timestamp": 1764496800,
            "properties": properties}  # fmt: skip


@pytest.mark.parametrize("aggregation", ["SUM", "MAX", "LATEST", "UNIQUE_COUNT"])
@pytest.mark.parametrize("properties", [{"region": "eu"}, {"gb": None}, {}, None])
def test_missing_field_yields_nothing_for_the_metric_and_no_error(aggregation: str, properties: object) -> None:
    meter = MeterDefinition(slug="storage", event_type="storage", aggregation=aggregation, value_property="$.gb")
    out = translate_lago(parse_lago_event(lago(properties), NOW), [meter], "acme", NOW)
    assert (out.usage, out.errors, out.unmatched, out.not_metered) == ([], [], False, [meter])


def test_a_code_feeding_a_count_and_a_sum_meters_only_the_count() -> None:
    count = MeterDefinition(slug="uploads", event_type="upload", aggregation="COUNT")
    size = MeterDefinition(slug="upload_gb", event_type="upload", aggregation="SUM", value_property="$.gb")
    out = translate_lago(parse_lago_event(lago({"region": "eu"}, code="upload"), NOW), [count, size], "acme", NOW)
    assert [(u["meter"], u["quantity"]) for u in out.usage] == [("uploads", "1")]
    assert (out.errors, out.not_metered) == ([], [size])


def test_a_value_that_is_not_a_quantity_is_still_refused() -> None:
    meter = MeterDefinition(slug="storage", event_type="storage", aggregation="SUM", value_property="$.gb")
    for bad in ({"gb": -1}, {"gb": "ten"}, {"gb": ""}):
        out = translate_lago(parse_lago_event(lago(bad), NOW), [meter], "acme", NOW)
        assert [e.field for e in out.errors] == ["properties.gb"] and out.usage == []


def test_the_native_path_stays_strict() -> None:
    meter = MeterDefinition(slug="storage", event_type="storage", aggregation="SUM", value_property="$.gb")
    cloud = {"id": "e1", "source": "s", "type": "storage", "subject": "c1", "time": "2026-11-30T10:00:00Z",
             "data": {"region": "eu"}}  # fmt: skip
    out = translate(cloud, [meter])
    assert out.events == [] and [e.field for e in out.errors] == ["data.gb"]


@pytest.fixture
def lago_client(make_client, api_settings: Settings, chdb_client) -> TestClient:  # type: ignore[no-untyped-def]
    db = f"lago_missing_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    settings = api_settings.model_copy(update={"clickhouse_database": db})
    client = make_client(settings, clickhouse_client=chdb_client)
    client.settings = settings  # type: ignore[attr-defined]
    return client


@pytest.mark.kafka
def test_api_accepts_the_event_and_produces_nothing_for_the_metric(lago_client: TestClient) -> None:
    c = lago_client
    admin, ingest = bearer(c, "lago-m", "admin"), bearer(c, "lago-m", "ingest")
    body = {"billable_metric": {"name": "Storage", "code": "storage", "aggregation_type": "sum_agg",
                                "field_name": "gb"}}  # fmt: skip
    assert c.post(f"{BASE}/billable_metrics", json=body, headers=admin).status_code == 200
    recent = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())

    one = {**lago({"region": "eu"}, tx="tx-no-gb"), "timestamp": recent}
    resp = c.post(f"{BASE}/events", json={"event": one}, headers=ingest)
    assert resp.status_code == 200, resp.text
    ext = resp.json()["event"]["meterstream"]
    assert (ext["status"], ext["event_ids"]) == ("accepted", [])
    assert ext["not_metered"] == [{"billable_metric": "storage", "meter": "storage", "field": "properties.gb"}]

    batch = [{**lago({"gb": 3}, tx="tx-ok"), "timestamp": recent},
             {**lago({"gb": None}, tx="tx-null-gb"), "timestamp": recent}]  # fmt: skip
    resp = c.post(f"{BASE}/events/batch", json={"events": batch}, headers=ingest)
    assert resp.status_code == 200, resp.text  # not a 422 batch
    assert [e["meterstream"]["status"] for e in resp.json()["events"]] == ["accepted", "accepted"]

    usage = [v for _k, v in topic_messages(c.settings, "usage")]  # type: ignore[attr-defined]
    assert [(u["id"], u["quantity"]) for u in usage] == [("om:storage:4:lago:tx-ok", "3")]  # 3 GB, nothing else
    assert topic_messages(c.settings, "dead_letters") == []  # accepted: not dead-lettered either

    # Lago stores every event: GET finds the one no metric counted, with its properties (was 404)
    found = c.get(f"{BASE}/events/tx-no-gb", headers=admin)
    assert found.status_code == 200, found.text
    got = found.json()["event"]
    assert (got["transaction_id"], got["code"], got["properties"]) == ("tx-no-gb", "storage", {"region": "eu"})
    assert (got["meterstream"]["status"], got["meterstream"]["field"]) == ("not_metered", "properties.gb")
    assert c.get(f"{BASE}/events/tx-never-sent", headers=admin).status_code == 404
