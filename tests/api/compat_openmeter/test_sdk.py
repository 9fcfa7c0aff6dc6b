"""The OpenMeter Python SDK (openmeter==1.0.0b236), unchanged, against /compat/openmeter on a real uvicorn
server, a real broker and embedded ClickHouse. What the SDK sends is checked where it lands (Kafka
topics, the SQL store); meter queries read rows put into ClickHouse here, values worked out by hand.
The full pipeline (processor + sink) is exercised in test_sdk_pipeline.py."""

from __future__ import annotations

import datetime as dt
import time

import openmeter
import orjson
import pytest
from api_helpers import topic_messages
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from om_rows import put_rows

pytestmark = pytest.mark.kafka
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)


def cloud(i, *, type_="prompt", subject="user-1", source="app", time=NOW, **data):
    return {"id": str(i), "source": source, "specversion": "1.0", "type": type_, "subject": subject,
            "time": time.isoformat().replace("+00:00", "Z"), "data": data}  # fmt: skip


def usage(settings):
    return sorted((v["meter"], v["id"], v["customer"], v["quantity"], v.get("dimensions", {}))
                  for _, v in topic_messages(settings, "usage"))  # fmt: skip


def test_meters_crud_through_the_sdk(om):
    admin, reader = om["admin"], om["read"]
    m = admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "name": "Tokens",
                             "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}})  # fmt: skip
    assert (m.slug, m.aggregation, m.event_type, m.value_property, m.group_by) == (
        "tokens",
        "SUM",
        "prompt",
        "$.tokens",
        {"model": "$.model"},
    )
    assert isinstance(m.created_at, dt.datetime) and len(m.id) == 26
    assert reader.meters.get("tokens").id == m.id
    assert reader.meters.get(m.id).slug == "tokens"
    assert [x.slug for x in reader.meters.list()] == ["tokens"]
    with pytest.raises(HttpResponseError) as exc:  # the same slug again: 409 problem
        admin.meters.create({"slug": "tokens", "eventType": "x", "aggregation": "COUNT"})
    assert exc.value.status_code == 409
    with pytest.raises(HttpResponseError) as exc:  # a read key may not create meters
        reader.meters.create({"slug": "other", "eventType": "x", "aggregation": "COUNT"})
    assert exc.value.status_code == 403
    with pytest.raises(HttpResponseError) as exc:  # SUM needs a valueProperty: 400 naming it
        admin.meters.create({"slug": "bad", "eventType": "x", "aggregation": "SUM"})
    assert exc.value.status_code == 400
    assert exc.value.response.headers["content-type"] == "application/problem+json"
    assert exc.value.response.json()["extensions"]["field"] == "valueProperty"
    admin.meters.delete("tokens")
    with pytest.raises(ResourceNotFoundError):
        reader.meters.get("tokens")
    assert reader.meters.list() == []


def test_ingest_in_all_three_content_types_and_duplicates(om):
    om["admin"].meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                               "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}})  # fmt: skip
    om["admin"].meters.create({"slug": "prompts", "eventType": "prompt", "aggregation": "COUNT"})
    ing = om["ingest"]
    assert ing.events.ingest_event(cloud("e1", tokens=10, model="a")) is None  # cloudevents+json, 204
    ing.events.ingest_events([cloud("e2", tokens=5, model="b"), cloud("e3", tokens=2.5)])  # cloudevents-batch+json
    ing.events.ingest_events_json([cloud("e4", tokens="7", model="a")])  # application/json, an array
    ing.events.ingest_event(cloud("e1", tokens=999, model="z"))  # same (source, id): a duplicate, still 204
    assert usage(om["settings"]) == sorted([
        ("tokens", "om:tokens:3:app:e1", "user-1", "10", {"model": "a"}),
        ("tokens", "om:tokens:3:app:e2", "user-1", "5", {"model": "b"}),
        ("tokens", "om:tokens:3:app:e3", "user-1", "2.5", {}),
        ("tokens", "om:tokens:3:app:e4", "user-1", "7", {"model": "a"}),
        ("prompts", "om:prompts:3:app:e1", "user-1", "1", {}),
        ("prompts", "om:prompts:3:app:e2", "user-1", "1", {}),
        ("prompts", "om:prompts:3:app:e3", "user-1", "1", {}),
        ("prompts", "om:prompts:3:app:e4", "user-1", "1", {}),
    ])  # fmt: skip
    with pytest.raises(ClientAuthenticationError):
        openmeter.Client(endpoint=f"{om['base']}/compat/openmeter", token="msk_nope.nope").events.ingest_event(
            cloud("e9", tokens=1)
        )
    with pytest.raises(HttpResponseError) as exc:  # a read key may not ingest
        om["read"].events.ingest_event(cloud("e9", tokens=1))
    assert exc.value.status_code == 403


