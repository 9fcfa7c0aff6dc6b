"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQLite store, no broker):
`invoices.find_all` / `find` / `void` and `credit_notes.create` / `find_all` / `find` over invoices stored with
hand-checked version 2 documents. Every `*_cents` figure below is worked out by hand from the documents:

- tests/documents/data/invoice_v2_example.json (conftest there): lines 47.30 + 137.00 + 99.00 + 250.00 = 533.30,
  coupon WELCOME10 53.33 (4.73 + 13.70 + 9.90 + 25.00), reverse charge 0 % tax, total 479.97, prepaid credits 20.00
  -> 459.97 asked for;
- finance_helpers.py: 1000.00 + 234.56 = 1234.56, sales tax 7.25 % per line 72.50 + 17.01 = 89.51, total 1324.07.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import msgspec
import pytest
from finance_helpers import store_invoice
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer
from lago_python_client.models.credit_note import CreditNote, Item, Items
from served_app import serve

from meterstream.entities import invoices, payments
from meterstream.schemas.invoice import decode, encode

EXAMPLE = Path(__file__).resolve().parents[1] / "documents" / "data" / "invoice_v2_example.json"
T = "t1"


def _store_example(sf, invoice_id: str) -> None:  # type: ignore[no-untyped-def]
    doc = msgspec.structs.replace(decode(EXAMPLE.read_bytes()), id=invoice_id, tenant=T, status="draft", number=None)
    invoices.upsert_draft(sf, tenant=T, invoice_id=invoice_id, customer=doc.customer, period=doc.period,
                          currency=doc.currency, total=doc.total, amount_due=doc.amount_due,
                          issue_date=doc.issue_date, due_date=doc.due_date, document=encode(doc))  # fmt: skip
    invoices.finalize(sf, T, invoice_id, "ACME", "INV")


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), client.app.state.sessions


