"""OpenMeter's features, entitlements and grants through the OpenMeter Python SDK (openmeter==1.0.0b236), unchanged,
against /compat/openmeter on a real server; the usage is rated rows put into embedded ClickHouse. Every balance is
worked out by hand in the comments (the rules: docs/entitlements.md)."""

from __future__ import annotations

import datetime as dt

import pytest
from corehttp.exceptions import HttpResponseError, ResourceNotFoundError
from om_rows import put_rows

pytestmark = pytest.mark.kafka
# the usage period: 6 hours from A, the hour two hours ago (so `now` is inside it, whatever the day)
A = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


def at(minutes: int) -> dt.datetime:
    return A + dt.timedelta(minutes=minutes)


def text(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row(i, minutes, quantity, model="gpt", customer="acme-corp", **kw):
    return {"id": i, "meter": "tokens", "customer": customer, "subject": "u1", "quantity": quantity,
            "time": text(at(minutes)), "dimensions": {"model": model}, **kw}  # fmt: skip


@pytest.fixture
def setup(om):
    admin = om["admin"]
    admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens",
                         "groupBy": {"model": "$.model"}})  # fmt: skip
    admin.customers.create({"name": "ACME", "key": "acme-corp", "usageAttribution": {"subjectKeys": ["u1"]}})
    feature = admin.features.create({"key": "gpt_tokens", "name": "GPT tokens", "meterSlug": "tokens",
                                     "meterGroupByFilters": {"model": "gpt"}})  # fmt: skip
    put_rows(om, [
        row("r1", 10, "30"),  # burns G1 (priority 1): 70 left
        row("r2", 20, "1000", model="claude"),  # not the feature's model: not counted
        row("r3", 70, "20"),  # G1 expired at A+60 with 70 left (lost); G2: 50 -> 30
        row("r4", 80, "45"),  # G2: 30 -> 0, 15 over
        row("r5", 30, "500", customer="other"),  # another customer
        row("r6", 30, "700", tenant="someone-else"),  # another tenant
    ])  # fmt: skip
    return om, feature


def test_a_metered_entitlement_burns_its_grants_down(setup):
    om, feature = setup
    admin, reader = om["admin"], om["read"]
    e = admin.customer_entitlements_v2.post("acme-corp", {
        "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "PT6H", "anchor": text(A)},
        "measureUsageFrom": "CURRENT_PERIOD_START",
    })  # fmt: skip
    # the SDK answers an entitlement (a oneOf) as the JSON object it read
    assert (e["type"], e["featureId"], e["featureKey"]) == ("metered", feature.id, "gpt_tokens")
    assert e["currentUsagePeriod"] == {"from": text(A), "to": text(at(360))}
    assert (e["measureUsageFrom"], e["usagePeriod"]["intervalISO"]) == (text(A), "PT6H")
    grants = admin.customer_entitlement_v2
    expiring = {"amount": 100, "priority": 1, "effectiveAt": text(A), "expiration": {"duration": "HOUR", "count": 1}}
    g1 = grants.create_customer_entitlement_grant("acme-corp", "gpt_tokens", expiring)
    assert (g1.amount, g1.priority, g1.expires_at) == (100, 1, at(60))
    g2 = grants.create_customer_entitlement_grant("acme-corp", e["id"], {"amount": 50, "priority": 5,
                                                                      "effectiveAt": text(A)})  # fmt: skip
    value = reader.customer_entitlement_v2.get_customer_entitlement_value
    v = value("acme-corp", "gpt_tokens")  # now (A+2h): 30 + 20 + 45 = 95 used; covered 30 + 20 + 30 = 80
    assert (v.has_access, v.balance, v.usage, v.overage, v.total_available_grant_amount) == (False, 0, 95, 15, 80)
    assert v.grant_balances == {g2.id: 0}  # G1 is no longer active
    v = value("acme-corp", "gpt_tokens", time=at(65))  # G1 expired, only r1 so far: G2 untouched
    assert (v.has_access, v.balance, v.usage, v.overage) == (True, 50, 30, 0)
    v1 = reader.customer_entitlement.get_customer_entitlement_value("acme-corp", "gpt_tokens", time=at(65))
    assert (v1.has_access, v1.balance, v1.usage, v1.total_available_grant_amount) == (True, 50, 30, 80)
    # a new grant pays the 15 over first: 40 - 15 = 25
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    g3 = grants.create_customer_entitlement_grant("acme-corp", "gpt_tokens", {"amount": 40, "priority": 1,
                                                                              "effectiveAt": text(now)})  # fmt: skip
    later = now + dt.timedelta(minutes=2)
    v = value("acme-corp", "gpt_tokens", time=later)
    assert (v.has_access, v.balance, v.usage, v.overage, v.total_available_grant_amount) == (True, 25, 95, 0, 120)
    assert v.grant_balances == {g2.id: 0, g3.id: 25}
    # the next period (A+6h): G2 rolls over min(50, max(0, 0)) = 0, G3 min(40, max(0, 25)) = 25; usage starts at 0
    v = value("acme-corp", "gpt_tokens", time=at(370))
    assert (v.balance, v.usage, v.overage) == (25, 0, 0)
    listed = grants.get_grants("acme-corp", "gpt_tokens")
    # a paginated answer's `items` is its JSON list (`.items` is the mapping's method)
    assert [g["id"] for g in listed["items"]] == [g1.id, g2.id, g3.id] and listed.total_count == 3
    admin.grants.delete(g3.id)  # voided now: it was never active before
    v = value("acme-corp", "gpt_tokens", time=later)
    assert (v.has_access, v.balance, v.overage) == (False, 0, 15)
    assert [g["id"] for g in grants.get_grants("acme-corp", "gpt_tokens")["items"]] == [g1.id, g2.id]