def test_a_malformed_event_refuses_the_batch_and_is_dead_lettered(om):
    om["admin"].meters.create({"slug": "prompts", "eventType": "prompt", "aggregation": "COUNT"})
    bad = cloud("b1")
    bad["time"] = "yesterday"
    with pytest.raises(HttpResponseError) as exc:
        om["ingest"].events.ingest_events([cloud("ok1"), bad])
    assert exc.value.status_code == 400
    problem = exc.value.response.json()
    assert problem["status"] == 400 and problem["instance"] == "/compat/openmeter/api/v1/events"
    assert problem["extensions"]["validationErrors"][0]["index"] == 1
    assert problem["extensions"]["validationErrors"][0]["field"] == "time"
    assert usage(om["settings"]) == []  # nothing of the request stored
    letters = [v for _, v in topic_messages(om["settings"], "dead_letters")]
    assert [(v["stage"], v["field"], orjson.loads(v["raw"])["id"]) for v in letters] == [("api", "time", "b1")]


def test_unmeasurable_events_are_dead_lettered_and_unmatched_ones_replayed(om):
    admin, ing = om["admin"], om["ingest"]
    admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens"})
    untimed = cloud("s3", type_="storage", gb=5)
    del untimed["time"]
    ing.events.ingest_events(
        [cloud("p1", tokens=-1), cloud("s1", type_="storage", gb=3), cloud("s2", type_="storage", gb=4), untimed]
    )
    received = dt.datetime.now(dt.UTC)
    ing.events.ingest_event(cloud("s1", type_="storage", gb=3))  # a client retry: kept once
    letters = [v for _, v in topic_messages(om["settings"], "dead_letters")]
    assert [(v["field"], orjson.loads(v["raw"])["id"]) for v in letters] == [("data.tokens", "p1")]
    assert usage(om["settings"]) == []
    unmatched = om["app"].state.openmeter.unmatched
    assert [u.event_id for u in unmatched.list("acme")] == ["s1", "s2", "s3"]
    # a meter for their type: the stored events are metered now
    time.sleep(1.5)
    replay_start = dt.datetime.now(dt.UTC)
    admin.meters.create({"slug": "storage", "eventType": "storage", "aggregation": "MAX", "valueProperty": "$.gb"})
    assert usage(om["settings"]) == [
        ("storage", "om:storage:3:app:s1", "user-1", "3", {}),
        ("storage", "om:storage:3:app:s2", "user-1", "4", {}),
        ("storage", "om:storage:3:app:s3", "user-1", "5", {}),
    ]
    assert unmatched.list("acme") == []
    # the event sent without a time is metered at its reception, not at the replay
    (s3,) = [v for _, v in topic_messages(om["settings"], "usage") if v["id"].endswith(":s3")]
    s3_time = dt.datetime.fromisoformat(s3["time"].replace("Z", "+00:00"))
    assert received - dt.timedelta(seconds=5) < s3_time < replay_start


