"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQL store, no broker): every
billable metric aggregation type, plans (create/find/find_all/update/destroy), customers (create/find) and
subscriptions (create/find_all/destroy) parse in the SDK's own models; errors reach it as LagoApiError with
Lago's body."""

from __future__ import annotations

from pathlib import Path

import pytest
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BillableMetric,
    Charge,
    Charges,
    Customer,
    MinimumCommitment,
    Plan,
    Subscription,
)
from lago_python_client.models.customer import CustomerBillingConfiguration, Metadata, MetadataList
from served_app import serve


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create("t1", "admin", "sdk")[1]
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/")


def test_billable_metrics_of_every_aggregation_type(lago: Client) -> None:
    kinds = ("count_agg", "sum_agg", "max_agg", "unique_count_agg", "latest_agg")
    for kind in kinds:
        made = lago.billable_metrics.create(BillableMetric(name=kind, code=kind.removesuffix("_agg"),
                                                           aggregation_type=kind, field_name="v"))  # fmt: skip
        assert (made.aggregation_type, made.field_name) == (kind, None if kind == "count_agg" else "v")
    assert [m.aggregation_type for m in lago.billable_metrics.find_all()["billable_metrics"]] == list(kinds)
    assert lago.billable_metrics.find("unique_count").aggregation_type == "unique_count_agg"
    with pytest.raises(LagoApiError) as refused:
        lago.billable_metrics.create(BillableMetric(name="W", code="w", aggregation_type="weighted_sum_agg",
                                                    field_name="v"))  # fmt: skip
    assert refused.value.status_code == 422
    assert list(refused.value.response["error_details"]) == ["aggregation_type"]

    assert lago.billable_metrics.destroy("max").aggregation_type == "max_agg"  # answers what it deleted
    with pytest.raises(LagoApiError) as gone:
        lago.billable_metrics.find("max")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "billable_metric_not_found")
    assert [m.code for m in lago.billable_metrics.find_all()["billable_metrics"]] == [
        "count", "sum", "unique_count", "latest"]  # fmt: skip
    with pytest.raises(LagoApiError) as twice:
        lago.billable_metrics.destroy("max")
    assert twice.value.status_code == 404
    again = lago.billable_metrics.create(BillableMetric(name="Max", code="max", aggregation_type="max_agg",
                                                        field_name="w"))  # fmt: skip
    assert (again.code, again.field_name) == ("max", "w")  # the code is free again


def test_billable_metrics_update_renames_only(lago: Client) -> None:
    """`billable_metrics.update`: name and description change; what the metric meters does not (422 naming it)."""
    lago.billable_metrics.create(BillableMetric(name="Storage", code="storage", aggregation_type="sum_agg",
                                                field_name="gb"))  # fmt: skip
    renamed = lago.billable_metrics.update(BillableMetric(name="Storage (GB)", description="GB stored"), "storage")
    assert (renamed.name, renamed.description, renamed.aggregation_type, renamed.field_name) == (
        "Storage (GB)", "GB stored", "sum_agg", "gb")  # fmt: skip
    assert lago.billable_metrics.find("storage").name == "Storage (GB)"
    same = lago.billable_metrics.update(
        BillableMetric(name="Storage", code="storage", aggregation_type="sum_agg", field_name="gb"), "storage"
    )  # its own values: accepted
    assert (same.name, same.description) == ("Storage", "GB stored")
    for change, field in (
        (BillableMetric(aggregation_type="max_agg"), "aggregation_type"),
        (BillableMetric(field_name="tb"), "field_name"),
        (BillableMetric(code="disk"), "code"),
    ):
        with pytest.raises(LagoApiError) as refused:
            lago.billable_metrics.update(change, "storage")
        assert refused.value.status_code == 422 and list(refused.value.response["error_details"]) == [field]
    assert lago.billable_metrics.find("storage").aggregation_type == "sum_agg"
    with pytest.raises(LagoApiError) as missing:
        lago.billable_metrics.update(BillableMetric(name="x"), "nope")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "billable_metric_not_found")


