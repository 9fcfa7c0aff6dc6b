"""Lago plans -> store plan versions: the mapping of every charge model (priced by the engine against hand
calculations), Lago's amounts in cents, refusals naming the field, and the HTTP routes in-process."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lago_app import BASE, add_metric, headers, make_app, plan_body

from meterstream.api.compat.lago.plans import charge_from_price, plan_from_lago, plan_object
from meterstream.entities.common import Invalid
from meterstream.rating import parse_price, quote

METRICS = {"m-storage": ("storage", "sum_agg"), "m-calls": ("api_calls", "count_agg"), "m-peak": ("peak", "max_agg")}


def lookup(ref: str) -> tuple[str, str] | None:
    if ref in METRICS:
        return METRICS[ref]
    return next(((code, kind) for code, kind in METRICS.values() if code == ref), None)


def plan(charges: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "P", "code": "p", "interval": "monthly", "amount_cents": 0, "amount_currency": "USD",
            "charges": charges, **extra}  # fmt: skip


def total(raw: dict[str, Any], meter: str, quantity: str) -> Decimal:
    doc = plan_from_lago(raw, "t1", lookup)
    return quote(parse_price(doc.usage[meter], currency=doc.currency), quantity).total


def charge(model: str, properties: dict[str, Any], metric: str = "m-storage", **extra: Any) -> dict[str, Any]:
    return {"billable_metric_id": metric, "charge_model": model, "properties": properties, **extra}


def test_standard_is_a_unit_price() -> None:
    raw = plan([charge("standard", {"amount": "0.02"}, "m-calls")])
    assert total(raw, "api_calls", "3") == Decimal("0.06")  # 3 calls x 0.02


def test_graduated_ranges_are_inclusive_tiers_with_flat_amounts() -> None:
    ranges = [{"from_value": 0, "to_value": 10, "per_unit_amount": "0.5", "flat_amount": "0"},
              {"from_value": 11, "to_value": None, "per_unit_amount": "0.4", "flat_amount": "1"}]  # fmt: skip
    raw = plan([charge("graduated", {"graduated_ranges": ranges})])
    assert total(raw, "storage", "25") == Decimal("12.00")  # 10 x 0.5 + 1 (tier 2 reached) + 15 x 0.4
    assert total(raw, "storage", "10") == Decimal("5.00")  # tier 2 not reached: no flat amount


def test_volume_prices_every_unit_at_the_tier_of_the_total() -> None:
    ranges = [{"from_value": 0, "to_value": 100, "per_unit_amount": "0", "flat_amount": "0"},
              {"from_value": 101, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "0"}]  # fmt: skip
    raw = plan([charge("volume", {"volume_ranges": ranges})])
    assert total(raw, "storage", "150") == Decimal("75.00")  # all 150 x 0.5
    assert total(raw, "storage", "100") == Decimal("0.00")


def test_package_counts_started_packages_after_free_units() -> None:
    # Lago's published example shape: 30 per 1,000 units, 100 free
    raw = plan([charge("package", {"amount": "30", "package_size": 1000, "free_units": 100})])
    assert total(raw, "storage", "2500") == Decimal("90.00")  # 2,400 billable -> 3 started packages x 30
    assert total(raw, "storage", "100") == Decimal("0.00")


def test_percentage_is_a_rate_on_the_period_total() -> None:
    raw = plan([charge("percentage", {"rate": "1.5", "fixed_amount": "0", "free_units_per_events": None})])
    assert total(raw, "storage", "200") == Decimal("3.00")  # 1.5 % of 200
    assert total(raw, "storage", "1234.56") == Decimal("18.52")  # 18.5184 rounded once


def test_min_amount_cents_is_the_period_minimum() -> None:
    raw = plan([charge("standard", {"amount": "0.02"}, "m-calls", min_amount_cents=1200)])
    assert total(raw, "api_calls", "0") == Decimal("12.00")  # true-up to the minimum
    assert total(raw, "api_calls", "1000") == Decimal("20.00")  # above it: 1,000 x 0.02


@pytest.mark.parametrize(("currency", "cents", "amount"), [("USD", 1999, "19.99"), ("JPY", 500, "500"),
                                                           ("KWD", 12345, "12.345")])  # fmt: skip
def test_amount_cents_is_a_fixed_charge_in_minor_units(currency: str, cents: int, amount: str) -> None:
    doc = plan_from_lago(plan([], amount_cents=cents, amount_currency=currency, interval="quarterly",
                              pay_in_advance=True), "t1", lookup)  # fmt: skip
    [fee] = doc.fixed
    assert (fee.amount, fee.interval, fee.timing) == (Decimal(amount), "quarterly", "advance")
    assert plan_object(doc, lambda m: None)["amount_cents"] == cents


def test_fee_in_arrears_by_default_and_minimum_commitment() -> None:
    doc = plan_from_lago(plan([], amount_cents=1000, minimum_commitment={"amount_cents": 5000}), "t1", lookup)
    assert (doc.fixed[0].timing, doc.minimum_commitment) == ("arrears", Decimal("50.00"))
    obj = plan_object(doc, lambda m: None)
    assert (obj["pay_in_advance"], obj["minimum_commitment"]["amount_cents"]) == (False, 5000)


def test_plan_object_shows_the_charges_as_lago_sent_them() -> None:
    ranges = [{"from_value": 0, "to_value": 10, "per_unit_amount": "0.5", "flat_amount": "0"},
              {"from_value": 11, "to_value": None, "per_unit_amount": "0.4", "flat_amount": "1"}]  # fmt: skip
    doc = plan_from_lago(plan([charge("graduated", {"graduated_ranges": ranges}),
                               charge("package", {"amount": "30", "package_size": 1000, "free_units": 100},
                                      "m-calls", min_amount_cents=300)]), "t1", lookup)  # fmt: skip
    obj = plan_object(doc, lambda meter: ("id-" + meter, "x", "sum_agg"))
    by_code = {c["billable_metric_code"]: c for c in obj["charges"]}
    assert by_code["storage"]["properties"] == {"graduated_ranges": ranges}
    assert by_code["storage"]["lago_billable_metric_id"] == "id-storage"
    assert by_code["api_calls"]["properties"] == {"amount": "30", "package_size": 1000, "free_units": 100}
    assert by_code["api_calls"]["min_amount_cents"] == 300
    assert obj["lago_id"] == plan_object(doc, lambda m: None)["lago_id"]  # stable per tenant and code
    assert charge_from_price({"model": "flat", "amount": "1"}) is None  # no Lago equivalent: left out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"charges": [charge("graduated", {"graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1"},
            {"from_value": 12, "to_value": None, "per_unit_amount": "1"}]})]},
         "charges[0].properties.graduated_ranges[1].from_value"),
        ({"charges": [charge("volume", {"volume_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1"}]})]},
         "charges[0].properties.volume_ranges[0].to_value"),
        ({"charges": [charge("standard", {"amount": 0.5})]}, "charges[0].properties.amount"),
        ({"charges": [charge("standard", {"amount": "-1"})]}, "charges[0].properties.amount"),
        ({"charges": [charge("standard", {"amount": "1"}, "nope")]}, "charges[0].billable_metric_id"),
        ({"charges": [charge("standard", {"amount": "1"}, "m-peak")]}, "charges[0].billable_metric_id"),
        ({"charges": [charge("standard", {"amount": "1"}, pay_in_advance=True)]}, "charges[0].pay_in_advance"),
        ({"charges": [charge("standard", {"amount": "1"}, filters=[{"values": {"r": ["eu"]}}])]},
         "charges[0].filters"),
        ({"charges": [charge("dynamic", {})]}, "charges[0].charge_model"),
        ({"charges": [charge("package", {"amount": "1", "package_size": 0})]}, "charges[0].properties.package_size"),
        ({"charges": [charge("percentage", {"rate": "1", "free_units_per_events": 3})]},
         "charges[0].properties.free_units_per_events"),
        ({"charges": [charge("percentage", {"rate": "1", "fixed_amount": "0.5"})]},
         "charges[0].properties.fixed_amount"),
        ({"charges": [charge("percentage", {"rate": "1", "per_transaction_max_amount": "3"})]},
         "charges[0].properties.per_transaction_max_amount"),
        ({"charges": [charge("standard", {"amount": "1"}), charge("standard", {"amount": "2"})]},
         "charges[1].billable_metric_id"),
        ({"amount_currency": "ABC"}, "amount_currency"),
        ({"interval": "semiannual"}, "interval"),
        ({"amount_cents": -1}, "amount_cents"),
        ({"amount_cents": 1.5}, "amount_cents"),
        ({"trial_period": 5}, "trial_period"),
        ({"charges": []}, "charges"),
        ({"name": ""}, "name"),
    ],
)  # fmt: skip
def test_refused_with_the_field_named(change: dict[str, Any], field: str) -> None:
    raw = {**plan([charge("standard", {"amount": "1"})]), **change}
    with pytest.raises(Invalid) as err:
        plan_from_lago(raw, "t1", lookup)
    assert err.value.field == field


# --- the routes, in-process --------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as c:
        yield c


def test_create_find_update_list_destroy(client) -> None:  # type: ignore[no-untyped-def]
    admin, reader = headers(client), headers(client, role="read")
    storage = add_metric(client, "t1", "storage")
    resp = client.post(f"{BASE}/plans", json=plan_body("pro", storage), headers=admin)
    assert resp.status_code == 200, resp.text
    created = resp.json()["plan"]
    assert (created["code"], created["amount_cents"], created["interval"], created["meterstream"]["rating_id"]) == (
        "pro",
        1000,
        "monthly",
        "pro@1",
    )
    assert created["charges"][0]["lago_billable_metric_id"] == storage
    found = client.get(f"{BASE}/plans/pro", headers=reader).json()["plan"]
    assert found == created
    # the same content again: nothing new; other content: the next version, same lago_id
    assert client.post(f"{BASE}/plans", json=plan_body("pro", storage), headers=admin).json()["plan"] == created
    v2 = client.post(f"{BASE}/plans", json=plan_body("pro", storage, amount_cents=1500), headers=admin).json()["plan"]
    assert (v2["meterstream"]["rating_id"], v2["amount_cents"], v2["lago_id"]) == ("pro@2", 1500, created["lago_id"])
    # a Lago update (PUT) of the name only: version 3 keeps the fee and the charges
    v3 = client.put(f"{BASE}/plans/pro", json={"plan": {"name": "Pro 2026"}}, headers=admin).json()["plan"]
    assert (v3["name"], v3["meterstream"]["rating_id"], v3["amount_cents"]) == ("Pro 2026", "pro@3", 1500)
    assert v3["charges"][0]["properties"] == created["charges"][0]["properties"]
    listed = client.get(f"{BASE}/plans", headers=reader).json()
    assert [p["meterstream"]["rating_id"] for p in listed["plans"]] == ["pro@3"]
    assert listed["meta"]["total_count"] == 1
    gone = client.delete(f"{BASE}/plans/pro", headers=admin)
    assert gone.status_code == 200 and gone.json()["plan"]["code"] == "pro"
    missing = client.get(f"{BASE}/plans/pro", headers=reader)
    assert (missing.status_code, missing.json()) == (404, {"status": 404, "error": "Not Found",
                                                          "code": "plan_not_found"})  # fmt: skip


def test_errors_in_lagos_shape(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    storage = add_metric(client, "t1", "storage")
    body = plan_body("pro", storage)
    body["plan"]["charges"][0]["properties"]["graduated_ranges"][1]["from_value"] = 12
    resp = client.post(f"{BASE}/plans", json=body, headers=admin)
    assert resp.status_code == 422
    assert resp.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                           "error_details": {"charges[0].properties.graduated_ranges[1].from_value": [
                               "must be 11 (0, then the previous to_value + 1; got 12)"]}}  # fmt: skip
    assert client.get(f"{BASE}/plans", headers=admin).json()["plans"] == []  # nothing half-written
    assert client.put(f"{BASE}/plans/nope", json={"plan": {"name": "x"}}, headers=admin).status_code == 404
    assert client.delete(f"{BASE}/plans/nope", headers=admin).status_code == 404
    denied = client.post(f"{BASE}/plans", json=plan_body("x", storage), headers=headers(client, role="read"))
    assert denied.status_code == 403


def test_a_plan_in_use_is_not_deleted(client) -> None:  # type: ignore[no-untyped-def]
    admin = headers(client)
    client.post(f"{BASE}/plans", json=plan_body("pro", add_metric(client, "t1", "storage")), headers=admin)
    sub = {"subscription": {"external_id": "s1", "external_customer_id": "acme", "plan_code": "pro"}}
    assert client.post(f"{BASE}/subscriptions", json=sub, headers=admin).status_code == 200
    assert client.get(f"{BASE}/plans/pro", headers=admin).json()["plan"]["active_subscriptions_count"] == 1
    resp = client.delete(f"{BASE}/plans/pro", headers=admin)
    assert resp.status_code == 422
    assert list(resp.json()["error_details"]) == ["code"]
    assert "s1" in resp.json()["error_details"]["code"][0]


def test_a_plan_of_the_own_api_with_finer_prices_is_shown() -> None:
    from meterstream.schemas.entities import PlanVersionDoc

    doc = PlanVersionDoc(tenant="t1", code="own", version=1, name="Own", currency="USD", usage={
        "storage": {"model": "unit", "unit_amount": "0.000137", "minimum": "0.125"},
        "egress": {"model": "flat", "amount": "1"}})  # fmt: skip
    obj = plan_object(doc, lambda m: None)
    assert [(c["billable_metric_code"], c["properties"], c["min_amount_cents"]) for c in obj["charges"]] == [
        ("storage", {"amount": "0.000137"}, 13)
    ]  # 0.125 shown as 13 cents (half away from zero); flat left out
