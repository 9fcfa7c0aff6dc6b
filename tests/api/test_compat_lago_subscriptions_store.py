"""Lago subscriptions on the entity store and current usage (in-process, no broker): create with a plan,
the customer created as Lago does, find_all filters, destroy = end now, event attribution, Lago errors;
current usage shaped from the close's draft invoice (a stand-in here, hand-made figures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lago_app import BASE, headers, make_app, plan_body, storage_and_calls

from meterstream.entities.customers import get_customer_doc
from meterstream.entities.subscriptions import get_subscription


class NoCloses:
    """The client the route hands to draft_usage (never used by the stand-in); the subscription writes read the
    closed months through it (api/closed_periods.py): none."""

    def query(self, *_args: object, **_kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(result_rows=[])


CLICKHOUSE = NoCloses()


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path, clickhouse_client=CLICKHOUSE) as c:
        admin = headers(c)
        storage, calls = storage_and_calls(c)
        c.post(f"{BASE}/plans", json=plan_body("pro", storage), headers=admin)
        cheap = plan_body("lite", storage, amount_cents=0)
        cheap["plan"]["charges"].append({"billable_metric_id": calls, "charge_model": "standard",
                                         "properties": {"amount": "0.02"}})  # fmt: skip
        c.post(f"{BASE}/plans", json=cheap, headers=admin)
        yield c


def sub(external_id: str, customer: str = "acme", plan: str | None = "pro", **extra: Any) -> dict[str, Any]:
    body = {"external_id": external_id, "external_customer_id": customer, **extra}
    if plan is not None:
        body["plan_code"] = plan
    return {"subscription": body}


def test_create_on_a_plan_makes_a_store_subscription_and_its_customer(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    resp = client.post(f"{BASE}/subscriptions", json=sub("s1", subscription_at="2026-11-01T00:00:00Z",
                                                         billing_time="anniversary"), headers=admin)  # fmt: skip
    assert resp.status_code == 200, resp.text
    obj = resp.json()["subscription"]
    assert (obj["external_id"], obj["external_customer_id"], obj["plan_code"], obj["status"]) == (
        "s1",
        "acme",
        "pro",
        "active",
    )
    assert (obj["billing_time"], obj["subscription_at"], obj["plan_amount_cents"]) == (
        "anniversary",
        "2026-11-01T00:00:00.000Z",
        1000,
    )
    stored = get_subscription(client.app.state.sessions, "t1", "s1")
    assert [(p.plan_code, p.plan_version, p.start) for p in stored.phases] == [
        ("pro", 1, datetime(2026, 11, 1, tzinfo=UTC))
    ]
    assert stored.billing_anchor == "anniversary"
    customer = get_customer_doc(client.app.state.sessions, "t1", "acme")  # created as Lago does
    assert (customer.name, customer.currency) == ("acme", "USD")
    # events naming only the subscription are charged to its customer
    assert client.app.state.lago.subscriptions.customers("t1", ["s1", "other"]) == {"s1": "acme"}
    # the same request again: the same subscription; the same id on another plan: a plan change from now
    again = client.post(f"{BASE}/subscriptions", json=sub("s1"), headers=admin).json()["subscription"]
    assert (again["lago_id"], again["meterstream"]["version"]) == (obj["lago_id"], 1)
    changed = client.post(f"{BASE}/subscriptions", json=sub("s1", plan="lite"), headers=admin).json()["subscription"]
    assert (changed["plan_code"], changed["previous_plan_code"]) == ("lite", "pro")
    assert [p["plan"] for p in changed["meterstream"]["phases"]] == ["pro@1", "lite@1"]


def test_find_all_filters_and_destroy(client) -> None:  # type: ignore[no-untyped-def]
    admin, reader = headers(client), headers(client, role="read")
    future = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for body in (sub("s1"), sub("s2", customer="globex", plan="lite"), sub("s3", subscription_at=future, plan="lite"),
                 sub("s4", plan=None)):  # fmt: skip
        assert client.post(f"{BASE}/subscriptions", json=body, headers=admin).status_code == 200

    def ids(query: str) -> list[str]:
        resp = client.get(f"{BASE}/subscriptions{query}", headers=reader)
        assert resp.status_code == 200, resp.text
        return [s["external_id"] for s in resp.json()["subscriptions"]]

    assert ids("") == ["s1", "s2", "s4"]  # Lago's default: active only (s3 is pending)
    assert ids("?external_customer_id=acme") == ["s1", "s4"]
    assert ids("?plan_code=lite&status[]=pending&status[]=active") == ["s2", "s3"]
    assert ids("?status[]=pending") == ["s3"]
    ended = client.delete(f"{BASE}/subscriptions/s1", headers=admin)
    assert ended.status_code == 200
    assert ended.json()["subscription"]["status"] == "terminated"
    assert ended.json()["subscription"]["terminated_at"] is not None
    assert ids("?status[]=terminated") == ["s1"]
    assert get_subscription(client.app.state.sessions, "t1", "s1").phases[-1].end is not None
    again = client.delete(f"{BASE}/subscriptions/s1", headers=admin)
    assert (again.status_code, again.json()["code"]) == (404, "subscription_not_found")
    assert client.get(f"{BASE}/subscriptions?status[]=gone", headers=reader).status_code == 422


def test_errors_name_the_lago_field(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    unknown = client.post(f"{BASE}/subscriptions", json=sub("s1", plan="nope"), headers=admin)
    assert (unknown.status_code, unknown.json()) == (404, {"status": 404, "error": "Not Found",
                                                          "code": "plan_not_found"})  # fmt: skip
    client.post(f"{BASE}/subscriptions", json=sub("s1"), headers=admin)
    overlap = client.post(f"{BASE}/subscriptions", json=sub("s2"), headers=admin)  # acme already on pro
    assert overlap.status_code == 422
    assert list(overlap.json()["error_details"]) == ["plan_code"]
    taken = client.post(f"{BASE}/subscriptions", json=sub("s1", customer="globex"), headers=admin)
    assert (taken.status_code, list(taken.json()["error_details"])) == (422, ["external_id"])
    for body, field in ((sub("s5", billing_time="weekly"), "billing_time"),
                        (sub("s5", subscription_at="yesterday"), "subscription_at"),
                        (sub("s5", plan_overrides={"tax_codes": ["vat"]}), "plan_overrides.tax_codes"),
                        (sub("s5", ending_at="2020-01-01T00:00:00Z", subscription_at="2021-01-01T00:00:00Z"),
                         "ending_at")):  # fmt: skip
        resp = client.post(f"{BASE}/subscriptions", json=body, headers=admin)
        assert (resp.status_code, list(resp.json()["error_details"])) == (422, [field]), resp.text
    assert client.delete(f"{BASE}/subscriptions/nope", headers=admin).status_code == 404


def invoice(lines: list[dict[str, Any]], total: str) -> dict[str, Any]:
    return {"currency": "USD", "total": total, "period_start": "2026-12-01T00:00:00Z",
            "period_end": "2027-01-01T00:00:00Z", "lines": lines}  # fmt: skip


def usage_line(meter: str, quantity: str, amount: str, plan: str = "pro@1", events: int = 1) -> dict[str, Any]:
    return {"kind": "usage", "meter": meter, "plan": plan, "quantity": quantity, "amount": amount, "events": events,
            "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}  # fmt: skip


def test_current_usage_is_lagos_shape_of_the_draft_invoice(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    client.post(f"{BASE}/customers", json={"customer": {"external_id": "acme", "timezone": "Europe/Paris"}},
                headers=admin)  # fmt: skip
    client.post(f"{BASE}/subscriptions", json=sub("s1", plan="lite"), headers=admin)
    calls: list[tuple] = []
    fee = {"kind": "fixed", "code": "subscription_fee", "plan": "lite@1", "quantity": "31", "amount": "10.00",
           "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}  # fmt: skip
    # storage 15 GB: 5 before a plan change, 10 after, priced 2.50 and 4.00 by the close; 3 calls at 0.02
    draft = invoice([usage_line("storage", "5", "2.50", "lite@1", 1), fee, usage_line("api_calls", "3", "0.06",
                     "lite@1", 3), usage_line("storage", "10", "4.00", "lite@1", 2)], "16.56")  # fmt: skip

    def stand_in(ch: Any, db: str, sf: Any, tenant: str, subscription: str, at: datetime) -> dict[str, Any]:
        calls.append((ch, tenant, subscription))
        return draft

    client.app.state.lago.draft_usage = stand_in
    resp = client.get(f"{BASE}/customers/acme/current_usage?external_subscription_id=s1", headers=admin)
    assert resp.status_code == 200, resp.text
    body = resp.json()["customer_usage"]
    assert calls == [(CLICKHOUSE, "t1", "s1")]
    assert (body["from_datetime"], body["to_datetime"], body["issuing_date"]) == (
        "2026-12-01T00:00:00Z",
        "2026-12-31T23:59:59Z",
        "2027-01-01",
    )  # local date in Paris
    assert (body["currency"], body["amount_cents"], body["total_amount_cents"], body["taxes_amount_cents"]) == (
        "USD",
        656,
        656,
        0,
    )  # 2.50 + 4.00 + 0.06: usage only, as Lago's current usage
    by_code = {c["billable_metric"]["code"]: c for c in body["charges_usage"]}
    assert (by_code["storage"]["units"], by_code["storage"]["amount_cents"], by_code["storage"]["events_count"]) == (
        "15",
        650,
        3,
    )
    assert (by_code["api_calls"]["units"], by_code["api_calls"]["amount_cents"]) == ("3", 6)
    assert by_code["api_calls"]["charge"]["charge_model"] == "standard"
    assert by_code["storage"]["charge"]["charge_model"] == "graduated"
    assert by_code["api_calls"]["billable_metric"]["aggregation_type"] == "count_agg"
    assert body["meterstream"]["invoice_total"] == "16.56"  # the whole draft, recurring fee included


def test_current_usage_errors(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    client.post(f"{BASE}/subscriptions", json=sub("s1"), headers=admin)
    client.post(f"{BASE}/subscriptions", json=sub("g1", customer="globex"), headers=admin)
    for path, code in (("nobody/current_usage?external_subscription_id=s1", "customer_not_found"),
                       ("acme/current_usage?external_subscription_id=nope", "subscription_not_found"),
                       ("acme/current_usage?external_subscription_id=g1", "subscription_not_found")):  # fmt: skip
        resp = client.get(f"{BASE}/customers/{path}", headers=admin)
        assert (resp.status_code, resp.json()["code"]) == (404, code)
    missing = client.get(f"{BASE}/customers/acme/current_usage", headers=admin)
    assert (missing.status_code, list(missing.json()["error_details"])) == (422, ["external_subscription_id"])


def test_a_start_in_an_invoiced_period_is_refused_naming_subscription_at(client) -> None:  # type: ignore[no-untyped-def]
    from meterstream.entities.finalization import record_finalized

    admin = headers(client)
    client.post(f"{BASE}/customers", json={"customer": {"external_id": "acme"}}, headers=admin)
    record_finalized(client.app.state.sessions, "t1", "acme", datetime(2026, 11, 1, tzinfo=UTC))  # October invoiced
    back = client.post(f"{BASE}/subscriptions", json=sub("s1", subscription_at="2026-10-15T00:00:00Z"), headers=admin)
    assert (back.status_code, list(back.json()["error_details"])) == (422, ["subscription_at"])
    assert client.get(f"{BASE}/subscriptions/s1", headers=admin).status_code == 404  # nothing written
    ok = client.post(f"{BASE}/subscriptions", json=sub("s1", subscription_at="2026-11-01T00:00:00Z"), headers=admin)
    assert ok.status_code == 200, ok.text


def test_events_naming_a_subscription_of_the_own_api_find_its_customer(client) -> None:  # type: ignore[no-untyped-def]
    from meterstream.entities.customers import put_customer
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.schemas.entities import CustomerDoc, Phase, SubscriptionDoc

    sf = client.app.state.sessions
    put_customer(sf, CustomerDoc(tenant="t1", external_id="globex", name="Globex", version=0))
    create_subscription(sf, SubscriptionDoc(tenant="t1", external_id="own-1", customer="globex", version=0,
                                            phases=[Phase(plan_code="pro", plan_version=1,
                                                          start=datetime(2026, 11, 1, tzinfo=UTC))]))  # fmt: skip
    assert client.app.state.lago.subscriptions.customers("t1", ["own-1", "unknown"]) == {"own-1": "globex"}
    found = client.get(f"{BASE}/subscriptions/own-1", headers=headers(client)).json()["subscription"]
    assert (found["external_customer_id"], found["plan_code"]) == ("globex", "pro")


def test_a_subscription_without_subscription_at_starts_at_the_current_whole_second(client) -> None:  # type: ignore[no-untyped-def]
    """Lago's own example (docs/lago.md "Switching"): subscribe, then send an event with `timestamp =
    int(time.time())` at once. The event's whole second must lie inside the subscription, so the default start is
    that second (an audit saw such an event dead-lettered against a start of 15:58:56.427)."""
    before = datetime.now(UTC)
    resp = client.post(f"{BASE}/subscriptions", json=sub("s-now"), headers=headers(client))
    after = datetime.now(UTC)
    assert resp.status_code == 200, resp.text
    (phase,) = get_subscription(client.app.state.sessions, "t1", "s-now").phases
    assert phase.start.microsecond == 0 and before.replace(microsecond=0) <= phase.start <= after
    assert resp.json()["subscription"]["subscription_at"] == phase.start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