def test_invoices_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, sf = lago
    sdk.customers.create(Customer(external_id="kerry-brew", name="Kerry Brew", currency="EUR"))
    _store_example(sf, "INV-EX")  # ACME-2026-000001
    store_invoice(sf, T, "INV-US", "globex")  # ACME-2026-000002
    store_invoice(sf, T, "INV-DR", "globex", finalize=False)

    inv = sdk.invoices.find("INV-EX")
    assert (inv.lago_id, inv.number, inv.status, inv.payment_status, inv.currency) == (
        "INV-EX", "ACME-2026-000001", "finalized", "pending", "EUR")  # fmt: skip
    assert (inv.fees_amount_cents, inv.coupons_amount_cents, inv.taxes_amount_cents) == (53330, 5333, 0)
    assert (inv.sub_total_excluding_taxes_amount_cents, inv.sub_total_including_taxes_amount_cents) == (47997, 47997)
    assert (inv.prepaid_credit_amount_cents, inv.total_amount_cents, inv.total_due_amount_cents) == (2000, 45997, 45997)
    assert (inv.issuing_date, inv.payment_due_date, inv.net_payment_term) == ("2026-12-01", "2026-12-31", 30)
    assert inv.customer.external_id == "kerry-brew"
    fees = inv.fees.__root__
    assert [(f.item.code, f.amount_cents, f.precise_coupons_amount_cents, f.taxes_amount_cents, f.total_amount_cents)
            for f in fees] == [("api_calls", 4730, "473", 0, 4730), ("storage_gb_hours", 13700, "1370", 0, 13700),
                               ("platform", 9900, "990", 0, 9900), ("onboarding", 25000, "2500", 0, 25000)]  # fmt: skip
    assert (fees[0].units, fees[0].events_count, fees[0].item.type, fees[2].item.type) == ("1250000", 18250, "charge",
                                                                                           "subscription")  # fmt: skip
    (tax,) = inv.applied_taxes.__root__
    assert (tax.tax_rate, tax.amount_cents, tax.fees_amount_cents) == (0.0, 0, 47997)

    us = sdk.invoices.find("INV-US")
    assert (us.fees_amount_cents, us.taxes_amount_cents, us.total_amount_cents, us.customer) == (123456, 8951, 132407,
                                                                                                 None)  # fmt: skip
    storage = us.fees.__root__[1]
    assert (storage.amount_cents, storage.taxes_rate, storage.taxes_amount_cents, storage.total_amount_cents) == (
        23456, 7.25, 1701, 25157)  # fmt: skip

    listed = sdk.invoices.find_all()["invoices"]
    assert [i.lago_id for i in listed] == ["INV-EX", "INV-US", "INV-DR"]  # issue date, number, drafts last
    assert [i.lago_id for i in sdk.invoices.find_all({"external_customer_id": "globex"})["invoices"]] == [
        "INV-US",
        "INV-DR",
    ]
    (draft,) = sdk.invoices.find_all({"status": "draft"})["invoices"]
    assert (draft.lago_id, draft.number, draft.status) == ("INV-DR", "DRAFT", "draft")
    assert sdk.invoices.find_all({"status": "failed"})["invoices"] == []

    # paid in full (459.97 asked for): succeeded, nothing due
    payments.record_payment(sf, T, amount="459.97", currency="EUR", paid_on=date(2026, 12, 20), reference="sepa-1",
                            invoice_id="INV-EX")  # fmt: skip
    (paid,) = sdk.invoices.find_all({"payment_status": "succeeded"})["invoices"]
    assert (paid.lago_id, paid.total_paid_amount_cents, paid.total_due_amount_cents) == ("INV-EX", 45997, 0)

    with pytest.raises(LagoApiError) as missing:
        sdk.invoices.find("NOPE")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "invoice_not_found")
    with pytest.raises(LagoApiError) as bad:
        sdk.invoices.find_all({"status": "open"})
    assert bad.value.status_code == 422 and list(bad.value.response["error_details"]) == ["status"]

    # void: the draft cannot be (405), a finalized invoice without money on it can
    with pytest.raises(LagoApiError) as not_voidable:
        sdk.invoices.void("INV-DR")
    assert (not_voidable.value.status_code, not_voidable.value.response["code"]) == (405, "not_voidable")
    store_invoice(sf, T, "INV-V", "globex")
    voided = sdk.invoices.void("INV-V")
    assert (voided.status, voided.total_due_amount_cents, voided.voided_at is not None) == ("voided", 0, True)