def test_plans_customers_subscriptions_through_the_sdk(lago: Client) -> None:
    storage = lago.billable_metrics.create(BillableMetric(name="S", code="storage", aggregation_type="sum_agg",
                                                          field_name="gb"))  # fmt: skip
    ranges = [{"from_value": 0, "to_value": 10, "per_unit_amount": "0.50", "flat_amount": "0"},
              {"from_value": 11, "to_value": None, "per_unit_amount": "0.40", "flat_amount": "0"}]  # fmt: skip
    plan = lago.plans.create(Plan(
        name="Pro", code="pro", interval="yearly", amount_cents=12000, amount_currency="EUR", pay_in_advance=True,
        minimum_commitment=MinimumCommitment(amount_cents=20000),
        charges=Charges(__root__=[Charge(billable_metric_id=storage.lago_id, charge_model="graduated",
                                         properties={"graduated_ranges": ranges}, min_amount_cents=100)]),
    ))  # fmt: skip
    assert (plan.code, plan.interval, plan.amount_cents, plan.amount_currency, plan.pay_in_advance) == (
        "pro",
        "yearly",
        12000,
        "EUR",
        True,
    )
    assert plan.minimum_commitment.amount_cents == 20000
    (ch,) = plan.charges.__root__
    assert (ch.lago_billable_metric_id, ch.billable_metric_code, ch.min_amount_cents) == (storage.lago_id, "storage",
                                                                                         100)  # fmt: skip
    assert ch.properties == {"graduated_ranges": ranges}
    assert lago.plans.find("pro").lago_id == plan.lago_id
    updated = lago.plans.update(Plan(name="Pro+", amount_cents=15000), "pro")
    assert (updated.name, updated.amount_cents) == ("Pro+", 15000)  # a new version, the rest kept
    assert updated.charges.__root__[0].properties == ch.properties
    assert [p.name for p in lago.plans.find_all()["plans"]] == ["Pro+"]

    customer = lago.customers.create(Customer(
        external_id="acme", name="Acme", currency="EUR", timezone="Europe/Paris", email="ap@acme.test",
        metadata=MetadataList(__root__=[Metadata(key="crm", value="42")]),
        billing_configuration=CustomerBillingConfiguration(invoice_grace_period=2), net_payment_term=30,
    ))  # fmt: skip
    assert (customer.timezone, customer.net_payment_term, customer.billing_configuration.invoice_grace_period) == (
        "Europe/Paris",
        30,
        2,
    )
    assert [(m.key, m.value) for m in customer.metadata.__root__] == [("crm", "42")]
    assert lago.customers.find("acme").email == "ap@acme.test"

    sub = lago.subscriptions.create(Subscription(external_customer_id="acme", plan_code="pro", external_id="s1",
                                                 billing_time="anniversary"))  # fmt: skip
    assert (sub.status, sub.plan_code, sub.billing_time, sub.plan_amount_cents) == ("active", "pro", "anniversary",
                                                                                     "15000")  # fmt: skip
    found = lago.subscriptions.find_all({"external_customer_id": "acme", "plan_code": "pro"})["subscriptions"]
    assert [s.external_id for s in found] == ["s1"]
    with pytest.raises(LagoApiError) as in_use:
        lago.plans.destroy("pro")
    assert in_use.value.status_code == 422
    assert lago.subscriptions.destroy("s1").status == "terminated"
    assert lago.subscriptions.find_all({"status[]": "terminated"})["subscriptions"][0].external_id == "s1"
    assert lago.plans.destroy("pro").code == "pro"
    with pytest.raises(LagoApiError) as gone:
        lago.plans.find("pro")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "plan_not_found")
    with pytest.raises(LagoApiError) as unknown:
        lago.subscriptions.create(Subscription(external_customer_id="acme", plan_code="pro", external_id="s2"))
    assert (unknown.value.status_code, unknown.value.response["code"]) == (404, "plan_not_found")


