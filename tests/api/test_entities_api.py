"""The own entity API (/v1/customers, /v1/plans, /v1/subscriptions) through FastAPI's TestClient, on SQLite
AND PostgreSQL (a throwaway cluster, tests/entities/pg_cluster.py). No Kafka: entity writes go to the SQL
store and its outbox only, so the app gets a stand-in ingest service.

Expected values are written by hand from the requests (versions count writes, phases follow the
documented [start, end) rule), never copied from a response.
"""

from __future__ import annotations

import pytest
from api_helpers import error
from api_helpers import role_key as key
from fastapi.testclient import TestClient


@pytest.fixture
def client(offline_client: TestClient) -> TestClient:
    """The app on an empty store of each kind, SQLite and PostgreSQL (tests/api/conftest.py)."""
    return offline_client


PRO = {
    "code": "pro",
    "name": "Pro",
    "currency": "EUR",
    "usage": {"api_calls": {"model": "unit", "unit_amount": "0.002"}},
    "fixed": [{"code": "base", "name": "Base fee", "amount": "49.00"}],
}
ORG = {"external_id": "org-1", "name": "Org One", "currency": "EUR", "timezone": "Europe/Berlin", "country": "DE"}


# --- customers -----------------------------------------------------------------------------------------


def test_customer_create_update_and_idempotent_repeat(client: TestClient) -> None:
    admin = key(client)
    r = client.post("/v1/customers", json=ORG, headers=admin)
    assert r.status_code == 201
    assert r.headers["ETag"] == '"1"'
    body = r.json()
    assert (body["external_id"], body["name"], body["version"], body["timezone"]) == (
        "org-1",
        "Org One",
        1,
        "Europe/Berlin",
    )
    assert "tenant" not in body  # the key's, never echoed as data
    again = client.post("/v1/customers", json=ORG, headers=admin)
    assert (again.status_code, again.json()["version"]) == (200, 1)  # the same document: nothing written
    renamed = client.post("/v1/customers", json={**ORG, "name": "Org 1 GmbH"}, headers=admin)
    assert (renamed.status_code, renamed.json()["version"], renamed.json()["name"]) == (200, 2, "Org 1 GmbH")
    got = client.get("/v1/customers/org-1", headers=key(client, "read"))
    assert (got.status_code, got.json()["name"], got.headers["ETag"]) == (200, "Org 1 GmbH", '"2"')


def test_customer_optimistic_locking_by_body_and_if_match(client: TestClient) -> None:
    admin = key(client)
    client.post("/v1/customers", json=ORG, headers=admin)  # version 1
    # two clients read version 1; the first writes (-> 2), the second's write is stale
    first = client.put("/v1/customers/org-1", json={**ORG, "email": "a@org.example", "version": 1}, headers=admin)
    assert (first.status_code, first.json()["version"]) == (200, 2)
    stale = client.put("/v1/customers/org-1", json={**ORG, "email": "b@org.example", "version": 1}, headers=admin)
    assert error(stale) == (409, "conflict", "version")
    stale_header = client.put("/v1/customers/org-1", json={**ORG, "name": "B"}, headers={**admin, "If-Match": '"1"'})
    assert error(stale_header) == (409, "conflict", "version")
    assert (
        client.get("/v1/customers/org-1", headers=admin).json()["email"] == "a@org.example"
    )  # the loser wrote nothing
    fresh = client.put("/v1/customers/org-1", json={**ORG, "name": "B"}, headers={**admin, "If-Match": 'W/"2"'})
    assert (fresh.status_code, fresh.json()["version"]) == (200, 3)
    disagree = client.put("/v1/customers/org-1", json={**ORG, "version": 3}, headers={**admin, "If-Match": '"2"'})
    assert error(disagree) == (422, "invalid", "version")
    other_id = client.put("/v1/customers/org-1", json={**ORG, "external_id": "org-2"}, headers=admin)
    assert error(other_id) == (422, "invalid", "external_id")