def test_credit_notes_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, sf = lago
    store_invoice(sf, T, "INV-US", "globex")
    storage = sdk.invoices.find("INV-US").fees.__root__[1]  # 234.56 + 17.01 tax = 251.57

    note = sdk.credit_notes.create(CreditNote(
        invoice_id="INV-US", reason="duplicated_charge", description="November storage billed twice",
        credit_amount_cents=25157, refund_amount_cents=0, items=Items(__root__=[Item(fee_id=storage.lago_id,
                                                                                    amount_cents=25157)]),
    ))  # fmt: skip
    assert (note.number, note.invoice_number, note.lago_invoice_id, note.reason, note.currency) == (
        "ACME-CN-2026-000001", "ACME-2026-000001", "INV-US", "duplicated_charge", "USD")  # fmt: skip
    # nothing was paid: all of it cancels what is due (offset), nothing is refunded
    assert (note.total_amount_cents, note.offset_amount_cents, note.refund_amount_cents, note.credit_amount_cents,
            note.refund_status) == (25157, 25157, 0, 0, None)  # fmt: skip
    assert [i.amount_cents for i in note.items.__root__] == [25157]
    after = sdk.invoices.find("INV-US")  # 132407 - 25157 = 107250 still due
    assert (after.total_offsetted_credit_note_amount_cents, after.total_due_amount_cents) == (25157, 107250)
    assert sdk.credit_notes.find(note.lago_id).number == "ACME-CN-2026-000001"
    listed = sdk.credit_notes.find_all({"external_customer_id": "globex"})["credit_notes"]
    assert [n.lago_id for n in listed] == [note.lago_id]

    # 1000.00 paid, then a credit of the platform fee 1000.00 + 72.50 tax = 1072.50: 72.50 due is cancelled,
    # 1072.50 - 72.50 = 1000.00 is owed back
    payments.record_payment(sf, T, amount="1000.00", currency="USD", paid_on=date(2026, 12, 9),
                            reference="wire-1", invoice_id="INV-US")  # fmt: skip
    platform = after.fees.__root__[0]
    refund = sdk.credit_notes.create(CreditNote(invoice_id="INV-US", reason="order_cancellation",
                                                items=Items(__root__=[Item(fee_id=platform.lago_id,
                                                                           amount_cents=107250)])))  # fmt: skip
    assert (refund.total_amount_cents, refund.offset_amount_cents, refund.refund_amount_cents, refund.refund_status,
            refund.reason) == (107250, 7250, 100000, "pending", "order_cancellation")  # fmt: skip

    with pytest.raises(LagoApiError) as too_much:
        sdk.credit_notes.create(CreditNote(invoice_id="INV-US", items=Items(__root__=[
            Item(fee_id=storage.lago_id, amount_cents=25158)])))  # fmt: skip
    assert too_much.value.status_code == 422
    assert list(too_much.value.response["error_details"]) == ["items[0].amount_cents"]
    with pytest.raises(LagoApiError) as unbalanced:
        sdk.credit_notes.create(CreditNote(invoice_id="INV-US", credit_amount_cents=5, items=Items(__root__=[
            Item(fee_id=storage.lago_id, amount_cents=10)])))  # fmt: skip
    assert list(unbalanced.value.response["error_details"]) == ["base"]
    with pytest.raises(LagoApiError) as unknown_fee:
        sdk.credit_notes.create(CreditNote(invoice_id="INV-US", items=Items(__root__=[
            Item(fee_id="00000000-0000-0000-0000-000000000000", amount_cents=10)])))  # fmt: skip
    assert list(unknown_fee.value.response["error_details"]) == ["items[0].fee_id"]
    with pytest.raises(LagoApiError) as no_invoice:
        sdk.credit_notes.create(CreditNote(invoice_id="NOPE", items=Items(__root__=[Item(fee_id="x", amount_cents=1)])))
    assert (no_invoice.value.status_code, no_invoice.value.response["code"]) == (404, "invoice_not_found")

    # credit_notes.void: no note here carries a credit balance to void (Lago's own answer for one without any)
    for made in (note, refund):
        with pytest.raises(LagoApiError) as none:
            sdk.credit_notes.void(made.lago_id)
        assert (none.value.status_code, none.value.response["code"]) == (405, "no_voidable_amount")
    with pytest.raises(LagoApiError) as no_note:
        sdk.credit_notes.void("00000000-0000-0000-0000-000000000000")
    assert (no_note.value.status_code, no_note.value.response["code"]) == (404, "credit_note_not_found")
    assert sdk.credit_notes.find(refund.lago_id).refund_amount_cents == 100000  # nothing written


