"""Lago's `plan_overrides` on `POST /subscriptions` (in-process, no broker): what a subscription overrides lands
on its phase in the store as the prices and fee the close and the stream processor apply (tests/billing and
tests/processor/test_live_catalog.py price overridden phases); hand-written expectations; refusals name the
Lago field. The SDK's own request and an invoice priced with overrides: test_compat_lago_sdk_billing.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lago_app import BASE, headers, make_app, plan_body, storage_and_calls
from test_compat_lago_subscriptions_store import CLICKHOUSE, sub

from meterstream.entities.subscriptions import get_subscription

START = "2026-11-01T00:00:00Z"


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path, clickhouse_client=CLICKHOUSE) as c:
        admin = headers(c)
        storage, calls = storage_and_calls(c)
        pro = plan_body("pro", storage)  # 10.00 a month, storage graduated 0-10 at 0.50, then 0.40
        pro["plan"]["charges"].append({"billable_metric_id": calls, "charge_model": "standard",
                                       "properties": {"amount": "0.02"}, "min_amount_cents": 100})  # fmt: skip
        assert c.post(f"{BASE}/plans", json=pro, headers=admin).status_code == 200
        lite = plan_body("lite", storage, amount_cents=0)  # no recurring fee
        assert c.post(f"{BASE}/plans", json=lite, headers=admin).status_code == 200
        yield c


def charge_ids(client: Any, plan: str) -> dict[str, str]:
    """code -> the charge's lago_id, as a Lago client reads them from the plan object."""
    resp = client.get(f"{BASE}/plans/{plan}", headers=headers(client, role="read"))
    return {c["billable_metric_code"]: c["lago_id"] for c in resp.json()["plan"]["charges"]}


def test_overrides_land_on_the_subscription(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    ids = charge_ids(client, "pro")
    overrides = {
        "amount_cents": 500,
        "amount_currency": "USD",
        "name": "Pro for Acme",  # shown nowhere here: changes nothing billed
        "trial_period": 14,
        "charges": [
            {"id": ids["storage"], "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": 10, "per_unit_amount": "0.30", "flat_amount": "0"},
                {"from_value": 11, "to_value": None, "per_unit_amount": "0.20", "flat_amount": "1"}]}},
            {"id": "api_calls", "min_amount_cents": 250},  # by code; its price kept
        ],
    }  # fmt: skip
    resp = client.post(f"{BASE}/subscriptions", json=sub("s1", subscription_at=START, plan_overrides=overrides),
                       headers=admin)  # fmt: skip
    assert resp.status_code == 200, resp.text
    obj = resp.json()["subscription"]
    assert (obj["plan_code"], obj["plan_amount_cents"], obj["plan_amount_currency"]) == ("pro", 500, "USD")
    assert obj["trial_ended_at"] == "2026-11-15T00:00:00.000Z"
    stored = get_subscription(client.app.state.sessions, "t1", "s1")
    phase = stored.phases[0]
    assert phase.fixed_overrides == {"subscription_fee": Decimal("5.00")}
    assert phase.usage_overrides == {
        "storage": {"model": "graduated", "tiers": [{"up_to": "10", "unit_amount": "0.30"},
                                                    {"up_to": None, "unit_amount": "0.20", "flat_amount": "1"}]},
        "api_calls": {"model": "unit", "unit_amount": "0.02", "minimum": "2.50"},
    }  # fmt: skip
    assert stored.trial_end == datetime(2026, 11, 15, tzinfo=UTC)
    # the same request again: the same subscription; other overrides for it: refused, nothing changed
    again = client.post(f"{BASE}/subscriptions", json=sub("s1", subscription_at=START, plan_overrides=overrides),
                        headers=admin)  # fmt: skip
    assert (again.status_code, again.json()["subscription"]["meterstream"]["version"]) == (200, stored.version)
    other = dict(overrides, amount_cents=600)
    refused = client.post(f"{BASE}/subscriptions", json=sub("s1", plan_overrides=other), headers=admin)
    assert (refused.status_code, list(refused.json()["error_details"])) == (422, ["plan_overrides"])
    assert get_subscription(client.app.state.sessions, "t1", "s1").version == stored.version