def test_customer_list_pages(client: TestClient) -> None:
    admin = key(client)
    for i in range(1, 4):
        assert (
            client.post("/v1/customers", json={"external_id": f"c{i}", "name": f"C{i}"}, headers=admin).status_code
            == 201
        )
    page1 = client.get("/v1/customers?limit=2", headers=admin).json()
    assert [c["external_id"] for c in page1["items"]] == ["c1", "c2"]
    assert page1["next_offset"] == 2
    page2 = client.get(f"/v1/customers?limit=2&offset={page1['next_offset']}", headers=admin).json()
    assert [c["external_id"] for c in page2["items"]] == ["c3"]
    assert page2["next_offset"] is None
    assert error(client.get("/v1/customers?limit=0", headers=admin)) == (422, "invalid", "limit")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"currency": "EUX"}, "currency"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "not-an-address"}, "email"),
        ({"country": "Germany"}, "country"),
        ({"invoice_grace_days": -1}, "invoice_grace_days"),
        ({"tenant": "globex"}, "tenant"),  # the tenant is the key's: not a body field
        ({"address": {"city": "Berlin", "zip": "10115"}}, "address.zip"),
        ({"name": ""}, "name"),
    ],
)
def test_customer_bad_input_names_the_field_and_writes_nothing(client: TestClient, patch: dict, field: str) -> None:
    admin = key(client)
    r = client.post("/v1/customers", json={**ORG, **patch}, headers=admin)
    assert error(r) == (422, "invalid", field)
    assert client.get("/v1/customers", headers=admin).json()["items"] == []


def test_customer_roles_and_tenants(client: TestClient) -> None:
    admin = key(client)
    client.post("/v1/customers", json=ORG, headers=admin)
    assert error(client.post("/v1/customers", json={**ORG, "name": "X"}, headers=key(client, "read")))[0] == 403
    assert error(client.post("/v1/customers", json={**ORG, "name": "X"}, headers=key(client, "ingest")))[0] == 403
    assert error(client.get("/v1/customers", headers=key(client, "ingest")))[0] == 403
    assert client.get("/v1/customers/org-1", headers=key(client, "read")).status_code == 200
    other = key(client, "admin", tenant="globex")
    assert error(client.get("/v1/customers/org-1", headers=other)) == (404, "not_found", None)
    assert client.get("/v1/customers", headers=other).json()["items"] == []
    assert client.get("/v1/customers").status_code == 401


# --- plans ---------------------------------------------------------------------------------------------


def test_plan_publish_versions_and_immutability(client: TestClient) -> None:
    admin = key(client)
    first = client.post("/v1/plans", json=PRO, headers=admin)
    assert first.status_code == 201
    assert (first.json()["version"], first.json()["rating_id"]) == (1, "pro@1")
    assert first.json()["fixed"][0]["amount"] == "49.00"  # exact decimal string, as sent
    same = client.post("/v1/plans", json=PRO, headers=admin)
    assert (same.status_code, same.json()["version"]) == (200, 1)  # identical: nothing published
    dearer = {**PRO, "usage": {"api_calls": {"model": "unit", "unit_amount": "0.003"}}}
    second = client.post("/v1/plans", json=dearer, headers=admin)
    assert (second.status_code, second.json()["version"], second.json()["rating_id"]) == (201, 2, "pro@2")
    reader = key(client, "read")
    assert client.get("/v1/plans/pro", headers=reader).json()["usage"]["api_calls"]["unit_amount"] == "0.003"
    v1 = client.get("/v1/plans/pro/versions/1", headers=reader).json()
    assert (v1["version"], v1["usage"]["api_calls"]["unit_amount"]) == (1, "0.002")
    assert [p["version"] for p in client.get("/v1/plans/pro/versions", headers=reader).json()["items"]] == [1, 2]
    assert [(p["code"], p["version"]) for p in client.get("/v1/plans", headers=reader).json()["items"]] == [("pro", 2)]
    edit = client.put("/v1/plans/pro/versions/1", json=dearer, headers=admin)
    assert error(edit) == (409, "conflict", "version")
    assert "published versions are immutable" in edit.json()["error"]["message"]
    assert error(client.put("/v1/plans/pro/versions/9", headers=admin)) == (404, "not_found", None)
    assert error(client.get("/v1/plans/pro/versions/3", headers=reader)) == (404, "not_found", None)
    assert error(client.get("/v1/plans/nope", headers=reader)) == (404, "not_found", None)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        # unordered tiers: 100 after 1000
        (
            {
                "usage": {
                    "api_calls": {
                        "model": "graduated",
                        "tiers": [
                            {"up_to": "1000", "unit_amount": "0.01"},
                            {"up_to": "100", "unit_amount": "0.005"},
                            {"up_to": None, "unit_amount": "0.001"},
                        ],
                    }
                }
            },
            "usage.api_calls.tiers[1]",
        ),
        ({"currency": "EURO"}, "currency"),
        ({"fixed": [{"code": "base", "name": "Base", "amount": "-5.00"}]}, "fixed[0].amount"),
        ({"fixed": [{"code": "base", "name": "Base", "amount": 49.5}]}, "fixed[0].amount"),  # a JSON float
        (
            {"installments": [{"code": "setup", "name": "Setup", "total": "300.00", "count": 0}]},
            "installments[0].count",
        ),
        ({"minimum_commitment": "10.001"}, "minimum_commitment"),  # EUR amounts have 2 decimals
        ({"code": "pro@2"}, "code"),
    ],
)
def test_plan_bad_input_names_the_field_and_publishes_nothing(client: TestClient, patch: dict, field: str) -> None:
    admin = key(client)
    r = client.post("/v1/plans", json={**PRO, **patch}, headers=admin)
    status, code, got_field = error(r)
    assert (status, code) == (422, "invalid")
    assert got_field is not None and got_field.startswith(field), (got_field, r.json())
    assert client.get("/v1/plans", headers=admin).json()["items"] == []