def test_issue_after_reset_refills_and_a_soft_limit_keeps_access(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    admin.customer_entitlements_v2.post("acme-corp", {
        "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "PT6H", "anchor": text(A)},
        "measureUsageFrom": text(A), "issueAfterReset": 60, "isSoftLimit": True,
    })  # fmt: skip
    value = reader.customer_entitlement_v2.get_customer_entitlement_value
    v = value("acme-corp", "gpt_tokens")  # 95 used of the 60 issued: 35 over, but a soft limit keeps access
    assert (v.has_access, v.balance, v.usage, v.overage) == (True, 0, 95, 35)
    v = value("acme-corp", "gpt_tokens", time=at(361))  # the next period: back to 60 (its rollover is 60..60)
    assert (v.balance, v.usage, v.overage) == (60, 0, 0)
    (issued,) = admin.customer_entitlement_v2.get_grants("acme-corp", "gpt_tokens")["items"]
    assert (issued["amount"], issued["priority"], issued["effectiveAt"]) == (60, 1, text(A))
    assert issued["annotations"] == {"issueAfterReset": True}


def test_boolean_and_static_entitlements_access_and_conflicts(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    admin.features.create({"key": "sso", "name": "Single sign-on"})
    admin.features.create({"key": "seats", "name": "Seats"})
    b = admin.customer_entitlements_v2.post("acme-corp", {"type": "boolean", "featureKey": "sso"})
    admin.customer_entitlements_v2.post("acme-corp", {"type": "static", "featureKey": "seats",
                                                      "config": '{"seats": 5}'})  # fmt: skip
    with pytest.raises(HttpResponseError) as err:
        admin.customer_entitlements_v2.post("acme-corp", {"type": "boolean", "featureKey": "sso"})
    assert err.value.status_code == 409
    assert err.value.response.json()["extensions"]["conflictingEntityId"] == b["id"]
    access = reader.customer.get_customer_access("acme-corp")
    assert {k: (v.has_access, v.config) for k, v in access.entitlements.items()} == {
        "sso": (True, None), "seats": (True, '{"seats": 5}')}  # fmt: skip
    v = reader.customer_entitlement.get_customer_entitlement_value("acme-corp", "gpt_tokens")
    assert v.has_access is False  # no entitlement to that feature: no access (200, as OpenMeter answers)
    admin.customer_entitlements_v2.delete("acme-corp", "sso")
    assert set(reader.customer.get_customer_access("acme-corp").entitlements) == {"seats"}
    again = admin.customer_entitlements_v2.post("acme-corp", {"type": "boolean", "featureKey": "sso"})
    assert again["id"] != b["id"]
    listed = reader.entitlements_v2.list(feature=["sso"])
    assert [(x["id"], "deletedAt" in x) for x in listed["items"]] == [(b["id"], True), (again["id"], False)]
    # a static config must be a JSON object in a string; a metered entitlement needs a feature with a meter
    refused = [
        ({"type": "static", "featureKey": "seats", "config": "[1]"}, "config"),
        ({"type": "metered", "featureKey": "sso", "usagePeriod": {"interval": "DAY"}}, "featureKey"),
    ]
    for body, field in refused:
        admin.customer_entitlements_v2.delete("acme-corp", "seats")
        with pytest.raises(HttpResponseError) as err:
            admin.customer_entitlements_v2.post("acme-corp", body)
        assert (err.value.status_code, err.value.response.json()["extensions"]["field"]) == (400, field)
        admin.customer_entitlements_v2.post("acme-corp", {"type": "static", "featureKey": "seats", "config": "{}"})


def test_features_are_archived_not_deleted(setup):
    om, feature = setup
    admin, reader = om["admin"], om["read"]
    # a list answer (a oneOf of an array and a page) comes back as the JSON it read
    assert [f["key"] for f in reader.features.list()] == ["gpt_tokens"]
    with pytest.raises(HttpResponseError) as err:
        admin.features.create({"key": "gpt_tokens", "name": "again"})
    assert err.value.status_code == 409
    admin.features.delete(feature.id)
    assert reader.features.list() == []
    archived = reader.features.list(include_archived=True)
    assert [(f["id"], "archivedAt" in f) for f in archived] == [(feature.id, True)]
    with pytest.raises(ResourceNotFoundError):
        admin.customer_entitlements_v2.post("acme-corp", {"type": "boolean", "featureKey": "gpt_tokens"})
    replaced = admin.features.create({"key": "gpt_tokens", "name": "GPT tokens v2", "meterSlug": "tokens"})
    assert replaced.id != feature.id and reader.features.get("gpt_tokens").id == replaced.id


def test_a_reset_starts_a_new_period_and_rolls_the_grants_over(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    grant = {"amount": 100, "effectiveAt": text(A), "maxRolloverAmount": 30}
    admin.customer_entitlements_v2.post("acme-corp", {
        "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "PT6H", "anchor": text(A)},
        "measureUsageFrom": text(A), "grants": [grant],
    })  # fmt: skip
    value = reader.customer_entitlement_v2.get_customer_entitlement_value
    v = value("acme-corp", "gpt_tokens")  # without a reset: 95 of 100 used
    assert (v.has_access, v.balance, v.usage, v.overage) == (True, 5, 95, 0)
    admin.customer_entitlement_v2.reset_customer_entitlement("acme-corp", "gpt_tokens", {"effectiveAt": text(at(75))})
    # at A+75: 30 + 20 used, 50 left, rolled over min(30, max(0, 50)) = 30; then r4's 45: 0 left, 15 over
    v = value("acme-corp", "gpt_tokens")
    assert (v.has_access, v.balance, v.usage, v.overage) == (False, 0, 45, 15)
    e = reader.customer_entitlements_v2.get("acme-corp", "gpt_tokens")
    assert (e["lastReset"], e["currentUsagePeriod"]) == (text(at(75)), {"from": text(at(75)), "to": text(at(435))})
    assert e["usagePeriod"]["anchor"] == text(A)  # the entitlement's own anchor, as OpenMeter reports it
    with pytest.raises(HttpResponseError) as err:  # a second reset at the same minute
        admin.customer_entitlement_v2.reset_customer_entitlement("acme-corp", "gpt_tokens",
                                                                  {"effectiveAt": text(at(75))})  # fmt: skip
    assert (err.value.status_code, err.value.response.json()["extensions"]["field"]) == (400, "effectiveAt")


def test_an_override_replaces_the_entitlement(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    admin.features.create({"key": "sso", "name": "Single sign-on"})
    admin.features.create({"key": "seats", "name": "Seats"})
    old = admin.customer_entitlements_v2.post("acme-corp", {"type": "boolean", "featureKey": "sso"})
    new = admin.customer_entitlements_v2.override("acme-corp", "sso", {"type": "static", "featureKey": "sso",
                                                                      "config": '{"tier": "gold"}'})  # fmt: skip
    assert (new["type"], new["config"]) == ("static", '{"tier": "gold"}') and new["id"] != old["id"]
    v = reader.customer_entitlement.get_customer_entitlement_value("acme-corp", "sso")
    assert (v.has_access, v.config) == (True, '{"tier": "gold"}')
    listed = reader.entitlements_v2.list(feature=["sso"])
    assert [(x["id"], "deletedAt" in x) for x in listed["items"]] == [(old["id"], True), (new["id"], False)]
    with pytest.raises(HttpResponseError) as err:  # an override keeps the feature
        admin.customer_entitlements_v2.override("acme-corp", "sso", {"type": "boolean", "featureKey": "seats"})
    assert (err.value.status_code, err.value.response.json()["extensions"]["field"]) == (400, "featureKey")
    with pytest.raises(ResourceNotFoundError):  # nothing to override
        admin.customer_entitlements_v2.override("acme-corp", "seats", {"type": "boolean", "featureKey": "seats"})


def test_history_by_window_and_the_burn_down(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    expiring = {"amount": 100, "priority": 1, "effectiveAt": text(A), "expiration": {"duration": "HOUR", "count": 1}}
    admin.customer_entitlements_v2.post("acme-corp", {
        "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "PT6H", "anchor": text(A)},
        "measureUsageFrom": text(A), "grants": [expiring, {"amount": 50, "priority": 5, "effectiveAt": text(A)}],
    })  # fmt: skip
    g1, g2 = (g["id"] for g in reader.customer_entitlement_v2.get_grants("acme-corp", "gpt_tokens")["items"])
    h = reader.customer_entitlement_v2.get_customer_entitlement_history(
        "acme-corp", "gpt_tokens", window_size="HOUR", from_parameter=A, to=at(120)
    )
    # hour 1: r1's 30, both grants full at its start (100 + 50); hour 2: 20 + 45, only G2 (50) left at its start
    assert [(w["period"]["from"], w["usage"], w["balanceAtStart"]) for w in h["windowedHistory"]] == [
        (text(A), 30, 150), (text(at(60)), 65, 50)]  # fmt: skip
    # the burn-down is cut where G1 expires: 30 from G1; then 50 from G2 and 15 over
    segments = [(s["period"]["from"], s["period"]["to"], s["usage"], s["overage"], s["balanceAtStart"],
                 s["balanceAtEnd"], s["grantUsages"]) for s in h["burndownHistory"]]  # fmt: skip
    assert segments == [
        (text(A), text(at(60)), 30, 0, 150, 120, [{"grantId": g1, "usage": 30}]),
        (text(at(60)), text(at(120)), 65, 15, 50, 0, [{"grantId": g2, "usage": 50}]),
    ]
    with pytest.raises(HttpResponseError) as err:
        reader.customer_entitlement_v2.get_customer_entitlement_history("acme-corp", "gpt_tokens", window_size="WEEK")
    assert (err.value.status_code, err.value.response.json()["extensions"]["field"]) == (400, "windowSize")


def test_the_v1_reads_by_subject(setup):
    om, _ = setup
    admin, reader = om["admin"], om["read"]
    admin.customers.create({"name": "Other", "key": "other-co", "usageAttribution": {"subjectKeys": ["u7"]}})
    metered = admin.customer_entitlements_v2.post("acme-corp", {
        "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "DAY", "anchor": text(A)},
        "grants": [{"amount": 5, "effectiveAt": text(dt.datetime.now(dt.UTC))}]})  # fmt: skip
    admin.features.create({"key": "sso", "name": "Single sign-on"})
    other = admin.customer_entitlements_v2.post("other-co", {"type": "boolean", "featureKey": "sso"})
    listed = reader.entitlements.list(subject=["u1"])  # acme-corp's usage attribution holds u1
    assert [(e["id"], e["subjectKey"], "customerId" in e) for e in listed] == [(metered["id"], "u1", False)]
    assert [e["id"] for e in reader.entitlements.list(feature=["sso"])] == [other["id"]]
    one = reader.entitlements.get(other["id"])
    assert (one["subjectKey"], one["featureKey"]) == ("u7", "sso")
    grants = reader.grants.list(subject=["u1"])
    assert [(g["entitlementId"], g["amount"]) for g in grants] == [(metered["id"], 5)]
    assert reader.grants.list(subject=["u7"]) == []