def test_find_all_pages_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    """Five invoices (numbered 1..5 as finalized) issued Dec 3, 1, 2, 1, 2 and one draft of Dec 1: in the order of
    issue date, number, drafts last: B (000002), D (000004), DR, C (000003), E (000005), A (000001)."""
    sdk, sf = lago
    for name, day in (("A", 3), ("B", 1), ("C", 2), ("D", 1), ("E", 2)):
        store_invoice(sf, T, f"INV-{name}", "globex", issue_date=date(2026, 12, day), due_date=date(2027, 1, 5))
    store_invoice(sf, T, "INV-DR", "initech", finalize=False, issue_date=date(2026, 12, 1))
    pages = [sdk.invoices.find_all({"per_page": 4, "page": n}) for n in (1, 2, 3)]
    assert [[i.lago_id for i in p["invoices"]] for p in pages] == [
        ["INV-B", "INV-D", "INV-DR", "INV-C"], ["INV-E", "INV-A"], []]  # fmt: skip
    # 6 invoices by 4: 2 pages; the page past the last is empty, with neither a next nor a previous page
    assert [p["meta"] for p in pages] == [
        {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 2, "total_count": 6},
        {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 6},
        {"current_page": 3, "next_page": None, "prev_page": None, "total_pages": 2, "total_count": 6}]  # fmt: skip
    # filters count before paging: globex's finalized five, 2 a page -> 3 pages, the last holding one
    third = sdk.invoices.find_all({"external_customer_id": "globex", "status": "finalized", "per_page": 2, "page": 3})
    assert [i.lago_id for i in third["invoices"]] == ["INV-A"]
    assert third["meta"] == {"current_page": 3, "next_page": None, "prev_page": 2, "total_pages": 3, "total_count": 5}
    every = sdk.invoices.find_all()  # Lago's default page: 100 rows
    assert len(every["invoices"]) == 6 and every["meta"]["total_pages"] == 1
    assert sdk.invoices.find_all({"payment_status": "failed"})["meta"]["total_count"] == 0
    for bad in ({"per_page": 0}, {"per_page": 1001}, {"page": "x"}):
        with pytest.raises(LagoApiError) as refused:
            sdk.invoices.find_all(bad)
        assert refused.value.status_code == 422 and list(refused.value.response["error_details"]) == list(bad)

    # credit notes: three on INV-B (1.00, 2.00, 3.00), in the order issued, 2 a page
    fee = sdk.invoices.find("INV-B").fees.__root__[0]
    for cents in (100, 200, 300):
        sdk.credit_notes.create(CreditNote(invoice_id="INV-B", items=Items(__root__=[
            Item(fee_id=fee.lago_id, amount_cents=cents)])))  # fmt: skip
    first, second = (sdk.credit_notes.find_all({"per_page": 2, "page": n}) for n in (1, 2))
    assert [n.total_amount_cents for n in first["credit_notes"]] == [100, 200]
    assert [n.total_amount_cents for n in second["credit_notes"]] == [300]
    assert second["meta"] == {"current_page": 2, "next_page": None, "prev_page": 1, "total_pages": 2, "total_count": 3}


def test_credit_note_estimate_writes_nothing(lago) -> None:  # type: ignore[no-untyped-def]
    """INV-US asks 1,324.07: platform 1,000.00 + 72.50 tax = 1,072.50, storage 234.56 + 17.01 = 251.57; 1,000.00
    is paid, so 324.07 is due. Storage in full: 251.57 cancels that much of what is due, nothing owed back. Both fees
    in full (1,324.07): 324.07 cancels the rest due and 1,000.00 is owed back."""
    from lago_python_client.models.credit_note import CreditNoteEstimate

    sdk, sf = lago
    store_invoice(sf, T, "INV-US", "globex")
    payments.record_payment(sf, T, amount="1000.00", currency="USD", paid_on=date(2026, 12, 5), reference="wire-1",
                            invoice_id="INV-US")  # fmt: skip
    platform, storage = sdk.invoices.find("INV-US").fees.__root__

    def estimate(*items: tuple[str, int], invoice_id: str = "INV-US"):  # type: ignore[no-untyped-def]
        return sdk.credit_notes.estimate(CreditNoteEstimate(invoice_id=invoice_id, items=Items(__root__=[
            Item(fee_id=fee, amount_cents=cents) for fee, cents in items])))  # fmt: skip

    one = estimate((storage.lago_id, 25157))
    assert (one.lago_invoice_id, one.invoice_number, one.currency) == ("INV-US", "ACME-2026-000001", "USD")
    assert (one.sub_total_excluding_taxes_amount_cents, one.max_offsettable_amount_cents,
            one.max_refundable_amount_cents, one.max_creditable_amount_cents, one.taxes_amount_cents) == (
        25157, 25157, 0, 0, 0)  # fmt: skip
    assert [(i.lago_fee_id, i.amount_cents) for i in one.items.__root__] == [(storage.lago_id, 25157)]
    both = estimate((platform.lago_id, 107250), (storage.lago_id, 25157))
    assert (both.sub_total_excluding_taxes_amount_cents, both.max_offsettable_amount_cents,
            both.max_refundable_amount_cents) == (132407, 32407, 100000)  # fmt: skip

    # nothing was written: no credit note, the invoice as it was
    assert sdk.credit_notes.find_all()["credit_notes"] == []
    assert sdk.invoices.find("INV-US").total_due_amount_cents == 32407

    with pytest.raises(LagoApiError) as too_much:
        estimate((storage.lago_id, 25158))
    assert too_much.value.status_code == 422 and list(too_much.value.response["error_details"]) == [
        "items[0].amount_cents"]  # fmt: skip
    store_invoice(sf, T, "INV-DR", "globex", finalize=False)
    draft_fee = sdk.invoices.find("INV-DR").fees.__root__[0]
    with pytest.raises(LagoApiError) as draft:
        estimate((draft_fee.lago_id, 100), invoice_id="INV-DR")
    assert (draft.value.status_code, draft.value.response["code"]) == (405, "not_creditable")
    with pytest.raises(LagoApiError) as missing:
        estimate((storage.lago_id, 100), invoice_id="NOPE")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "invoice_not_found")