# --- subscriptions -------------------------------------------------------------------------------------


def _setup(client: TestClient) -> dict[str, str]:
    admin = key(client)
    assert client.post("/v1/customers", json=ORG, headers=admin).status_code == 201
    assert client.post("/v1/plans", json=PRO, headers=admin).status_code == 201
    basic = {**PRO, "code": "basic", "name": "Basic", "fixed": [{"code": "base", "name": "Base", "amount": "9.00"}]}
    assert client.post("/v1/plans", json=basic, headers=admin).status_code == 201
    return admin


def test_subscription_create_change_cancel(client: TestClient) -> None:
    admin = _setup(client)
    created = client.post("/v1/subscriptions", json={"external_id": "sub-1", "customer": "org-1", "plan": "basic",
                                                      "start": "2026-01-01T00:00:00+01:00"}, headers=admin)  # fmt: skip
    assert created.status_code == 201
    body = created.json()
    assert (body["version"], body["customer"], body["billing_anchor"]) == (1, "org-1", "calendar")
    # +01:00 midnight is 23:00 UTC the day before
    assert body["phases"] == [{"plan_code": "basic", "plan_version": 1, "start": "2025-12-31T23:00:00Z", "end": None,
                               "usage_overrides": {}, "fixed_overrides": {}, "addons": []}]  # fmt: skip
    upgrade = client.post("/v1/subscriptions/sub-1/change", json={"plan": "pro", "at": "2026-01-16T00:00:00Z",
                                                                  "version": 1}, headers=admin)  # fmt: skip
    assert upgrade.status_code == 200, upgrade.json()
    phases = [(p["plan_code"], p["plan_version"], p["start"], p["end"]) for p in upgrade.json()["phases"]]
    assert phases == [("basic", 1, "2025-12-31T23:00:00Z", "2026-01-16T00:00:00Z"),
                      ("pro", 1, "2026-01-16T00:00:00Z", None)]  # fmt: skip
    assert (upgrade.json()["version"], upgrade.headers["ETag"]) == (2, '"2"')
    stale = client.post("/v1/subscriptions/sub-1/cancel", json={"at": "2026-02-01T00:00:00Z"},
                        headers={**admin, "If-Match": '"1"'})  # fmt: skip
    assert error(stale) == (409, "conflict", "version")
    canceled = client.post("/v1/subscriptions/sub-1/cancel", json={"at": "2026-02-01T00:00:00Z", "version": 2},
                           headers=admin)  # fmt: skip
    assert canceled.status_code == 200
    assert canceled.json()["phases"][-1]["end"] == "2026-02-01T00:00:00Z"
    assert canceled.json()["version"] == 3
    reader = key(client, "read")
    assert [
        s["external_id"] for s in client.get("/v1/subscriptions?customer=org-1", headers=reader).json()["items"]
    ] == ["sub-1"]
    assert client.get("/v1/subscriptions?customer=org-2", headers=reader).json()["items"] == []
    assert client.get("/v1/subscriptions/sub-1", headers=reader).json()["version"] == 3
    assert error(client.get("/v1/subscriptions/nope", headers=reader)) == (404, "not_found", None)