def test_subjects_and_customers_attribute_usage(om):
    admin, reader = om["admin"], om["read"]
    out = admin.subjects.upsert([{"key": "user-1", "displayName": "User One"}, {"key": "user-2"}])
    assert [s.key for s in out] == ["user-1", "user-2"]
    assert [s.key for s in reader.subjects.list()] == ["user-1", "user-2"]
    assert reader.subjects.get("user-1").display_name == "User One"
    c = admin.customers.create({"name": "ACME Corp", "key": "acme-corp", "currency": "EUR",
                                "usageAttribution": {"subjectKeys": ["user-1", "user-2"]}})  # fmt: skip
    assert c.usage_attribution.subject_keys == ["user-1", "user-2"] and c.currency == "EUR"
    assert reader.customers.get("acme-corp").id == c.id
    assert reader.customers.get(c.id).name == "ACME Corp"
    page = reader.customers.list()
    assert (page.total_count, [x.key for x in page.items_property]) == (1, ["acme-corp"])
    with pytest.raises(HttpResponseError) as exc:  # user-2 already belongs to acme-corp
        admin.customers.create({"name": "Other", "usageAttribution": {"subjectKeys": ["user-2"]}})
    assert exc.value.status_code == 409
    admin.meters.create({"slug": "prompts", "eventType": "prompt", "aggregation": "COUNT"})
    om["ingest"].events.ingest_events([cloud("c1", subject="user-2"), cloud("c2", subject="user-9")])
    # user-2's events are the customer's (Kafka key and `customer` = its key); user-9 is its own customer
    keyed = sorted((k, v["customer"], v["subject"]) for k, v in topic_messages(om["settings"], "usage"))
    assert keyed == [(b"acme/acme-corp", "acme-corp", "user-2"), (b"acme/user-9", "user-9", "user-9")]


def test_meter_queries_json_and_csv_through_the_sdk(om):
    admin, reader = om["admin"], om["read"]
    admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens",
                         "groupBy": {"model": "$.model"}})  # fmt: skip
    c = admin.customers.create({"name": "ACME", "key": "acme-corp", "usageAttribution": {"subjectKeys": ["u1"]}})
    put_rows(om, [
        {"id": "r1", "meter": "tokens", "customer": "acme-corp", "subject": "u1", "quantity": "10",
         "time": "2026-11-02T10:05:00.000Z", "dimensions": {"model": "a"}},
        {"id": "r2", "meter": "tokens", "customer": "acme-corp", "subject": "u1", "quantity": "5",
         "time": "2026-11-02T11:50:00.000Z", "dimensions": {"model": "b"}},
        {"id": "r3", "meter": "tokens", "customer": "u2", "subject": "u2", "quantity": "2.25",
         "time": "2026-11-03T00:30:00.000Z", "dimensions": {"model": "a"}},
        {"id": "x1", "meter": "tokens", "customer": "acme-corp", "subject": "u1", "quantity": "1000",
         "time": "2026-11-02T10:05:00.000Z", "dimensions": {"model": "a"}, "tenant": "other"},
    ])  # fmt: skip
    frm = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    to = dt.datetime(2026, 11, 4, tzinfo=dt.UTC)
    r = reader.meters.query_json("tokens", from_parameter=frm, to=to)
    assert [row.value for row in r.data] == [17.25]  # 10 + 5 + 2.25; the other tenant's 1000 is not visible
    r = reader.meters.query_json("tokens", from_parameter=frm, to=to, window_size="DAY")
    assert [(row.window_start, row.value) for row in r.data] == [
        (dt.datetime(2026, 11, 2, tzinfo=dt.UTC), 15), (dt.datetime(2026, 11, 3, tzinfo=dt.UTC), 2.25),
    ]  # fmt: skip
    r = reader.meters.query_json("tokens", window_size="DAY", window_time_zone="America/New_York")
    # New York is UTC-5 in November: r3 (00:30Z on the 3rd) is 19:30 on the 2nd there
    assert [(row.window_start, row.value) for row in r.data] == [(dt.datetime(2026, 11, 2, 5, tzinfo=dt.UTC), 17.25)]
    r = reader.meters.query_json("tokens", group_by=["model"], filter_group_by={"model": "a"})
    assert [(row.group_by, row.value) for row in r.data] == [({"model": "a"}, 12.25)]
    r = reader.meters.query_json("tokens", subject=["u1"])
    assert [(row.subject, row.value) for row in r.data] == [("u1", 15)]
    r = reader.meters.query_json("tokens", filter_customer_id=[c.id])
    assert [(row.customer_id, row.value) for row in r.data] == [(c.id, 15)]
    csv = reader.meters.query_csv("tokens", window_size="HOUR", group_by=["model"])
    assert csv.splitlines() == [
        "window_start,window_end,subject,customer_id,model,value",
        "2026-11-02T10:00:00Z,2026-11-02T11:00:00Z,,,a,10",
        "2026-11-02T11:00:00Z,2026-11-02T12:00:00Z,,,b,5",
        "2026-11-03T00:00:00Z,2026-11-03T01:00:00Z,,,a,2.25",
    ]
    assert reader.meters.list_subjects("tokens") == ["u1", "u2"]
    # from is inclusive, to exclusive: u1's usage is on the 2nd, u2's at 00:30 on the 3rd
    third = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    assert reader.meters.list_subjects("tokens", from_parameter=third) == ["u2"]
    assert reader.meters.list_subjects("tokens", from_parameter=frm, to=third) == ["u1"]
    assert reader.meters.list_subjects("tokens", from_parameter=third, to=third + dt.timedelta(minutes=30)) == []
    with pytest.raises(HttpResponseError) as exc:
        reader.meters.query_json("tokens", group_by=["region"])
    assert exc.value.status_code == 400 and exc.value.response.json()["extensions"]["field"] == "groupBy"


