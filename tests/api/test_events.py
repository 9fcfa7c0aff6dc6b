"""POST /v1/events on the real broker: per-event results, Kafka contents, dead letters, limits, errors."""

from __future__ import annotations

import orjson
import pytest
from api_helpers import bearer, event, topic_messages

pytestmark = pytest.mark.kafka


def test_one_event_is_acknowledged_and_lands_keyed_with_the_keys_tenant(client, api_settings) -> None:
    auth = bearer(client, tenant="acme")
    r = client.post("/v1/events", content=orjson.dumps(event("e1", customer="org-9", quantity="1.5")), headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 1, "duplicates": 0, "rejected": 0,
        "results": [{"index": 0, "id": "e1", "status": "accepted"}],
    }  # fmt: skip
    [(key, value)] = topic_messages(api_settings, "usage")
    assert key == b"acme/org-9"
    assert value["tenant"] == "acme" and value["id"] == "e1" and value["quantity"] == "1.5"
    assert topic_messages(api_settings, "dead_letters") == []


def test_a_batch_is_never_refused_for_one_bad_event_or_a_duplicate(client, api_settings) -> None:
    auth = bearer(client)
    batch = [
        event("a"),
        event("b", quantity="-3"),  # rejected: negative
        event("a"),  # duplicate of index 0 in the same request
        {"id": "c", "customer": "c1", "meter": "api_calls", "time": "2026-11-30T10:00:00Z"},  # no quantity
        "not an object",
        event("d", meter="Bad Meter"),
        event("e"),
    ]
    r = client.post("/v1/events", content=orjson.dumps(batch), headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 4)
    by_index = {x["index"]: x for x in body["results"]}
    assert [by_index[i]["status"] for i in range(7)] == [
        "accepted", "rejected", "duplicate", "rejected", "rejected", "rejected", "accepted",
    ]  # fmt: skip
    assert by_index[1]["field"] == "quantity" and "0" in by_index[1]["reason"]
    assert (by_index[3]["field"], by_index[3]["reason"]) == ("quantity", "required")
    assert by_index[4]["field"] == "$" and by_index[4]["id"] is None
    assert by_index[5]["field"] == "meter"
    stored = topic_messages(api_settings, "usage")
    assert sorted(v["id"] for _, v in stored) == ["a", "e"]
    letters = topic_messages(api_settings, "dead_letters")
    assert sorted((v["stage"], v["field"], v["event_id"]) for _, v in letters) == [
        ("api", "$", None), ("api", "meter", "d"), ("api", "quantity", "b"), ("api", "quantity", "c"),
    ]  # fmt: skip
    assert all(v["tenant"] == "acme" for _, v in letters)
    # the raw event kept in the dead letter carries the key's tenant, so `dlq replay` can re-drive it
    raw_b = next(v["raw"] for _, v in letters if v["event_id"] == "b")
    assert orjson.loads(raw_b)["tenant"] == "acme"
    # two dead letters never share a source position (the dead_letters table is keyed by it)
    assert len({(v["topic"], v["partition"], v["offset"]) for _, v in letters}) == 4


def test_duplicates_across_requests_are_answered_and_not_stored_twice(client, api_settings) -> None:
    auth = bearer(client)
    first = client.post("/v1/events", content=orjson.dumps([event("x1"), event("x2")]), headers=auth)
    again = client.post("/v1/events", content=orjson.dumps([event("x2"), event("x3")]), headers=auth)
    assert [x["status"] for x in first.json()["results"]] == ["accepted", "accepted"]
    assert [x["status"] for x in again.json()["results"]] == ["duplicate", "accepted"]
    assert sorted(v["id"] for _, v in topic_messages(api_settings, "usage")) == ["x1", "x2", "x3"]


def test_the_same_id_in_another_tenant_is_not_a_duplicate(client, api_settings) -> None:
    a, b = bearer(client, tenant="ta"), bearer(client, tenant="tb")
    assert client.post("/v1/events", content=orjson.dumps(event("same")), headers=a).json()["accepted"] == 1
    assert client.post("/v1/events", content=orjson.dumps(event("same")), headers=b).json()["accepted"] == 1
    assert sorted(k for k, _ in topic_messages(api_settings, "usage")) == [b"ta/c1", b"tb/c1"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"id": "x", ', "invalid_json"),
        (b"", "invalid_json"),
        (b"42", "invalid"),
        (b'"event"', "invalid"),
        (b"[]", "invalid"),
        (b"null", "invalid"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),  # nested too deeply for a recursive decoder
        (b'{"id": "x", "quantity": 1e400}', "invalid_json"),  # a number no double holds
    ],
)
def test_bodies_that_are_not_events_are_400_with_a_reason(client, api_settings, body: bytes, code: str) -> None:
    r = client.post("/v1/events", content=body, headers=bearer(client))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code and r.json()["error"]["field"] == "$"
    assert topic_messages(api_settings, "usage") == []


def test_wrong_types_are_rejected_per_event_naming_the_field(client) -> None:
    batch = [
        event("t1", quantity=True),
        event("t2", customer=7),
        event("t3", dimensions={"region": 5}),
        event("t4", time="yesterday"),
        {**event("t5"), "colour": "red"},
    ]
    body = client.post("/v1/events", content=orjson.dumps(batch), headers=bearer(client)).json()
    assert [(x["status"], x["field"]) for x in body["results"]] == [
        ("rejected", "quantity"), ("rejected", "customer"), ("rejected", "dimensions.region"),
        ("rejected", "time"), ("rejected", "colour"),
    ]  # fmt: skip
    assert body["results"][4]["reason"] == "unknown field"


