"""/compat/openmeter over plain HTTP: content types, RFC 7807 problems, filterGroupBy forms, 503 on a Kafka
outage (the SDK tests cover the happy paths)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from api_helpers import topic_messages
from fastapi.testclient import TestClient

from meterstream.aggregation.ddl import create_schema
from meterstream.api.app import create_app
from meterstream.api.ingest import Unavailable

pytestmark = pytest.mark.kafka
P = "/compat/openmeter/api/v1"
EVENT = {"specversion": "1.0", "id": "e1", "source": "s", "type": "prompt", "subject": "u1",
         "time": "2026-11-30T10:00:00Z", "data": {"tokens": 3, "model": "a"}}  # fmt: skip


class DownIngest:
    """An IngestService whose Kafka never acknowledges."""

    def submit(self, tenant, events):
        raise Unavailable(7, "Kafka did not acknowledge in time")

    def dead_letter(self, tenant, items):
        raise Unavailable(7, "Kafka did not acknowledge in time")

    def close(self):
        pass


@pytest.fixture
def om(api_settings, chdb_client):
    db = f"om_routes_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    settings = api_settings.model_copy(update={"clickhouse_database": db})
    app = create_app(settings, clickhouse_client=chdb_client)
    with TestClient(app) as client:
        token = app.state.keys.create("acme", "admin", "t")[1]
        client.headers["Authorization"] = f"Bearer {token}"
        client.post(f"{P}/meters", json={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                        "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}})  # fmt: skip
        fields = ["tenant", "id", "customer", "subject", "meter", "time", "period", "quantity", "dimensions"]
        rows = [("r1", "a", "10"), ("r2", "b", "5"), ("r3", "a", "1.5")]
        body = b"\n".join(
            orjson.dumps({"tenant": "acme", "id": i, "customer": "u1", "subject": "u1", "meter": "tokens",
                          "time": "2026-11-30T10:00:00.000Z", "period": "2026-11", "quantity": q,
                          "dimensions": {"model": m}})
            for i, m, q in rows
        )  # fmt: skip
        chdb_client.raw_insert(f"{db}.rated_usage", fields, body, fmt="JSONEachRow")
        yield client


def _problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    assert body["instance"] == r.request.url.path
    if field is not None:
        assert body["extensions"]["field"] == field
    return body


def test_content_types(om):
    bad = om.post(f"{P}/events", content=orjson.dumps(EVENT), headers={"content-type": "text/plain"})
    _problem(bad, 415)
    batch_as_single = om.post(f"{P}/events", content=orjson.dumps([EVENT]),
                              headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    _problem(batch_as_single, 400, "$")
    batch = {"content-type": "application/cloudevents-batch+json; charset=utf-8"}
    single_as_batch = om.post(f"{P}/events", content=orjson.dumps(EVENT), headers=batch)
    _problem(single_as_batch, 400, "$")
    _problem(om.post(f"{P}/events", content=b"{nope", headers={"content-type": "application/json"}), 400, "$")
    _problem(om.post(f"{P}/events", content=b"[]", headers={"content-type": "application/json"}), 400, "$")


def test_auth_and_not_found_are_problems(om):
    r = om.get(f"{P}/meters", headers={"Authorization": "Bearer msk_x.y"})
    _problem(r, 401)
    _problem(om.get(f"{P}/meters/nope"), 404)
    _problem(om.get(f"{P}/meters/nope/query"), 404)
    _problem(om.get(f"{P}/customers/nope"), 404)
    _problem(om.get(f"{P}/subjects/nope"), 404)


@pytest.mark.parametrize(
    "params",
    [
        {"filterGroupBy[model]": "a"},  # OpenMeter's deepObject form
        {"filterGroupBy": '{"model": "a"}'},  # a JSON object
        {"filterGroupBy": "{'model': 'a'}"},  # what openmeter==1.0.0b236 sends (str of a dict)
    ],
)
def test_filter_group_by_forms(om, params):
    r = om.get(f"{P}/meters/tokens/query", params=params)
    assert r.status_code == 200, r.text
    assert [row["value"] for row in r.json()["data"]] == [11.5]  # r1 + r3 = 10 + 1.5


@pytest.mark.parametrize("value", ["[1, 2]", "__import__('os')", "{'model': 1}"])
def test_bad_filter_group_by_is_refused_never_evaluated(om, value):
    _problem(om.get(f"{P}/meters/tokens/query", params={"filterGroupBy": value}), 400, "filterGroupBy")


def test_bad_query_parameters(om):
    _problem(om.get(f"{P}/meters/tokens/query", params={"windowSize": "WEEK"}), 400, "windowSize")
    _problem(om.get(f"{P}/meters/tokens/query", params={"windowTimeZone": "Nowhere/City"}), 400, "windowTimeZone")
    _problem(om.get(f"{P}/meters/tokens/query", params={"from": "yesterday"}), 400, "from")


def test_kafka_outage_is_503_and_unmatched_events_are_not_left_behind(om, api_settings):
    single = {"content-type": "application/cloudevents+json"}
    call = {**EVENT, "id": "c1", "type": "call"}
    assert om.post(f"{P}/events", content=orjson.dumps(call), headers=single).status_code == 204  # unmatched
    real = om.app.state.ingest
    om.app.state.ingest = DownIngest()
    r = om.post(f"{P}/events", content=orjson.dumps(EVENT), headers=single)
    _problem(r, 503)
    assert r.headers["retry-after"] == "7"
    # creating a meter succeeds while Kafka is down; the replay of c1 fails and c1 stays kept ...
    r = om.post(f"{P}/meters", json={"slug": "calls", "eventType": "call", "aggregation": "COUNT"})
    assert r.status_code == 201, r.text
    assert [u.event_id for u in om.app.state.openmeter.unmatched.list("acme")] == ["c1"]
    # ... and the next event of that type, Kafka back, replays it first
    om.app.state.ingest = real
    r = om.post(f"{P}/events", content=orjson.dumps({**call, "id": "c2"}), headers=single)
    assert r.status_code == 204, r.text
    assert sorted(v["id"] for _, v in topic_messages(api_settings, "usage")) == ["om:calls:1:s:c1", "om:calls:1:s:c2"]
    assert om.app.state.openmeter.unmatched.list("acme") == []


def test_edge_inputs_are_400_not_500(om):
    _problem(om.get(f"{P}/customers", params={"page": 10**20}), 400, "page")  # would overflow SQLite's OFFSET
    _problem(om.get(f"{P}/meters", params={"page": 10**20}), 400, "page")
    naive = {"slug": "c", "eventType": "t", "aggregation": "COUNT", "eventFrom": "2026-01-01T00:00:00"}
    _problem(om.post(f"{P}/meters", json=naive), 400, "eventFrom")
    jsonpath = {"slug": "d", "eventType": "t", "aggregation": "SUM", "valueProperty": "$..a[?(@.b>1)]"}
    _problem(om.post(f"{P}/meters", json=jsonpath), 400, "valueProperty")
    _problem(om.post(f"{P}/customers", json={"name": "n", "currency": "12"}), 400, "currency")
    _problem(om.post(f"{P}/subjects", json=[{"key": "k"}, {"key": ""}]), 400, "[1].key")


def test_another_tenant_sees_nothing(om):
    om.post(f"{P}/customers", json={"name": "ACME", "key": "acme-corp", "usageAttribution": {"subjectKeys": ["u1"]}})
    om.post(f"{P}/subjects", json=[{"key": "u1"}])
    other = {"Authorization": f"Bearer {om.app.state.keys.create('globex', 'admin', 'other')[1]}"}
    assert om.get(f"{P}/meters", headers=other).json() == []
    _problem(om.get(f"{P}/meters/tokens", headers=other), 404)
    _problem(om.get(f"{P}/meters/tokens/query", headers=other), 404)
    _problem(om.get(f"{P}/customers/acme-corp", headers=other), 404)
    assert om.get(f"{P}/customers", headers=other).json()["items"] == []
    assert om.get(f"{P}/subjects", headers=other).json() == []
    assert om.get(f"{P}/events", headers=other).json() == []
    # its own meter of the same slug reads only its own rows (none): the acme rows stay invisible
    r = om.post(f"{P}/meters", headers=other, json={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                                    "valueProperty": "$.tokens"})  # fmt: skip
    assert r.status_code == 201
    assert om.get(f"{P}/meters/tokens/query", headers=other).json()["data"] == []
    assert [row["value"] for row in om.get(f"{P}/meters/tokens/query").json()["data"]] == [16.5]  # 10 + 5 + 1.5


def test_an_event_outside_the_time_window_is_dead_lettered_not_lost(om, api_settings):
    old = {**EVENT, "id": "old-1", "time": "2020-01-01T00:00:00Z"}
    r = om.post(f"{P}/events", content=orjson.dumps(old), headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 204, r.text  # as OpenMeter answers; the refusal is kept, with its reason
    assert topic_messages(api_settings, "usage") == []
    letters = [v for _, v in topic_messages(api_settings, "dead_letters")]
    assert [(v["stage"], v["field"], v["event_id"]) for v in letters] == [("api", "time", "om:tokens:1:s:old-1")]


def test_an_event_the_processor_could_not_rate_is_listed_with_its_reason(om, chdb_client):
    """An accepted CloudEvent whose usage event the processor dead-letters (here: a meter no plan prices) stays in
    `events.list`, rebuilt from what its meter kept and with the processor's reason (it vanished from the list)."""
    db = om.app.state.settings.clickhouse_database
    usage = {"tenant": "acme", "id": "om:tokens:3:web:tok-1", "customer": "u1", "subject": "u1",
             "meter": "tokens", "quantity": "42", "time": "2026-11-30T11:00:00.000Z", "dimensions": {"model": "b"},
             "source": "web"}  # fmt: skip
    reason = "plan 'cloud-standard' does not price meter 'tokens'"
    rows = [
        {"topic": "usage-events", "partition": 0, "offset": 7, "record": 0, "stage": "rate", "field": "meter",
         "reason": reason, "tenant": "acme", "event_id": usage["id"], "raw": orjson.dumps(usage).decode()},
        # another tenant's, and a hashed id (names no source and id): not listed
        {"topic": "usage-events", "partition": 0, "offset": 8, "record": 0, "stage": "rate", "field": "meter",
         "reason": reason, "tenant": "globex", "event_id": "om:tokens:3:web:tok-2",
         "raw": orjson.dumps({**usage, "tenant": "globex", "id": "om:tokens:3:web:tok-2"}).decode()},
        {"topic": "usage-events", "partition": 0, "offset": 9, "record": 0, "stage": "rate", "field": "meter",
         "reason": reason, "tenant": "acme", "event_id": "om:tokens:h:" + "0" * 64,
         "raw": orjson.dumps({**usage, "id": "om:tokens:h:" + "0" * 64}).decode()},
    ]  # fmt: skip
    body = b"\n".join(orjson.dumps(r) for r in rows)
    chdb_client.raw_insert(f"{db}.dead_letters", list(rows[0]), body, fmt="JSONEachRow")
    listed = om.get(f"{P}/events", params={"id": "tok"})
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()
    assert item["validationError"] == f"meter: {reason}"
    event = item["event"]
    assert (event["id"], event["source"], event["type"], event["subject"]) == ("tok-1", "web", "prompt", "u1")
    assert event["data"] == {"tokens": 42, "model": "b"}
    assert item["customerId"] is None
