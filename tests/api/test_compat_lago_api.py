"""Lago-compatible routes on the real broker (session fixture) and embedded ClickHouse (chdb), no pipeline:
what each request puts in Kafka, what it answers, in Lago's shapes. The SDK end to end is in
test_compat_lago_sdk.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from api_helpers import bearer, topic_messages
from fastapi.testclient import TestClient

from meterstream.aggregation.ddl import create_schema
from meterstream.api.compat.lago.events import PRECISE_AMOUNT_KEY
from meterstream.entities.unmatched import UnmatchedRepository
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
BASE = "/compat/lago/api/v1"


def unix(minutes_ago: int = 5) -> int:
    return int((datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp())


def iso_of(seconds: int | float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lago_event(tx: str, code: str = "storage", sub: str = "sub-1", **extra: object) -> dict:
    return {"transaction_id": tx, "external_subscription_id": sub, "code": code, "timestamp": unix(),
            "properties": {"gb": 10}, **extra}  # fmt: skip


@pytest.fixture
def lago_client(make_client, api_settings: Settings, chdb_client) -> TestClient:  # type: ignore[no-untyped-def]
    db = f"lago_api_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    settings = api_settings.model_copy(update={"clickhouse_database": db})
    client = make_client(settings, clickhouse_client=chdb_client)
    assert "lago" in client.app.state.compat  # api/app.py mounts api/compat/lago/routes.py by convention
    client.settings = settings  # type: ignore[attr-defined]
    return client


def usage(client: TestClient) -> list[dict]:
    return [v for _k, v in topic_messages(client.settings, "usage")]  # type: ignore[attr-defined]


def metric(client: TestClient, admin: dict, code: str, kind: str = "sum_agg", field: str | None = "gb") -> dict:
    body = {"billable_metric": {"name": code.title(), "code": code, "aggregation_type": kind, "field_name": field}}
    resp = client.post(f"{BASE}/billable_metrics", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    return resp.json()["billable_metric"]


def test_event_flow_metric_subscription_duplicates(lago_client: TestClient) -> None:
    c = lago_client
    admin, ingest = bearer(c, "lago-t", "admin"), bearer(c, "lago-t", "ingest")

    # a code no billable metric has yet: 200 (as Lago) but kept, listed and said so, not produced
    early = lago_event("tx-early", properties={"gb": 4})
    resp = c.post(f"{BASE}/events", json={"event": early}, headers=ingest)
    assert resp.status_code == 200, resp.text
    body = resp.json()["event"]
    assert body["meterstream"]["status"] == "unmatched"
    assert (body["transaction_id"], body["code"], body["timestamp"]) == (
        "tx-early",
        "storage",
        iso_of(early["timestamp"]),
    )
    assert UnmatchedRepository(c.app.state.sessions).count("lago-t", event_type="storage") == 1

    # the subscription belongs to customer acme; creating the metric replays the kept event
    resp = c.post(
        f"{BASE}/subscriptions",
        json={"subscription": {"external_id": "sub-1", "external_customer_id": "acme"}},
        headers=admin,
    )  # fmt: skip  (no plan_code: attribution only)
    assert resp.status_code == 200, resp.text
    assert resp.json()["subscription"]["external_customer_id"] == "acme"
    created = metric(c, admin, "storage")
    assert (created["code"], created["aggregation_type"], created["field_name"]) == ("storage", "sum_agg", "gb")
    assert UnmatchedRepository(c.app.state.sessions).count("lago-t", event_type="storage") == 0

    # one batch: a new event, the same transaction id again, and an event with a precise amount
    batch = [lago_event("tx-1", properties={"gb": 2.5, "region": "eu"}), lago_event("tx-1", properties={"gb": 999}),
             lago_event("tx-2", precise_total_amount_cents="1234.56")]  # fmt: skip
    resp = c.post(f"{BASE}/events/batch", json={"events": batch}, headers=ingest)
    assert resp.status_code == 200, resp.text
    assert [e["meterstream"]["status"] for e in resp.json()["events"]] == ["accepted", "duplicate", "accepted"]
    # the same batch again (a client retry): all duplicates, still a success
    resp = c.post(f"{BASE}/events/batch", json={"events": batch}, headers=ingest)
    assert resp.status_code == 200
    assert [e["meterstream"]["status"] for e in resp.json()["events"]] == ["duplicate"] * 3

    got = {u["id"]: u for u in usage(c)}
    assert sorted(got) == ["om:storage:4:lago:tx-1", "om:storage:4:lago:tx-2", "om:storage:4:lago:tx-early"]
    one = got["om:storage:4:lago:tx-1"]
    assert (one["tenant"], one["customer"], one["subject"], one["meter"]) == ("lago-t", "acme", "sub-1", "storage")
    assert one["quantity"] == "2.5"  # the first of the duplicates wins
    assert one["dimensions"] == {"gb": "2.5", "region": "eu"}
    assert got["om:storage:4:lago:tx-2"]["dimensions"][PRECISE_AMOUNT_KEY] == "1234.56"
    assert got["om:storage:4:lago:tx-early"]["quantity"] == "4"
    assert got["om:storage:4:lago:tx-early"]["time"] == iso_of(early["timestamp"])


def test_refusals_in_lago_shape_and_dead_lettered(lago_client: TestClient) -> None:
    c = lago_client
    admin, ingest, read = (bearer(c, "lago-r", r) for r in ("admin", "ingest", "read"))
    metric(c, admin, "storage")

    resp = c.post(f"{BASE}/events", json={"event": lago_event("tx-bad", timestamp="soon")}, headers=ingest)
    assert resp.status_code == 422
    body = resp.json()
    assert (body["status"], body["error"], body["code"]) == (422, "Unprocessable Entity", "validation_errors")
    assert list(body["error_details"]) == ["timestamp"]

    batch = [lago_event("tx-ok"), lago_event("tx-neg", properties={"gb": -1}), lago_event("tx-nocode", code=None)]
    resp = c.post(f"{BASE}/events/batch", json={"events": batch}, headers=ingest)
    assert resp.status_code == 422
    details = resp.json()["error_details"]
    assert sorted(details) == ["1", "2"]
    assert list(details["1"]) == ["properties.gb"] and list(details["2"]) == ["code"]
    assert [e["meterstream"]["status"] for e in resp.json()["events"]] == ["accepted", "rejected", "rejected"]
    assert [u["id"] for u in usage(c)] == ["om:storage:4:lago:tx-ok"]  # the valid one is stored
    letters = [v for _k, v in topic_messages(c.settings, "dead_letters")]  # type: ignore[attr-defined]
    assert sorted((orjson.loads(d["raw"]).get("transaction_id"), d["field"], d["stage"]) for d in letters) == [
        ("tx-bad", "timestamp", "api"), ("tx-neg", "properties.gb", "api"), ("tx-nocode", "code", "api"),
    ]  # fmt: skip

    too_many = {"events": [lago_event(f"tx-{i}") for i in range(101)]}
    resp = c.post(f"{BASE}/events/batch", json=too_many, headers=ingest)
    assert resp.status_code == 422 and "100" in resp.json()["error_details"]["events"][0]
    resp = c.post(f"{BASE}/events", json={"not_event": {}}, headers=ingest)
    assert resp.status_code == 400 and resp.json()["status"] == 400

    resp = c.post(f"{BASE}/events", json={"event": lago_event("tx-x")})
    assert resp.status_code == 401
    assert resp.json()["status"] == 401 and resp.json()["error"] == "Unauthorized"
    resp = c.post(f"{BASE}/events", json={"event": lago_event("tx-x")}, headers=read)
    assert resp.status_code == 403 and resp.json()["status"] == 403
    resp = c.post(f"{BASE}/billable_metrics", json={"billable_metric": {}}, headers=ingest)
    assert resp.status_code == 403

    resp = c.post(f"{BASE}/billable_metrics", headers=admin, json={"billable_metric": {
        "name": "W", "code": "w", "aggregation_type": "weighted_sum_agg", "field_name": "x"}})  # fmt: skip
    assert resp.status_code == 422 and list(resp.json()["error_details"]) == ["aggregation_type"]
    resp = c.post(f"{BASE}/billable_metrics", headers=admin, json={"billable_metric": {
        "name": "S", "code": "storage", "aggregation_type": "count_agg"}})  # fmt: skip
    assert resp.status_code == 422 and resp.json()["error_details"] == {"code": ["value_already_exist"]}
    listed = c.get(f"{BASE}/billable_metrics", headers=read).json()
    assert [m["code"] for m in listed["billable_metrics"]] == ["storage"] and listed["meta"]["total_count"] == 1


def test_find_reads_rated_usage_unmatched_and_dead_letters(lago_client: TestClient, chdb_client) -> None:  # type: ignore[no-untyped-def]
    c = lago_client
    admin, ingest, read = (bearer(c, "lago-f", r) for r in ("admin", "ingest", "read"))
    metric(c, admin, "storage")
    db = c.settings.clickhouse_database  # type: ignore[attr-defined]

    assert c.get(f"{BASE}/events/tx-none", headers=read).json() == {
        "status": 404, "error": "Not Found", "code": "event_not_found"}  # fmt: skip

    # a rated row as the sink writes it (the pipeline e2e test covers the real path)
    row = {"tenant": "lago-f", "id": "om:storage:4:lago:a/b", "customer": "acme", "subject": "sub-1",
           "meter": "storage", "time": "2026-11-30T10:00:00.250Z", "period": "2026-11", "quantity": "3",
           "amount": "0.3", "cumulative": "3", "currency": "USD", "plan": "basic", "line": "storage",
           "dimensions": {"gb": "3", PRECISE_AMOUNT_KEY: "12.5"}, "source": "lago", "src_partition": 0,
           "src_offset": 0}  # fmt: skip
    chdb_client.raw_insert(f"{db}.rated_usage", list(row), orjson.dumps(row), fmt="JSONEachRow")
    found = c.get(f"{BASE}/events/a%2Fb", headers=read)  # transaction ids may hold a slash (URL-encoded)
    assert found.status_code == 200, found.text
    ev = found.json()["event"]
    assert (ev["transaction_id"], ev["code"], ev["timestamp"]) == ("a/b", "storage", "2026-11-30T10:00:00.250Z")
    assert ev["properties"] == {"gb": "3"} and ev["precise_total_amount_cents"] == "12.5"
    assert (ev["external_subscription_id"], ev["external_customer_id"]) == ("sub-1", "acme")
    assert ev["meterstream"]["status"] == "rated"
    assert c.get(f"{BASE}/events/a%2Fb", headers=bearer(c, "other", "read")).status_code == 404  # tenant-scoped

    # kept unmatched (no metric for this code)
    c.post(f"{BASE}/events", json={"event": lago_event("tx-u", code="seats")}, headers=ingest)
    ev = c.get(f"{BASE}/events/tx-u", headers=read).json()["event"]
    assert (ev["code"], ev["meterstream"]["status"]) == ("seats", "unmatched")

    # refused downstream after the API accepted it (e.g. no plan prices it): the dead letter's reason
    usage_raw = {"id": "om:storage:4:lago:tx-d", "tenant": "lago-f", "customer": "nobody", "subject": "sub-9",
                 "meter": "storage", "quantity": "1", "time": "2026-11-30T09:00:00.000Z"}  # fmt: skip
    letter = {"topic": "usage-events", "partition": 1, "offset": 7, "stage": "rate", "field": "customer",
              "reason": "no plan for this customer", "tenant": "lago-f", "event_id": usage_raw["id"],
              "key": "lago-f/nobody", "raw": orjson.dumps(usage_raw).decode()}  # fmt: skip
    chdb_client.raw_insert(f"{db}.dead_letters", list(letter), orjson.dumps(letter), fmt="JSONEachRow")
    ev = c.get(f"{BASE}/events/tx-d", headers=read).json()["event"]
    assert ev["meterstream"]["status"] == "dead_lettered"
    assert ev["meterstream"]["reason"] == "no plan for this customer"
    assert ev["timestamp"] == "2026-11-30T09:00:00.000Z"


def test_unmatched_is_kept_once_and_replayed_at_its_reception_time(lago_client: TestClient) -> None:
    c = lago_client
    admin, ingest = bearer(c, "lago-u", "admin"), bearer(c, "lago-u", "ingest")
    before = datetime.now(UTC)
    for _ in range(2):  # a client retry of an event no metric matches: kept once
        resp = c.post(
            f"{BASE}/events", json={"event": lago_event("tx-s", code="seats", timestamp=None)}, headers=ingest
        )
        assert resp.status_code == 200 and resp.json()["event"]["meterstream"]["status"] == "unmatched"
    after = datetime.now(UTC)
    kept = UnmatchedRepository(c.app.state.sessions).list("lago-u")
    assert len(kept) == 1
    stamp = kept[0].event["timestamp"]  # the reception time, recorded since the event had none
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after

    metric(c, admin, "seats", kind="count_agg", field=None)
    assert [(u["id"], u["quantity"], u["time"]) for u in usage(c)] == [("om:seats:4:lago:tx-s", "1", stamp)]
    assert UnmatchedRepository(c.app.state.sessions).count("lago-u") == 0


def test_kafka_down_answers_503_in_lago_shape_and_reports_nothing_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from meterstream.api.app import create_app

    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:9", api_produce_timeout_s=1.0,
                        api_rate_limit_per_s=0.0)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        admin, ingest = bearer(c, "lago-k", "admin"), bearer(c, "lago-k", "ingest")
        metric(c, admin, "storage")
        resp = c.post(f"{BASE}/events/batch", json={"events": [lago_event("tx-1"), lago_event("tx-2")]}, headers=ingest)
        assert resp.status_code == 503
        assert int(resp.headers["Retry-After"]) >= 1
        body = resp.json()
        assert (body["status"], body["error"], body["code"]) == (503, "Service Unavailable", "unavailable")
        assert "nothing is reported stored" in body["error_details"]["message"][0]


def test_kept_events_left_behind_are_replayed_before_the_next_event_of_their_code(lago_client: TestClient) -> None:
    from meterstream.ingest.translate import MeterDefinition

    c = lago_client
    ingest = bearer(c, "lago-l", "ingest")
    c.post(f"{BASE}/events", json={"event": lago_event("tx-old", code="calls", properties=None)}, headers=ingest)
    # a meter for the code made outside this API (e.g. the OpenMeter API): no Lago replay happened
    c.app.state.lago.meters.create("lago-l", MeterDefinition(slug="calls", event_type="calls", aggregation="COUNT"))
    assert UnmatchedRepository(c.app.state.sessions).count("lago-l") == 1
    resp = c.post(f"{BASE}/events", json={"event": lago_event("tx-new", code="calls")}, headers=ingest)
    assert resp.json()["event"]["meterstream"]["status"] == "accepted"
    assert [u["id"] for u in usage(c)] == ["om:calls:4:lago:tx-old", "om:calls:4:lago:tx-new"]  # the old one first
    assert UnmatchedRepository(c.app.state.sessions).count("lago-l") == 0