def test_subscription_update_renames_and_moves_the_end(client: TestClient) -> None:
    """PATCH changes only what the body names; `end: null` removes the end. 2027 lies after the machine's now."""
    admin = _setup(client)
    created = client.post("/v1/subscriptions", json={"external_id": "sub-1", "customer": "org-1", "plan": "basic",
                                                      "start": "2026-01-01T00:00:00Z"}, headers=admin)  # fmt: skip
    assert created.status_code == 201
    ended = client.patch("/v1/subscriptions/sub-1", json={"end": "2027-03-01T00:00:00+01:00", "name": "Main"},
                         headers=admin)  # fmt: skip
    assert ended.status_code == 200, ended.json()
    body = ended.json()
    assert (body["version"], body["name"], body["status"], body["phases"][-1]["end"]) == (
        2, "Main", "active", "2027-02-28T23:00:00Z")  # fmt: skip
    stale = client.patch("/v1/subscriptions/sub-1", json={"name": "x"}, headers={**admin, "If-Match": '"1"'})
    assert error(stale) == (409, "conflict", "version")
    runs_on = client.patch("/v1/subscriptions/sub-1", json={"end": None, "version": 2}, headers=admin)
    runs_on_body = runs_on.json()
    assert (runs_on_body["phases"][-1]["end"], runs_on_body["name"], runs_on.headers["ETag"]) == (None, "Main", '"3"')
    started = client.patch("/v1/subscriptions/sub-1", json={"start": "2027-01-01T00:00:00Z"}, headers=admin)
    assert error(started) == (422, "invalid", "start")
    assert error(client.patch("/v1/subscriptions/sub-1", json={"start": None}, headers=admin)) == (422, "invalid",
                                                                                                   "start")  # fmt: skip
    assert error(client.patch("/v1/subscriptions/nope", json={"name": "x"}, headers=admin)) == (404, "not_found", None)
    assert client.patch("/v1/subscriptions/sub-1", json={"name": "x"}, headers=key(client, "read")).status_code == 403


def test_subscription_on_newest_version_and_default_customer(client: TestClient) -> None:
    admin = _setup(client)
    client.post("/v1/plans", json={**PRO, "name": "Pro 2"}, headers=admin)  # pro@2
    sub = client.post("/v1/subscriptions", json={"external_id": "s", "customer": "org-1", "plan": "pro",
                                                 "start": "2026-01-01T00:00:00Z"}, headers=admin)  # fmt: skip
    assert sub.json()["phases"][0]["plan_version"] == 2
    default = {"external_id": "d", "customer": "*", "plan": "pro", "plan_version": 1, "start": "2026-01-01T00:00:00Z"}
    pinned = client.post("/v1/subscriptions", json=default, headers=admin)
    assert (pinned.status_code, pinned.json()["phases"][0]["plan_version"]) == (201, 1)


