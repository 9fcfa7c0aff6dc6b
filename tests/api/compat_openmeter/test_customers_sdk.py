"""OpenMeter customers through the SDK (openmeter==1.0.0b236, unchanged, on a real uvicorn server) are the
same customers the own API (/v1/customers) sees, on SQLite AND PostgreSQL: one table, one version, one set
of rules. No Kafka (customers are SQL only): the app gets a stand-in ingest service.

Expected values are written by hand from the requests (versions count writes), never copied from a response.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openmeter
import pytest
from api_helpers import offline_app
from corehttp.exceptions import HttpResponseError, ResourceNotFoundError
from served_app import serve


@pytest.fixture
def env(fresh_url: str, tmp_path: Path) -> Iterator[dict]:
    """The app on an empty store of each kind, SQLite and PostgreSQL (tests/conftest.py fresh_url), served."""
    app = offline_app(tmp_path, fresh_url)
    token = app.state.keys.create("acme", "admin", "sdk")[1]
    with serve(app) as base:
        om = openmeter.Client(endpoint=f"{base}/compat/openmeter", token=token)
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        yield {"om": om, "http": http, "app": app}
        om.close()
        http.close()
    app.state.engine.dispose()


ACME = {
    "name": "ACME Corp",
    "key": "acme-corp",
    "description": "Rockets",
    "primaryEmail": "billing@acme.example",
    "currency": "EUR",
    "metadata": {"crm": "sf-001"},
    "usageAttribution": {"subjectKeys": ["user-1", "user-2"]},
    "billingAddress": {"country": "DE", "postalCode": "10115", "state": "BE", "city": "Berlin",
                       "line1": "Invalidenstr. 1", "line2": "Hof 2", "phoneNumber": "+49 30 1234567"},
    "timezone": "Europe/Berlin",
}  # fmt: skip


def test_a_customer_created_through_openmeter_is_the_v1_customer(env) -> None:
    om, http = env["om"], env["http"]
    c = om.customers.create(ACME)
    assert (c.key, c.name, c.currency, c.primary_email) == ("acme-corp", "ACME Corp", "EUR", "billing@acme.example")
    a = c.billing_address
    assert (a.country, a.postal_code, a.state, a.city, a.line1, a.line2, a.phone_number) == (
        "DE", "10115", "BE", "Berlin", "Invalidenstr. 1", "Hof 2", "+49 30 1234567")  # fmt: skip
    assert c.usage_attribution.subject_keys == ["user-1", "user-2"] and len(c.id) == 26
    v1 = http.get("/v1/customers/acme-corp")
    assert v1.status_code == 200 and v1.headers["ETag"] == '"1"'
    body = v1.json()
    assert (body["external_id"], body["name"], body["email"], body["currency"], body["timezone"]) == (
        "acme-corp", "ACME Corp", "billing@acme.example", "EUR", "Europe/Berlin")  # fmt: skip
    assert (body["description"], body["metadata"], body["version"]) == ("Rockets", {"crm": "sf-001"}, 1)
    assert body["address"] == {"line1": "Invalidenstr. 1", "line2": "Hof 2", "city": "Berlin", "postal_code": "10115",
                               "state": "BE", "country": "DE", "phone_number": "+49 30 1234567"}  # fmt: skip
    # without a key, the external id is its id
    keyless = om.customers.create({"name": "No Key"})
    assert http.get(f"/v1/customers/{keyless.id}").json()["name"] == "No Key"


def test_a_v1_customer_is_an_openmeter_customer(env) -> None:
    om, http = env["om"], env["http"]
    made = http.post("/v1/customers", json={"external_id": "org-1", "name": "Org One", "currency": "USD",
                                            "address": {"city": "Austin", "country": "US"}})  # fmt: skip
    assert made.status_code == 201
    c = om.customers.get("org-1")
    assert (c.key, c.name, c.currency, c.billing_address.city, c.billing_address.country) == (
        "org-1", "Org One", "USD", "Austin", "US")  # fmt: skip
    assert om.customers.get(c.id).key == "org-1"
    assert [x.key for x in om.customers.list().items_property] == ["org-1"]


def test_updates_from_either_side_share_the_version_and_keep_the_others_fields(env) -> None:
    om, http = env["om"], env["http"]
    om.customers.create(ACME)  # version 1
    v1 = http.get("/v1/customers/acme-corp").json()
    own = {k: v for k, v in v1.items() if k not in ("external_id",)}
    updated = http.put("/v1/customers/acme-corp", json={**own, "legal_name": "ACME Corporation GmbH",
                                                        "tax_id": "DE123456789", "payment_terms_days": 30})  # fmt: skip
    assert updated.status_code == 200 and updated.json()["version"] == 2
    # OpenMeter replaces its own fields: name, address, subjects (a new set); legal name, tax id, terms stay
    changed = om.customers.update("acme-corp", {"name": "ACME Rockets", "key": "acme-corp", "currency": "EUR",
                                                "billingAddress": {"country": "AT", "city": "Wien"},
                                                "usageAttribution": {"subjectKeys": ["user-2", "user-3"]}})  # fmt: skip
    assert (changed.name, changed.billing_address.city, changed.usage_attribution.subject_keys) == (
        "ACME Rockets", "Wien", ["user-2", "user-3"])  # fmt: skip
    assert changed.description is None and changed.primary_email is None  # replaced: not sent, so cleared
    after = http.get("/v1/customers/acme-corp")
    body = after.json()
    assert after.headers["ETag"] == '"3"' and body["version"] == 3
    assert (body["name"], body["legal_name"], body["tax_id"], body["payment_terms_days"]) == (
        "ACME Rockets", "ACME Corporation GmbH", "DE123456789", 30)  # fmt: skip
    assert {k: v for k, v in body["address"].items() if v is not None} == {"city": "Wien", "country": "AT"}
    assert body["timezone"] == "Europe/Berlin"
    # optimistic locking intact: a /v1 client still holding version 2 is refused
    stale = http.put("/v1/customers/acme-corp", json={"name": "Stale", "version": 2})
    assert stale.status_code == 409 and stale.json()["error"]["field"] == "version"
    # and an OpenMeter client sending If-Match with an old version too
    with pytest.raises(HttpResponseError) as exc:
        om.customers.update("acme-corp", {"name": "Late"}, headers={"If-Match": '"2"'})
    assert exc.value.status_code == 409 and exc.value.response.json()["extensions"]["field"] == "version"
    # the same replace again writes nothing
    same = {"name": "ACME Rockets", "key": "acme-corp", "currency": "EUR",
            "billingAddress": {"country": "AT", "city": "Wien"}}  # fmt: skip
    om.customers.update("acme-corp", same)
    assert http.get("/v1/customers/acme-corp").json()["version"] == 3


def test_subjects_move_and_are_freed(env) -> None:
    om = env["om"]
    om.customers.create(ACME)
    with pytest.raises(HttpResponseError) as exc:  # user-2 belongs to acme-corp
        om.customers.create({"name": "Other", "key": "other", "usageAttribution": {"subjectKeys": ["user-2"]}})
    assert exc.value.status_code == 409
    assert exc.value.response.json()["extensions"]["field"] == "usageAttribution.subjectKeys"
    om.customers.update("acme-corp", {"name": "ACME Corp", "usageAttribution": {"subjectKeys": ["user-1"]}})
    other = om.customers.create({"name": "Other", "key": "other", "usageAttribution": {"subjectKeys": ["user-2"]}})
    assert other.usage_attribution.subject_keys == ["user-2"]
    assert [c.key for c in om.customers.list(subject="user-2").items_property] == ["other"]
    om.customers.delete("other")  # a deleted customer's subjects are free again
    again = om.customers.create({"name": "Again", "usageAttribution": {"subjectKeys": ["user-2"]}})
    assert again.usage_attribution.subject_keys == ["user-2"]


def test_bad_input_names_openmeters_field_and_writes_nothing(env) -> None:
    om, http = env["om"], env["http"]
    om.customers.create(ACME)
    cases = [
        ({"name": "X", "key": "other-key"}, "key"),  # the key is the external id: it cannot change
        ({"name": "X", "billingAddress": {"country": "Germany"}}, "billingAddress.country"),
        ({"name": "X", "primaryEmail": "not-an-address"}, "primaryEmail"),
        ({"name": "X", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "X", "currency": "XYZ"}, "currency"),
    ]
    for update, field in cases:
        with pytest.raises(HttpResponseError) as exc:
            om.customers.update("acme-corp", update)
        assert exc.value.status_code == 400, update
        assert exc.value.response.json()["extensions"]["field"] == field
    with pytest.raises(HttpResponseError) as exc:
        om.customers.create({"name": "Y", "key": "y", "billingAddress": {"postalCode": "1" * 300}})
    assert exc.value.status_code == 400
    assert http.get("/v1/customers/acme-corp").json()["version"] == 1
    assert om.customers.list().total_count == 1
    with pytest.raises(ResourceNotFoundError):
        om.customers.update("nobody", {"name": "X"})


def test_delete_is_refused_while_a_subscription_runs(env) -> None:
    om, http = env["om"], env["http"]
    om.customers.create({**ACME, "currency": "USD"})
    plan = {"code": "basic", "name": "Basic", "currency": "USD",
            "usage": {"api_calls": {"model": "unit", "unit_amount": "0.001"}}}  # fmt: skip
    assert http.post("/v1/plans", json=plan).status_code == 201
    sub = {"external_id": "s1", "customer": "acme-corp", "plan": "basic", "start": "2026-01-01T00:00:00Z"}
    assert http.post("/v1/subscriptions", json=sub).status_code == 201
    with pytest.raises(HttpResponseError) as exc:
        om.customers.delete("acme-corp")
    assert exc.value.status_code == 409
    assert http.post("/v1/subscriptions/s1/cancel", json={"at": "2026-02-01T00:00:00Z"}).status_code == 200
    om.customers.delete("acme-corp")
    assert http.get("/v1/customers/acme-corp").status_code == 404
    with pytest.raises(ResourceNotFoundError):
        om.customers.get("acme-corp")