def test_meter_update_post_queries_and_group_by_values_through_the_sdk(om):
    admin, reader = om["admin"], om["read"]
    admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens",
                         "groupBy": {"model": "$.model"}})  # fmt: skip
    put_rows(om, [
        {"id": "r1", "meter": "tokens", "customer": "u1", "subject": "u1", "quantity": "10",
         "time": "2026-11-02T10:05:00.000Z", "dimensions": {"model": "a"}},
        {"id": "r2", "meter": "tokens", "customer": "u2", "subject": "u2", "quantity": "5",
         "time": "2026-11-02T11:50:00.000Z", "dimensions": {"model": "b"}},
        {"id": "r3", "meter": "tokens", "customer": "u2", "subject": "u2", "quantity": "2.5",
         "time": "2026-11-03T00:30:00.000Z", "dimensions": {"model": "a"}},
    ])  # fmt: skip
    m = admin.meters.update("tokens", {"name": "LLM tokens", "groupBy": {"model": "$.model", "region": "$.region"}})
    assert (m.name, m.group_by) == ("LLM tokens", {"model": "$.model", "region": "$.region"})
    with pytest.raises(HttpResponseError) as err:  # an existing group-by stays: the usage already carries it
        admin.meters.update("tokens", {"groupBy": {"model": "$.llm"}})
    assert (err.value.status_code, err.value.response.json()["extensions"]["field"]) == (400, "groupBy.model")
    r = reader.meters.query("tokens", {"from": "2026-11-02T00:00:00Z", "to": "2026-11-04T00:00:00Z",
                                       "windowSize": "DAY", "filterGroupBy": {"model": "a"}})  # fmt: skip
    assert [(row.window_start, row.value) for row in r.data] == [
        (dt.datetime(2026, 11, 2, tzinfo=dt.UTC), 10), (dt.datetime(2026, 11, 3, tzinfo=dt.UTC), 2.5)]  # fmt: skip
    csv = reader.meters.query_csv_post("tokens")  # the SDK sends no body: the whole meter
    assert csv.splitlines()[1].endswith(",17.5")  # 10 + 5 + 2.5
    assert reader.meters.list_group_by_values("tokens", "model") == ["a", "b"]
    assert reader.meters.list_group_by_values(
        "tokens", "subject", from_parameter=dt.datetime(2026, 11, 2, 11, tzinfo=dt.UTC)
    ) == ["u2"]
    with pytest.raises(HttpResponseError) as err:
        reader.meters.list_group_by_values("tokens", "colour")
    assert err.value.status_code == 400