def test_properties_keep_the_charge_minimum_and_a_zero_minimum_drops_it(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    ids = charge_ids(client, "pro")
    body = sub("s1", plan_overrides={"charges": [{"id": ids["api_calls"], "properties": {"amount": "0.015"}}]})
    assert client.post(f"{BASE}/subscriptions", json=body, headers=admin).status_code == 200
    phase = get_subscription(client.app.state.sessions, "t1", "s1").phases[0]
    assert phase.usage_overrides == {"api_calls": {"model": "unit", "unit_amount": "0.015", "minimum": "1.00"}}
    assert phase.fixed_overrides == {}
    body = sub("s2", customer="globex", plan_overrides={"amount_cents": 0, "charges": [
        {"id": ids["api_calls"], "min_amount_cents": 0}]})  # fmt: skip
    resp = client.post(f"{BASE}/subscriptions", json=body, headers=admin)
    assert resp.json()["subscription"]["plan_amount_cents"] == 0
    phase = get_subscription(client.app.state.sessions, "t1", "s2").phases[0]
    assert phase.usage_overrides == {"api_calls": {"model": "unit", "unit_amount": "0.02"}}
    assert phase.fixed_overrides == {"subscription_fee": Decimal("0.00")}


@pytest.mark.parametrize(
    ("plan", "overrides", "field"),
    [
        ("pro", {"amount_currency": "EUR"}, "plan_overrides.amount_currency"),
        ("lite", {"amount_cents": 100}, "plan_overrides.amount_cents"),  # lite has no recurring fee
        ("pro", {"amount_cents": -1}, "plan_overrides.amount_cents"),
        ("pro", {"amount_cents": 12.5}, "plan_overrides.amount_cents"),
        ("pro", {"trial_period": -1}, "plan_overrides.trial_period"),
        ("pro", {"tax_codes": ["vat"]}, "plan_overrides.tax_codes"),
        ("pro", {"usage_thresholds": [{"amount_cents": 100}]}, "plan_overrides.usage_thresholds"),
        ("pro", {"minimum_commitment": {"amount_cents": 100}}, "plan_overrides.minimum_commitment"),
        ("pro", {"charges": [{"id": "nope", "properties": {"amount": "1"}}]}, "plan_overrides.charges[0].id"),
        ("pro", {"charges": {"id": "storage"}}, "plan_overrides.charges"),
        (
            "pro",
            {"charges": [{"id": "api_calls", "properties": {"amount": 0.1}}]},
            "plan_overrides.charges[0].properties.amount",
        ),  # a float is inexact
        (
            "pro",
            {"charges": [{"id": "api_calls", "filters": [{"values": {"region": ["eu"]}}]}]},
            "plan_overrides.charges[0].filters",
        ),
        ("pro", {"charges": [{"id": "api_calls"}, {"id": "api_calls"}]}, "plan_overrides.charges[1].id"),
        (
            "pro",
            {
                "charges": [
                    {
                        "id": "storage",
                        "properties": {
                            "graduated_ranges": [{"from_value": 0, "to_value": 10, "per_unit_amount": "0.5"}]
                        },
                    }
                ]
            },
            "plan_overrides.charges[0].properties.graduated_ranges[0].to_value",
        ),  # the last range must be open
        ("pro", "cheap", "plan_overrides"),
    ],
)
def test_refusals_name_the_field(client, plan: str, overrides: Any, field: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(f"{BASE}/subscriptions", json=sub("s9", plan=plan, plan_overrides=overrides),
                       headers=headers(client))  # fmt: skip
    assert (resp.status_code, list(resp.json()["error_details"])) == (422, [field]), resp.text
    with pytest.raises(LookupError):
        get_subscription(client.app.state.sessions, "t1", "s9")


def test_changing_overrides_later_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    assert client.post(f"{BASE}/subscriptions", json=sub("s1"), headers=admin).status_code == 200
    resp = client.put(f"{BASE}/subscriptions/s1", json={"subscription": {"plan_overrides": {"amount_cents": 1}}},
                      headers=admin)  # fmt: skip
    assert (resp.status_code, list(resp.json()["error_details"])) == (422, ["plan_overrides"])
    moved = client.post(f"{BASE}/subscriptions", json=sub("s1", plan="lite", plan_overrides={"charges": []}),
                        headers=admin)  # fmt: skip
    assert (moved.status_code, list(moved.json()["error_details"])) == (422, ["plan_overrides"])
    assert client.post(f"{BASE}/subscriptions", json=sub("s2", plan=None, plan_overrides={}),
                       headers=admin).status_code == 422  # fmt: skip