def test_credit_note_refund_status_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    """INV-US 1,324.07 with 1,000.00 paid (324.07 due); storage credited in full, 251.57: all of it off the amount
    due, nothing owed back; then platform 1,072.50: 72.50 off what is left due, 1,000.00 owed back (pending) until
    finance says it was paid back (succeeded)."""
    from lago_python_client.models.credit_note import CreditNoteUpdate

    sdk, sf = lago
    store_invoice(sf, T, "INV-US", "globex")
    payments.record_payment(sf, T, amount="1000.00", currency="USD", paid_on=date(2026, 12, 5), reference="wire-1",
                            invoice_id="INV-US")  # fmt: skip
    platform, storage = sdk.invoices.find("INV-US").fees.__root__
    first = sdk.credit_notes.create(CreditNote(invoice_id="INV-US", items=Items(__root__=[
        Item(fee_id=storage.lago_id, amount_cents=25157)])))  # fmt: skip
    second = sdk.credit_notes.create(CreditNote(invoice_id="INV-US", items=Items(__root__=[
        Item(fee_id=platform.lago_id, amount_cents=107250)])))  # fmt: skip
    assert (first.refund_amount_cents, first.refund_status) == (0, None)
    assert (second.offset_amount_cents, second.refund_amount_cents, second.refund_status) == (7250, 100000, "pending")

    same = sdk.credit_notes.update(CreditNoteUpdate(refund_status="pending"), second.lago_id)
    assert same.refund_status == "pending"
    done = sdk.credit_notes.update(CreditNoteUpdate(refund_status="succeeded"), second.lago_id)
    assert (done.refund_status, done.refund_amount_cents) == ("succeeded", 100000)
    assert sdk.credit_notes.find(second.lago_id).refund_status == "succeeded"
    assert sdk.credit_notes.update(CreditNoteUpdate(refund_status="succeeded"), second.lago_id).refund_status == (
        "succeeded"
    )  # again: the same

    for body, field in ((CreditNoteUpdate(refund_status="failed"), "refund_status"),
                        (CreditNoteUpdate(refund_status="pending"), "refund_status"),
                        (CreditNoteUpdate(refund_status="succeeded", metadata={"k": "v"}), "metadata")):  # fmt: skip
        with pytest.raises(LagoApiError) as refused:
            sdk.credit_notes.update(body, second.lago_id)
        assert refused.value.status_code == 422 and list(refused.value.response["error_details"]) == [field]
    with pytest.raises(LagoApiError) as nothing_owed:
        sdk.credit_notes.update(CreditNoteUpdate(refund_status="succeeded"), first.lago_id)
    assert (nothing_owed.value.status_code, nothing_owed.value.response["code"]) == (405, "not_refundable")
    with pytest.raises(LagoApiError) as missing:
        sdk.credit_notes.update(CreditNoteUpdate(refund_status="succeeded"), "NOPE")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "credit_note_not_found")
