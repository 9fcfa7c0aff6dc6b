"""The monthly finance figures through the own API (`/v1/analytics/...`) and through lago-python-client 1.55,
unchanged, on a real uvicorn server (`gross_revenues`, `invoice_collections`, `overdue_balances`, `invoiced_usages`,
`mrrs`), over invoices, payments, credit notes and a subscription in the SQLite store. Dates are relative to the day
the test runs (THIS: the current month, PREV and PREV2 the two before it). Every figure by hand:

- INV-EX (tests/documents/data/invoice_v2_example.json), EUR, issued on THIS's first day: lines 47.30 (api_calls,
  usage, coupon share 4.73), 137.00 (storage_gb_hours, usage, coupon 13.70), 99.00 and 250.00 (not usage); asks
  459.97 (479.97 less 20.00 prepaid credits); paid 459.97 in full, then a credit note of 9.97 is refunded:
  gross revenue 459.97 - 9.97 = 450.00; invoiced usage api_calls 42.57, storage_gb_hours 123.30;
- INV-US (finance_helpers.py), USD, issued PREV's 15th, due PREV's 25th: 1,000.00 fixed + 234.56 usage
  (storage_gb_hours) + 89.51 tax = 1,324.07; overdue; a credit note of 24.07 cancels that much of what is due:
  gross revenue 1,324.07 (nothing refunded), overdue balance 1,300.00; invoiced usage 234.56;
- a draft (INV-DR) counts nowhere;
- subscription s1 of acme to plan `pro` (a 10.00 USD monthly fee) from PREV's 10th: MRR 10.00 at the end of PREV
  and of THIS, nothing at the end of PREV2 (the subscription starts after it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from finance_helpers import store_invoice
from lago_app import make_app, subscribe_to_pro
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from served_app import serve

from meterstream.entities import credit_notes, invoices, payments
from meterstream.entities.invoice_figures import add_months
from meterstream.schemas.invoice import decode, encode

EXAMPLE = Path(__file__).resolve().parents[1] / "documents" / "data" / "invoice_v2_example.json"
T = "t1"
TODAY = datetime.now(UTC).date()
THIS = TODAY.replace(day=1)
PREV, PREV2 = add_months(THIS, -1), add_months(THIS, -2)


def _instant(month: date) -> str:
    return f"{month:%Y-%m}-01T00:00:00.000Z"


def _books(client, sf) -> None:  # type: ignore[no-untyped-def]
    doc = msgspec.structs.replace(decode(EXAMPLE.read_bytes()), id="INV-EX", tenant=T, status="draft", number=None,
                                  issue_date=THIS, due_date=THIS + timedelta(days=30))  # fmt: skip
    invoices.upsert_draft(sf, tenant=T, invoice_id="INV-EX", customer=doc.customer, period=doc.period,
                          currency=doc.currency, total=doc.total, amount_due=doc.amount_due, issue_date=THIS,
                          due_date=THIS + timedelta(days=30), document=encode(doc))  # fmt: skip
    invoices.finalize(sf, T, "INV-EX", "ACME", "INV")
    payments.record_payment(sf, T, amount="459.97", currency="EUR", paid_on=TODAY, reference="sepa-1",
                            invoice_id="INV-EX")  # fmt: skip
    credit_notes.create_credit_note(sf, T, "INV-EX", "goodwill", [{"description": "goodwill", "amount": "9.97"}])
    store_invoice(sf, T, "INV-US", "globex", issue_date=PREV.replace(day=15), due_date=PREV.replace(day=25))
    credit_notes.create_credit_note(sf, T, "INV-US", "storage", [{"description": "storage", "amount": "24.07"}])
    assert [i.invoice_id for i in invoices.mark_overdue(sf, TODAY, T)] == ["INV-US"]
    store_invoice(sf, T, "INV-DR", "globex", finalize=False, issue_date=THIS)
    subscribe_to_pro(client, T, datetime(PREV.year, PREV.month, 10, tzinfo=UTC))


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        sf = client.app.state.sessions
        _books(client, sf)
        key = client.app.state.keys.create(T, "read", "analyst")[1]
        with serve(client.app) as base:
            yield client, key, Client(api_key=key, api_url=f"{base}/compat/lago/")


def test_lago_sdk_reads_every_figure(served) -> None:  # type: ignore[no-untyped-def]
    _client, _key, sdk = served
    gross = sdk.gross_revenues.find_all()["gross_revenues"]
    assert [(g.month, g.currency, g.amount_cents, g.invoices_count) for g in gross] == [
        (_instant(PREV), "USD", 132407, 1), (_instant(THIS), "EUR", 45000, 1)]  # fmt: skip
    assert [g.currency for g in sdk.gross_revenues.find_all({"currency": "eur"})["gross_revenues"]] == ["EUR"]
    assert sdk.gross_revenues.find_all({"external_customer_id": "nobody"})["gross_revenues"] == []

    collections = sdk.invoice_collections.find_all({"months": 3})["invoice_collections"]
    assert [(c.month, c.payment_status, c.currency, c.invoices_count, c.amount_cents) for c in collections] == [
        (_instant(PREV2), None, None, 0, 0), (_instant(PREV), "pending", "USD", 1, 132407),
        (_instant(THIS), "succeeded", "EUR", 1, 45997)]  # fmt: skip

    (overdue,) = sdk.overdue_balances.find_all()["overdue_balances"]
    assert (overdue.month, overdue.currency, overdue.amount_cents, overdue.lago_invoice_ids) == (
        _instant(PREV), "USD", 130000, ["INV-US"])  # fmt: skip

    usage = sdk.invoiced_usages.find_all()["invoiced_usages"]
    assert [(u.month, u.code, u.currency, u.amount_cents) for u in usage] == [
        (_instant(THIS), "storage_gb_hours", "EUR", 12330), (_instant(THIS), "api_calls", "EUR", 4257),
        (_instant(PREV), "storage_gb_hours", "USD", 23456)]  # fmt: skip
    assert sdk.invoiced_usages.find_all({"months": 1, "currency": "USD"})["invoiced_usages"] == []

    mrrs = sdk.mrrs.find_all({"months": 3})["mrrs"]
    assert [(r.month, r.currency, r.amount_cents) for r in mrrs] == [
        (_instant(PREV2), None, None), (_instant(PREV), "USD", 1000), (_instant(THIS), "USD", 1000)]  # fmt: skip
    assert [r.month for r in sdk.mrrs.find_all({"currency": "USD"})["mrrs"]] == [_instant(PREV), _instant(THIS)]

    with pytest.raises(LagoApiError) as bad:
        sdk.mrrs.find_all({"months": "twelve"})
    assert bad.value.status_code == 422 and list(bad.value.response["error_details"]) == ["months"]


def test_own_api_answers_the_same_figures_with_decimals(served) -> None:  # type: ignore[no-untyped-def]
    client, key, _sdk = served
    auth = {"Authorization": f"Bearer {key}"}
    body = client.get("/v1/analytics/gross_revenue", headers=auth).json()
    assert body["figure"] == "gross_revenue" and body["months"] is None
    assert [(r["month"], r["currency"], r["amount"], r["amount_minor"], r["invoices"]) for r in body["data"]] == [
        (f"{PREV:%Y-%m}", "USD", "1324.07", 132407, 1), (f"{THIS:%Y-%m}", "EUR", "450.00", 45000, 1)]  # fmt: skip
    overdue = client.get("/v1/analytics/overdue_balance?currency=USD", headers=auth).json()["data"]
    assert [(r["amount"], r["invoice_ids"]) for r in overdue] == [("1300.00", ["INV-US"])]
    usage = client.get("/v1/analytics/invoiced_usage?customer=globex", headers=auth).json()["data"]
    assert [(r["meter"], r["amount"]) for r in usage] == [("storage_gb_hours", "234.56")]
    mrr = client.get("/v1/analytics/mrr?months=2", headers=auth).json()["data"]
    assert [(r["month"], r["currency"], r["amount"]) for r in mrr] == [(f"{PREV:%Y-%m}", "USD", "10.00"),
                                                                      (f"{THIS:%Y-%m}", "USD", "10.00")]  # fmt: skip
    collection = client.get("/v1/analytics/invoice_collection?months=1", headers=auth).json()["data"]
    assert [(r["payment_status"], r["amount"], r["invoices"]) for r in collection] == [("succeeded", "459.97", 1)]

    for query, field in (("months=0", "months"), ("currency=eur", "currency")):
        refused = client.get(f"/v1/analytics/mrr?{query}", headers=auth)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
    assert client.get("/v1/analytics/profit", headers=auth).status_code == 422
    assert client.get("/v1/analytics/mrr").status_code == 401
    other = client.app.state.keys.create("t2", "read", "other")[1]  # another tenant sees none of it
    assert client.get("/v1/analytics/gross_revenue", headers={"Authorization": f"Bearer {other}"}).json()["data"] == []
