"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQL store, no broker):
coupons (create/find/find_all/update/destroy), applied coupons (create/find_all/destroy), taxes
(create/find/find_all/update/destroy), customers' tax_codes and billing_configuration.invoice_grace_period;
answers parse in the SDK's own models, errors reach it as LagoApiError with Lago's body. Expected values are
written from the requests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Coupon, Customer, Tax
from lago_python_client.models.applied_coupon import AppliedCoupon
from lago_python_client.models.coupon import LimitationConfiguration
from lago_python_client.models.customer import CustomerBillingConfiguration

from meterstream.billing.taxes import ExplicitTax
from meterstream.entities import invoices
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.tax_objects import tax_overrides


@pytest.fixture
def app_and_lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    from served_app import serve

    with make_app(tmp_path) as client:
        key = client.app.state.keys.create("t1", "admin", "sdk")[1]
        with serve(client.app) as base:
            yield client.app, Client(api_key=key, api_url=f"{base}/compat/lago/")


def test_coupons_through_the_sdk(app_and_lago) -> None:  # type: ignore[no-untyped-def]
    _app, lago = app_and_lago
    made = lago.coupons.create(Coupon(name="Startup", code="startup", coupon_type="fixed_amount", amount_cents=5000,
                                      amount_currency="EUR", frequency="once", expiration="no_expiration"))  # fmt: skip
    assert (made.code, made.coupon_type, made.amount_cents, made.amount_currency, made.frequency, made.reusable) == (
        "startup", "fixed_amount", 5000, "EUR", "once", True)  # fmt: skip
    pct = lago.coupons.create(Coupon(
        name="Ten", code="ten", coupon_type="percentage", percentage_rate=12.5, frequency="recurring",
        frequency_duration=3, expiration="time_limit", expiration_at="2027-06-30T23:59:59Z",
        applies_to=LimitationConfiguration(billable_metric_codes=["api_calls"]),
    ))  # fmt: skip
    assert (pct.percentage_rate, pct.frequency_duration, pct.expiration, pct.expiration_at) == (
        12.5, 3, "time_limit", "2027-06-30T23:59:59.000Z")  # the same instant, in milliseconds  # fmt: skip
    assert (pct.limited_billable_metrics, pct.billable_metric_codes) == (True, ["api_calls"])
    assert [c.code for c in lago.coupons.find_all()["coupons"]] == ["startup", "ten"]
    assert lago.coupons.find("ten").lago_id == pct.lago_id
    renamed = lago.coupons.update(Coupon(name="Startup deal"), "startup")
    assert (renamed.name, renamed.amount_cents) == ("Startup deal", 5000)  # the rest kept

    with pytest.raises(LagoApiError) as refused:
        lago.coupons.create(Coupon(name="P", code="p", coupon_type="percentage", percentage_rate=5, frequency="once",
                                   applies_to=LimitationConfiguration(plan_codes=["pro"])))  # fmt: skip
    assert (refused.value.status_code, list(refused.value.response["error_details"])) == (
        422, ["applies_to.plan_codes"])  # fmt: skip
    with pytest.raises(LagoApiError) as missing:
        lago.coupons.find("nope")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "coupon_not_found")

    gone = lago.coupons.destroy("ten")
    assert gone.terminated_at is not None
    assert [c.code for c in lago.coupons.find_all()["coupons"]] == ["startup"]