def test_customers_find_all_pages_and_destroy(lago: Client) -> None:
    for key in ("acme", "globex", "initech"):
        lago.customers.create(Customer(external_id=key, name=key.title(), currency="USD"))
    first = lago.customers.find_all({"per_page": 2})
    assert [c.external_id for c in first["customers"]] == ["acme", "globex"]  # oldest first
    assert first["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 2, "total_count": 3}
    second = lago.customers.find_all({"per_page": 2, "page": 2})
    assert [c.external_id for c in second["customers"]] == ["initech"]
    assert second["meta"]["prev_page"] == 1 and second["meta"]["next_page"] is None

    lago.plans.create(Plan(name="Pro", code="pro", interval="monthly", amount_cents=1000, amount_currency="USD",
                           pay_in_advance=False))  # fmt: skip
    lago.subscriptions.create(Subscription(external_customer_id="globex", plan_code="pro", external_id="g1"))
    with pytest.raises(LagoApiError) as in_use:  # Lago would terminate g1 with it: here it must be ended first
        lago.customers.destroy("globex")
    assert in_use.value.status_code == 422 and "external_id" in in_use.value.response["error_details"]
    assert lago.subscriptions.destroy("g1").status == "terminated"
    assert lago.customers.destroy("globex").external_id == "globex"
    with pytest.raises(LagoApiError) as gone:
        lago.customers.find("globex")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "customer_not_found")
    assert [c.external_id for c in lago.customers.find_all()["customers"]] == ["acme", "initech"]
    with pytest.raises(LagoApiError) as again:
        lago.customers.destroy("globex")
    assert again.value.status_code == 404


def test_subscriptions_update_through_the_sdk(lago: Client) -> None:
    """`subscriptions.update`: name, ending_at (shortened, extended), subscription_at before the start; the
    dates lie in 2027, after the machine's now."""
    lago.plans.create(Plan(name="Pro", code="pro", interval="monthly", amount_cents=1000, amount_currency="USD",
                           pay_in_advance=False))  # fmt: skip
    lago.subscriptions.create(Subscription(external_customer_id="acme", plan_code="pro", external_id="s1"))
    ending = lago.subscriptions.update(Subscription(name="Main", ending_at="2027-03-01T00:00:00Z"), "s1")
    assert (ending.name, ending.ending_at, ending.status) == ("Main", "2027-03-01T00:00:00.000Z", "active")
    later = lago.subscriptions.update(Subscription(ending_at="2027-06-01T00:00:00Z"), "s1")
    assert (later.name, later.ending_at) == ("Main", "2027-06-01T00:00:00.000Z")  # the name left out stays

    lago.subscriptions.create(Subscription(external_customer_id="acme", plan_code="pro", external_id="s2",
                                           subscription_at="2027-07-01T00:00:00Z"))  # fmt: skip
    moved = lago.subscriptions.update(Subscription(subscription_at="2027-08-01T00:00:00Z"), "s2")
    assert (moved.subscription_at, moved.status) == ("2027-08-01T00:00:00.000Z", "pending")
    with pytest.raises(LagoApiError) as overlap:  # s1 may not run into s2 (one customer, one plan at a time)
        lago.subscriptions.update(Subscription(ending_at="2027-09-01T00:00:00Z"), "s1")
    assert overlap.value.status_code == 422
    with pytest.raises(LagoApiError) as started:  # s1 has started: its start stays
        lago.subscriptions.update(Subscription(subscription_at="2027-01-01T00:00:00Z"), "s1")
    assert started.value.status_code == 422 and list(started.value.response["error_details"]) == ["subscription_at"]
    with pytest.raises(LagoApiError) as unknown:
        lago.subscriptions.update(Subscription(name="x"), "nope")
    assert (unknown.value.status_code, unknown.value.response["code"]) == (404, "subscription_not_found")
