"""lago-python-client, unchanged, on a real uvicorn server (in-process app, SQLite store, no broker): `fees.find_all`
/ `fees.find` and `customers.past_usage` over invoices stored with hand-checked version 2 documents.

The figures, by hand from the documents:
- tests/documents/data/invoice_v2_example.json: lines api_calls (usage, 1,250,000 calls, 47.30, 18,250 events),
  storage_gb_hours (usage, 1,000,000 GB-h, 137.00), platform (fixed, 99.00), onboarding (one-time, 250.00), EUR,
  0 % tax, all of subscription sub-0042, billing period 2026-11-01 to 2026-12-01;
- finance_helpers.py (`sales_tax_doc`): platform (fixed) 1000.00 + 72.50 tax = 1072.50, storage_gb_hours (usage)
  234.56 + 17.01 tax = 251.57, USD.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import pytest
from finance_helpers import store_invoice
from lago_app import make_app, subscribe_to_pro
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from served_app import serve

from meterstream.entities import invoices, payments
from meterstream.schemas.invoice import BillingPeriod, decode, encode

EXAMPLE = Path(__file__).resolve().parents[1] / "documents" / "data" / "invoice_v2_example.json"
T = "t1"


def _store_example(sf, invoice_id: str, *, month: int = 11, subscription: str = "sub-0042",  # type: ignore[no-untyped-def]
                   customer: str = "kerry-brew", finalize: bool = True) -> None:  # fmt: skip
    """The example invoice (period 2026-`month`) of `customer`, all its lines on `subscription`, finalized unless
    told not."""
    doc = msgspec.structs.replace(decode(EXAMPLE.read_bytes()), customer=customer)
    start, end = datetime(2026, month, 1, tzinfo=UTC), datetime(2026, month + 1, 1, tzinfo=UTC)
    lines = [msgspec.structs.replace(line, subscription=subscription, start=start, end=end) for line in doc.lines]
    doc = msgspec.structs.replace(doc, id=invoice_id, tenant=T, status="draft", number=None, period=f"2026-{month:02d}",
                                  period_start=start, period_end=end, issue_date=end.date(),
                                  due_date=date(2026, month + 1, 28), lines=lines,
                                  billing_periods=[BillingPeriod(subscription=subscription, start=start,
                                                                 end=end)])  # fmt: skip
    invoices.upsert_draft(sf, tenant=T, invoice_id=invoice_id, customer=doc.customer, period=doc.period,
                          currency=doc.currency, total=doc.total, amount_due=doc.amount_due,
                          issue_date=doc.issue_date, due_date=doc.due_date, document=encode(doc))  # fmt: skip
    if finalize:
        invoices.finalize(sf, T, invoice_id, "ACME", "INV")


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), client.app.state.sessions, client


def _fees(sdk: Client, **filters: str) -> list:  # type: ignore[type-arg]
    return sdk.fees.find_all(filters)["fees"]


def test_fees_of_issued_invoices_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, sf, _ = lago
    _store_example(sf, "INV-EX")  # finalized now, ACME-2026-000001, EUR
    store_invoice(sf, T, "INV-US", "globex")  # finalized 2026-12-01 09:00 UTC, ACME-2026-000002, USD
    store_invoice(sf, T, "INV-DR", "globex", finalize=False)  # a draft: no fees
    store_invoice(sf, T, "INV-V", "globex")
    invoices.void(sf, T, "INV-V", "wrong customer")  # voided: no fees

    every = _fees(sdk)
    assert [(f.lago_invoice_id, f.item.code, f.amount_cents, f.taxes_amount_cents, f.total_amount_cents)
            for f in every] == [("INV-EX", "api_calls", 4730, 0, 4730), ("INV-EX", "storage_gb_hours", 13700, 0, 13700),
                                ("INV-EX", "platform", 9900, 0, 9900), ("INV-EX", "onboarding", 25000, 0, 25000),
                                ("INV-US", "platform", 100000, 7250, 107250),
                                ("INV-US", "storage_gb_hours", 23456, 1701, 25157)]  # fmt: skip
    # the same objects (ids, amounts) as the invoice's own fees
    assert [f.lago_id for f in every[:4]] == [f.lago_id for f in sdk.invoices.find("INV-EX").fees.__root__]
    assert every[4].created_at == "2026-12-01T09:00:00.000Z" and every[0].external_subscription_id == "sub-0042"

    assert [f.amount_cents for f in _fees(sdk, external_customer_id="globex")] == [100000, 23456]
    assert [(f.lago_invoice_id, f.item.code) for f in _fees(sdk, fee_type="charge")] == [
        ("INV-EX", "api_calls"), ("INV-EX", "storage_gb_hours"), ("INV-US", "storage_gb_hours")]  # fmt: skip
    assert [f.item.code for f in _fees(sdk, fee_type="subscription")] == ["platform", "onboarding", "platform"]
    assert [f.amount_cents for f in _fees(sdk, billable_metric_code="storage_gb_hours")] == [13700, 23456]
    assert [f.amount_cents for f in _fees(sdk, currency="usd")] == [100000, 23456]
    assert [f.amount_cents for f in _fees(sdk, external_subscription_id="sub-0042")] == [4730, 13700, 9900, 25000]
    assert [f.lago_invoice_id for f in _fees(sdk, created_at_to="2026-12-02T00:00:00Z")] == ["INV-US", "INV-US"]
    for nothing in ({"fee_type": "add_on"}, {"event_transaction_id": "e1"}, {"payment_status": "succeeded"},
                    {"payment_status": "refunded"}, {"failed_at_from": "2026-01-01T00:00:00Z"}):  # fmt: skip
        assert _fees(sdk, **nothing) == [], nothing

    # INV-US paid in full (1,324.07): its fees succeeded, the others still pending
    payments.record_payment(sf, T, amount="1324.07", currency="USD", paid_on=date(2026, 12, 2), reference="wire-9",
                            invoice_id="INV-US")  # fmt: skip
    assert [(f.lago_invoice_id, f.payment_status) for f in _fees(sdk, payment_status="succeeded")] == [
        ("INV-US", "succeeded"), ("INV-US", "succeeded")]  # fmt: skip
    assert len(_fees(sdk, payment_status="pending")) == 4

    page = sdk.fees.find_all({"per_page": 4, "page": 2})
    assert [f.amount_cents for f in page["fees"]] == [100000, 23456]
    assert (page["meta"]["total_count"], page["meta"]["total_pages"], page["meta"]["prev_page"]) == (6, 2, 1)

    storage = sdk.fees.find(every[5].lago_id)
    assert (storage.lago_invoice_id, storage.item.code, storage.units, storage.total_amount_cents) == (
        "INV-US", "storage_gb_hours", "1712146", 25157)  # fmt: skip
    calls = sdk.fees.find(every[0].lago_id)
    assert (calls.item.code, calls.units, calls.events_count, calls.amount_cents) == ("api_calls", "1250000", 18250,
                                                                                      4730)  # fmt: skip

    with pytest.raises(LagoApiError) as missing:
        sdk.fees.find("00000000-0000-0000-0000-000000000000")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "fee_not_found")
    for bad in ({"fee_type": "tip"}, {"succeeded_at_from": "2026-01-01T00:00:00Z"}, {"created_at_from": "monday"}):
        with pytest.raises(LagoApiError) as refused:
            sdk.fees.find_all(bad)
        assert refused.value.status_code == 422 and list(refused.value.response["error_details"]) == list(bad)


def test_past_usage_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, sf, client = lago
    subscribe_to_pro(client, T, datetime(2026, 9, 1, tzinfo=UTC))  # customer acme, its subscription s1
    mine = {"customer": "acme", "subscription": "s1"}
    _store_example(sf, "INV-OCT", month=10, **mine)
    _store_example(sf, "INV-NOV", month=11, **mine)
    _store_example(sf, "INV-SEP", month=9, **mine)
    invoices.void(sf, T, "INV-SEP", "issued twice")  # voided: not a past period
    _store_example(sf, "INV-OTHER", month=11, customer="acme", subscription="s2")  # another subscription's invoice
    _store_example(sf, "INV-DEC", month=11, finalize=False, **mine)  # a draft: current usage, not past

    periods = sdk.customers.past_usage("acme", "s1")["usage_periods"]
    assert [(p.lago_invoice_id, p.from_datetime, p.to_datetime, p.issuing_date) for p in periods] == [
        ("INV-NOV", "2026-11-01T00:00:00Z", "2026-11-30T23:59:59Z", "2026-12-01"),
        ("INV-OCT", "2026-10-01T00:00:00Z", "2026-10-31T23:59:59Z", "2026-11-01")]  # fmt: skip
    nov = periods[0]
    # usage only (the platform and onboarding fees are not usage): 47.30 + 137.00 = 184.30, no tax
    assert (nov.currency, nov.amount_cents, nov.taxes_amount_cents, nov.total_amount_cents) == ("EUR", 18430, 0, 18430)
    by_code = {c.billable_metric.code: c for c in nov.charges_usage}
    assert (by_code["api_calls"].units, by_code["api_calls"].events_count, by_code["api_calls"].amount_cents) == (
        "1250000", 18250, 4730)  # fmt: skip
    assert (by_code["storage_gb_hours"].units, by_code["storage_gb_hours"].amount_cents) == ("1000000", 13700)

    (newest,) = sdk.customers.past_usage("acme", "s1", {"periods_count": 1})["usage_periods"]
    assert newest.lago_invoice_id == "INV-NOV"
    calls = sdk.customers.past_usage("acme", "s1", {"billable_metric_code": "api_calls"})["usage_periods"]
    assert [(p.amount_cents, [c.billable_metric.code for c in p.charges_usage]) for p in calls] == [
        (4730, ["api_calls"]), (4730, ["api_calls"])]  # fmt: skip
    second = sdk.customers.past_usage("acme", "s1", {"per_page": 1, "page": 2})
    assert [p.lago_invoice_id for p in second["usage_periods"]] == ["INV-OCT"]
    assert second["meta"]["total_count"] == 2

    with pytest.raises(LagoApiError) as unknown:
        sdk.customers.past_usage("acme", "s9")
    assert (unknown.value.status_code, unknown.value.response["code"]) == (404, "subscription_not_found")
    with pytest.raises(LagoApiError) as no_customer:
        sdk.customers.past_usage("nobody", "s1")
    assert (no_customer.value.status_code, no_customer.value.response["code"]) == (404, "customer_not_found")
    with pytest.raises(LagoApiError) as bad:
        sdk.customers.past_usage("acme", "s1", {"periods_count": 0})
    assert bad.value.status_code == 422 and list(bad.value.response["error_details"]) == ["periods_count"]