def test_subscription_conflicts_and_bad_input(client: TestClient) -> None:
    admin = _setup(client)
    base = {"external_id": "s1", "customer": "org-1", "plan": "pro", "start": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/subscriptions", json=base, headers=admin).status_code == 201
    overlap = client.post("/v1/subscriptions", json={**base, "external_id": "s2", "start": "2026-03-01T00:00:00Z"},
                          headers=admin)  # fmt: skip
    assert error(overlap)[:2] == (409, "conflict")
    taken = client.post("/v1/subscriptions", json={**base, "plan": "basic"}, headers=admin)
    assert error(taken) == (409, "conflict", "external_id")
    no_plan = client.post("/v1/subscriptions", json={**base, "external_id": "s3", "plan": "gold"}, headers=admin)
    assert error(no_plan) == (422, "invalid", "plan")
    unknown_customer = client.post("/v1/subscriptions", json={**base, "external_id": "s4", "customer": "nobody"},
                                   headers=admin)  # fmt: skip
    assert error(unknown_customer) == (422, "invalid", "customer")
    naive = client.post("/v1/subscriptions", json={**base, "external_id": "s5", "start": "2026-01-01T00:00:00"},
                        headers=admin)  # fmt: skip
    assert error(naive) == (422, "invalid", "start")
    no_version = client.post("/v1/subscriptions", json={**base, "external_id": "s6", "plan_version": 9}, headers=admin)
    assert error(no_version) == (422, "invalid", "plan_version")  # pro has version 1 only
    assert [s["external_id"] for s in client.get("/v1/subscriptions", headers=admin).json()["items"]] == ["s1"]
    change = "/v1/subscriptions/s1/change"
    assert error(client.post(change, json={"plan": "gold", "at": "2026-02-01T00:00:00Z"}, headers=admin)) == (
        422, "invalid", "plan")  # fmt: skip
    assert error(client.post(change, json={"plan": "basic", "plan_version": 9, "at": "2026-02-01T00:00:00Z"},
                             headers=admin)) == (422, "invalid", "plan_version")  # fmt: skip
    assert error(client.post(change, json={"plan": "basic", "at": "2025-06-01T00:00:00Z"}, headers=admin)) == (
        422, "invalid", "at")  # before the subscription starts  # fmt: skip
    assert client.get("/v1/subscriptions/s1", headers=admin).json()["version"] == 1  # none of these wrote


def test_delete_refused_while_in_use(client: TestClient) -> None:
    admin = _setup(client)
    body = {"external_id": "s1", "customer": "org-1", "plan": "pro", "start": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/subscriptions", json=body, headers=admin).status_code == 201
    assert error(client.delete("/v1/plans/pro", headers=admin))[:2] == (409, "conflict")
    assert error(client.delete("/v1/customers/org-1", headers=admin))[:2] == (409, "conflict")
    assert client.delete("/v1/plans/basic", headers=admin).status_code == 204  # nobody uses it
    assert error(client.get("/v1/plans/basic", headers=admin))[0] == 404
    assert (
        client.post("/v1/subscriptions/s1/cancel", json={"at": "2026-02-01T00:00:00Z"}, headers=admin).status_code
        == 200
    )
    assert client.delete("/v1/plans/pro", headers=admin).status_code == 204
    assert client.delete("/v1/customers/org-1", headers={**admin, "If-Match": '"1"'}).status_code == 204
    assert error(client.get("/v1/customers/org-1", headers=admin))[0] == 404


def test_a_body_that_is_not_json_is_invalid(client: TestClient) -> None:
    admin = {**key(client), "Content-Type": "application/json"}
    truncated = client.post("/v1/plans", content=b'{"code": ', headers=admin)
    assert error(truncated) == (422, "invalid", None)
    assert "not valid JSON" in truncated.json()["error"]["message"]
    assert error(client.post("/v1/customers", content=b"\xff\xfe", headers=admin))[:2] == (422, "invalid")


def test_numbers_beyond_the_store_are_invalid_not_errors(client: TestClient) -> None:
    admin = key(client)
    big = 2**63  # found by schemathesis: SQLite integers are 64-bit signed, the store's versions 32-bit
    assert error(client.get(f"/v1/customers?offset={big}", headers=admin)) == (422, "invalid", "offset")
    assert error(client.get(f"/v1/plans/pro/versions/{big}", headers=admin)) == (422, "invalid", "version")
    assert error(client.put("/v1/customers/org-1", json=ORG, headers={**admin, "If-Match": "9" * 5000})) == (
        422, "invalid", "If-Match")  # fmt: skip


def test_a_change_in_the_future_is_pending(client: TestClient) -> None:
    admin = _setup(client)
    body = {"external_id": "s1", "customer": "org-1", "plan": "basic", "start": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/subscriptions", json=body, headers=admin).status_code == 201
    change = {"plan": "pro", "at": "2099-01-01T00:00:00Z"}
    later = client.post("/v1/subscriptions/s1/change", json=change, headers=admin)
    assert later.status_code == 200
    doc = later.json()
    assert doc["status"] == "active"  # still on basic until 2099
    assert [(p["plan_code"], p["start"], p["end"]) for p in doc["phases"]] == [
        ("basic", "2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z"),
        ("pro", "2099-01-01T00:00:00Z", None),
    ]


def test_back_dated_writes_into_a_finalized_period_are_refused(client: TestClient) -> None:
    """The close recorded org-1 as invoiced up to 2026-02-01 (Berlin midnight = 2026-01-31T23:00Z): a start,
    change or cancellation before that answers 422 naming `start` / `at`, and writes nothing."""
    from datetime import datetime, timedelta, timezone

    from meterstream.entities.finalization import record_finalized

    admin = _setup(client)
    sub = {"external_id": "s1", "customer": "org-1", "plan": "basic", "start": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/subscriptions", json=sub, headers=admin).status_code == 201
    assert client.get("/v1/customers/org-1", headers=admin).json()["finalized_until"] is None
    berlin = timezone(timedelta(hours=1))
    record_finalized(client.app.state.sessions, "acme", "org-1", datetime(2026, 2, 1, tzinfo=berlin))
    early = client.post("/v1/subscriptions", json={**sub, "external_id": "s2", "plan": "pro",
                                                   "start": "2026-01-20T00:00:00Z"}, headers=admin)  # fmt: skip
    assert error(early) == (422, "invalid", "start")
    assert "finalized" in early.json()["error"]["message"]
    assert "2026-01-31T23:00:00+00:00" in early.json()["error"]["message"]
    change = client.post("/v1/subscriptions/s1/change", json={"plan": "pro", "at": "2026-01-31T22:59:59Z"},
                         headers=admin)  # fmt: skip
    assert error(change) == (422, "invalid", "at")
    cancel = client.post("/v1/subscriptions/s1/cancel", json={"at": "2026-01-15T00:00:00Z"}, headers=admin)
    assert error(cancel) == (422, "invalid", "at")
    reader = key(client, "read")
    assert client.get("/v1/customers/org-1", headers=reader).json()["finalized_until"] == "2026-01-31T23:00:00Z"
    assert client.get("/v1/subscriptions/s1", headers=reader).json()["version"] == 1  # nothing written
    assert [s["external_id"] for s in client.get("/v1/subscriptions", headers=reader).json()["items"]] == ["s1"]
    # from the boundary on: accepted (a back-dated change into a period not yet invoiced is fine)
    ok = client.post("/v1/subscriptions/s1/change", json={"plan": "pro", "at": "2026-01-31T23:00:00Z"},
                     headers=admin)  # fmt: skip
    assert ok.status_code == 200 and ok.json()["phases"][1]["start"] == "2026-01-31T23:00:00Z"


def test_a_subscription_without_start_starts_at_the_current_whole_second(client: TestClient) -> None:
    """An event timed in the second the subscription was made (whole seconds, as most producers write them) must
    fall inside it: the default start is that second, not the instant with its microseconds (an audit's event at
    15:55:43Z was dead-lettered by a start of 15:55:43.942403Z)."""
    from datetime import UTC, datetime

    admin = _setup(client)
    before = datetime.now(UTC)
    made = client.post("/v1/subscriptions", json={"external_id": "now-1", "customer": "org-1", "plan": "pro"},
                       headers=admin)  # fmt: skip
    after = datetime.now(UTC)
    assert made.status_code == 201, made.json()
    start = datetime.fromisoformat(made.json()["phases"][0]["start"])
    assert start.microsecond == 0 and before.replace(microsecond=0) <= start <= after
    assert made.json()["status"] == "active"
