"""The Lago invoice and credit note objects (api/compat/lago/invoices.py) as pure functions of records built by
hand: statuses and payment statuses, overdue, voided, a draft's number, a document that is not an invoice,
reasons with descriptions, rates as percentages."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from finance_helpers import v2_draft

from meterstream.api.compat.lago.invoices import _percent, credit_note_object, invoice_object, split_reason
from meterstream.entities.credit_notes import CreditLine, CreditNote
from meterstream.entities.invoices import Invoice

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)
RECORD = Invoice(
    tenant="t", invoice_id="INV-1", customer="c", period="2026-11", currency="USD", status="finalized",
    total_minor=132407, billed_minor=132407, credited_minor=0, paid_minor=0, amount_due_minor=132407,
    issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31), document="{}", issuer="ACME", series="INV",
    number="ACME-2026-000001", finalized_at=AT, voided_at=None, void_reason=None, version=2, created_at=AT,
    updated_at=AT,
)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "paid", "due", "expected"),
    [
        ("finalized", 0, 132407, ("finalized", "pending", False)),
        ("partially_paid", 32407, 100000, ("finalized", "pending", False)),
        ("overdue", 32407, 100000, ("finalized", "pending", True)),
        ("paid", 132407, 0, ("finalized", "succeeded", False)),
        ("voided", 0, 0, ("voided", "pending", False)),
    ],
)
def test_statuses(status: str, paid: int, due: int, expected: tuple[str, str, bool]) -> None:
    record = dataclasses.replace(RECORD, status=status, paid_minor=paid, amount_due_minor=due)
    obj = invoice_object(record, v2_draft("t", "INV-1", "c"), None)
    assert (obj["status"], obj["payment_status"], obj["payment_overdue"]) == expected
    assert (obj["total_paid_amount_cents"], obj["total_due_amount_cents"]) == (paid, due)


def test_a_draft_and_a_document_that_is_not_an_invoice() -> None:
    draft = dataclasses.replace(RECORD, status="draft", number=None, finalized_at=None)
    obj = invoice_object(draft, v2_draft("t", "INV-1", "c"), None)
    assert (obj["number"], obj["status"], obj["net_payment_term"]) == ("DRAFT", "draft", 30)
    # without a readable document: the record's amounts, no fees (total 1324.07, 20.00 of prepaid credits)
    bare = invoice_object(dataclasses.replace(RECORD, billed_minor=130407, amount_due_minor=130407), None, None)
    assert (bare["fees_amount_cents"], bare["taxes_amount_cents"], bare["prepaid_credit_amount_cents"],
            bare["total_amount_cents"], bare["fees"]) == (132407, 0, 2000, 130407, [])  # fmt: skip


def test_reasons_and_rates() -> None:
    assert split_reason("duplicated_charge: billed twice") == ("duplicated_charge", "billed twice")
    assert split_reason("order_change") == ("order_change", None)
    assert split_reason("storage overbilled") == ("other", "storage overbilled")  # the own API's free text
    # as text: what goes on the wire (20, never 2E+1)
    assert [str(_percent(Decimal(r))) for r in ("0.20", "0.0725", "0", "0.055")] == ["20", "7.25", "0.0", "5.5"]
    note = CreditNote(tenant="t", credit_note_id="cn1", invoice_id="INV-1", invoice_number="ACME-2026-000001",
                      customer="c", currency="USD", number="ACME-CN-2026-000001", status="refund_due",
                      reason="order_cancellation: cancelled in week 1", lines=(CreditLine("Platform", 107250),),
                      total_minor=107250, credit_minor=7250, refund_minor=100000, issue_date=date(2026, 12, 9),
                      created_at=AT)  # fmt: skip
    obj = credit_note_object(note)
    assert (obj["reason"], obj["description"], obj["offset_amount_cents"], obj["refund_amount_cents"],
            obj["refund_status"], obj["credit_amount_cents"]) == ("order_cancellation", "cancelled in week 1", 7250,
                                                                  100000, "pending", 0)  # fmt: skip