def test_an_event_naming_another_tenant_refuses_the_request_and_stores_nothing(client, api_settings) -> None:
    batch = [event("ok"), event("evil", tenant="other-co")]
    r = client.post("/v1/events", content=orjson.dumps(batch), headers=bearer(client, tenant="acme"))
    assert r.status_code == 403
    assert r.json()["error"]["field"] == "[1].tenant"
    # naming its own tenant is fine
    r = client.post("/v1/events", content=orjson.dumps(event("own", tenant="acme")), headers=bearer(client))
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert [v["id"] for _, v in topic_messages(api_settings, "usage")] == ["own"]


def test_oversize_bodies_are_413(make_client, api_settings) -> None:
    client = make_client(api_settings.model_copy(update={"api_max_body_bytes": 4096}))
    auth = bearer(client)
    big = orjson.dumps([event(i) for i in range(100)])  # ~100 x 110 bytes
    assert len(big) > 4096
    r = client.post("/v1/events", content=big, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = client.post("/v1/events", content=chunks(), headers=auth)
    assert r.status_code == 413
    assert topic_messages(api_settings, "usage") == []


def test_more_events_than_the_maximum_is_413(make_client, api_settings) -> None:
    client = make_client(api_settings.model_copy(update={"api_max_events": 1000}))
    r = client.post("/v1/events", content=orjson.dumps([event(i) for i in range(1001)]), headers=bearer(client))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_events"


def test_ten_thousand_events_in_one_request(client, api_settings) -> None:
    batch = [event(f"big-{i}", customer=f"c{i % 50}", quantity=str(i % 7)) for i in range(10_000)]
    r = client.post("/v1/events", content=orjson.dumps(batch), headers=bearer(client))
    assert r.status_code == 200
    assert r.json()["accepted"] == 10_000 and len(r.json()["results"]) == 10_000
    stored = topic_messages(api_settings, "usage")
    assert len(stored) == 10_000 and len({v["id"] for _, v in stored}) == 10_000
    # sum of i % 7 over 0..9999: 1428 full cycles of 0+..+6 = 21 each, then 0,1,2,3 -> 1428*21 + 6 = 29994
    assert sum(int(v["quantity"]) for _, v in stored) == 29_994


def test_rate_limit_per_key_is_429_with_retry_after(make_client, api_settings) -> None:
    client = make_client(api_settings.model_copy(update={"api_rate_limit_per_s": 0.5, "api_rate_limit_burst": 2}))
    a, b = bearer(client), bearer(client)
    codes = [client.post("/v1/events", content=orjson.dumps(event(f"r{i}")), headers=a).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    r = client.post("/v1/events", content=orjson.dumps(event("r9")), headers=a)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # another key has its own bucket
    assert client.post("/v1/events", content=orjson.dumps(event("r10")), headers=b).status_code == 200


def test_metrics_count_events_by_status(client) -> None:
    def value(text: str, status: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'meterstream_api_events_total{{status="{status}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = client.get("/metrics").text
    client.post("/v1/events", content=orjson.dumps([event("m1"), event("m1"), event("m2", quantity="x")]),
                headers=bearer(client))  # fmt: skip
    after = client.get("/metrics").text
    assert value(after, "accepted") - value(before, "accepted") == 1
    assert value(after, "duplicate") - value(before, "duplicate") == 1
    assert value(after, "rejected") - value(before, "rejected") == 1
    assert 'meterstream_api_request_seconds_bucket{le="0.001",method="POST",route="/v1/events"}' in after


def test_healthz_and_readyz(client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["kafka"]["ok"] is True and checks["database"]["ok"] is True
    assert checks["clickhouse"]["ok"] is False  # none configured in this test: reported, not required


def test_readyz_is_503_when_kafka_does_not_answer(make_client, api_settings) -> None:
    from meterstream.deploy.ports import free_port

    client = make_client(api_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}))
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["kafka"]["ok"] is False


def test_times_outside_the_processors_window_are_rejected_at_once(client, api_settings) -> None:
    from datetime import UTC, datetime, timedelta

    def at(delta: timedelta) -> str:
        return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    batch = [event("old", time=at(-timedelta(days=200))), event("future", time=at(timedelta(hours=3))),
             event("fine", time=at(-timedelta(days=30)))]  # fmt: skip
    body = client.post("/v1/events", content=orjson.dumps(batch), headers=bearer(client)).json()
    got = [(x["status"], x.get("field"), x.get("reason")) for x in body["results"]]
    # defaults: at most 92 days before reception, 60 minutes after (Settings.event_max_age_days / _future_minutes)
    assert got == [
        ("rejected", "time", "more than 92 days before the event was received"),
        ("rejected", "time", "more than 60 minutes after the event was received"),
        ("accepted", None, None),
    ]
    assert [v["id"] for _, v in topic_messages(api_settings, "usage")] == ["fine"]


def test_healthz_is_503_while_the_entity_relay_is_stalled(client) -> None:
    """The relay's own stall rule (entities/relay.py, tested in tests/entities/test_relay.py) reaches /healthz."""

    class Relay:
        stalled = True

        def health(self):
            return (not self.stalled, {"backlog": 3, "seconds_without_progress": 31.0})

    saved = client.app.state.relay
    client.app.state.relay = relay = Relay()
    try:
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        check = r.json()["checks"]["entity_relay"]
        assert check["ok"] is False and '"backlog":3' in check["detail"]
        relay.stalled = False
        assert client.get("/healthz").status_code == 200
    finally:
        client.app.state.relay = saved