def test_applied_coupons_with_the_rest_derived_from_issued_invoices(app_and_lago) -> None:  # type: ignore[no-untyped-def]
    app, lago = app_and_lago
    lago.customers.create(Customer(external_id="c1", name="C1", currency="EUR"))
    lago.coupons.create(Coupon(name="Startup", code="startup", coupon_type="fixed_amount", amount_cents=5000,
                               amount_currency="EUR", frequency="once", expiration="no_expiration",
                               reusable=False))  # fmt: skip
    applied = lago.applied_coupons.create(AppliedCoupon(external_customer_id="c1", coupon_code="startup",
                                                        amount_cents=6000, amount_currency="EUR"))  # fmt: skip
    assert (applied.coupon_code, applied.amount_cents, applied.amount_cents_remaining, applied.status) == (
        "startup",
        6000,
        6000,
        "active",
    )  # the override: 60.00 instead of 50.00
    with pytest.raises(LagoApiError) as twice:
        lago.applied_coupons.create(AppliedCoupon(external_customer_id="c1", coupon_code="startup"))
    assert list(twice.value.response["error_details"]) == ["coupon_code"]
    with pytest.raises(LagoApiError) as nobody:
        lago.applied_coupons.create(AppliedCoupon(external_customer_id="nobody", coupon_code="startup"))
    assert (nobody.value.status_code, nobody.value.response["code"]) == (404, "customer_not_found")

    # an issued invoice of 2026-10 took 45.00 of it: 60.00 - 45.00 = 15.00 left (1,500 cents)
    sf = app.state.sessions
    document = '{"discounts": [{"code": "startup", "description": "Startup", "kind": "fixed", "amount": "45.00"}]}'
    invoices.upsert_draft(sf, tenant="t1", invoice_id="inv-1", customer="c1", period="2026-10", currency="EUR",
                          total="10.00", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 1),
                          document=document)  # fmt: skip
    invoices.finalize(sf, "t1", "inv-1", "ACME", at=datetime.now(UTC))
    (listed,) = lago.applied_coupons.find_all({"external_customer_id": "c1"})["applied_coupons"]
    assert (listed.lago_id, listed.amount_cents_remaining, listed.status) == (applied.lago_id, 1500, "active")
    assert lago.applied_coupons.find_all({"external_customer_id": "other"})["applied_coupons"] == []

    removed = lago.applied_coupons.destroy("c1", applied.lago_id)
    assert (removed.status, removed.amount_cents_remaining) == ("terminated", 1500)
    assert lago.applied_coupons.find_all({"status": "active"})["applied_coupons"] == []


def test_taxes_tax_codes_and_grace_period_through_the_sdk(app_and_lago) -> None:  # type: ignore[no-untyped-def]
    app, lago = app_and_lago
    vat = lago.taxes.create(Tax(name="TVA", code="fr_vat", rate=20.0, description="French VAT"))
    assert (vat.code, vat.rate, vat.applied_to_organization) == ("fr_vat", 20.0, False)
    lago.taxes.create(Tax(name="State", code="tx_state", rate=6.25, applied_to_organization=True))
    assert [t.code for t in lago.taxes.find_all()["taxes"]] == ["fr_vat", "tx_state"]
    updated = lago.taxes.update(Tax(rate=5.5), "fr_vat")
    assert (updated.rate, updated.name) == (5.5, "TVA")
    assert lago.taxes.find("tx_state").rate == 6.25

    customer = lago.customers.create(Customer(
        external_id="c1", name="C1", tax_codes=["fr_vat"],
        billing_configuration=CustomerBillingConfiguration(invoice_grace_period=3),
    ))  # fmt: skip
    assert [t.code for t in customer.taxes.__root__] == ["fr_vat"]
    assert customer.billing_configuration.invoice_grace_period == 3
    assert get_customer_doc(app.state.sessions, "t1", "c1").invoice_grace_days == 3
    with pytest.raises(LagoApiError) as unknown:
        lago.customers.create(Customer(external_id="c2", name="C2", tax_codes=["nope"]))
    assert list(unknown.value.response["error_details"]) == ["tax_codes"]

    # what the close applies: c1 its own tax (5.5 % as a fraction), anyone else the default 6.25 %
    with app.state.sessions() as s:
        explicit = tax_overrides(s)
    assert explicit.of("t1", "c1") == (ExplicitTax("fr_vat", "TVA", Decimal("0.055")),)
    assert explicit.of("t1", "c2") == (ExplicitTax("tx_state", "State", Decimal("0.0625")),)
    assert explicit.of("t2", "c1") == ()

    lago.taxes.destroy("fr_vat")  # the customer loses it: the default applies again
    assert lago.customers.find("c1").taxes.__root__ == []
    with app.state.sessions() as s:
        assert [t.code for t in tax_overrides(s).of("t1", "c1")] == ["tx_state"]
    with pytest.raises(LagoApiError) as gone:
        lago.taxes.find("fr_vat")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "tax_not_found")
