"""Credit notes (entities/credit_notes.py) on SQLite and PostgreSQL: partial and full, numbered in series CN,
never more than the invoice's remaining creditable amount, lowering the amount due; amounts by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from invoice_helpers import TENANT, draft, issued

from meterstream.entities import invoices, numbering
from meterstream.entities.common import Conflict, Invalid
from meterstream.entities.credit_notes import create_credit_note, get_credit_note, list_credit_notes
from meterstream.entities.payments import record_payment

DAY = date(2026, 12, 1)  # the invoices' issue date (invoice_helpers.issued); not ahead of today


def test_partial_then_full_credit_note(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    lines = [{"description": "SMS billed twice", "amount": "20.00"}, {"description": "goodwill", "amount": "5.50"}]
    first = create_credit_note(sf, TENANT, "inv-1", "duplicate usage", lines, issue_date=DAY)
    # 20.00 + 5.50 = 25.50; 120.00 - 25.50 = 94.50 left to pay
    assert (first.number, first.total, first.credit, first.refund, first.status) == (
        "ACME-CN-2026-000001", Decimal("25.50"), Decimal("25.50"), Decimal("0.00"), "applied",
    )  # fmt: skip
    assert [(x.description, x.amount_minor) for x in first.lines] == [("SMS billed twice", 2000), ("goodwill", 550)]
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.credited, inv.amount_due, inv.status) == (Decimal("25.50"), Decimal("94.50"), "finalized")

    full = create_credit_note(sf, TENANT, "inv-1", "contract cancelled", None, issue_date=DAY)
    assert (full.number, full.total_minor, full.lines[0].description) == (
        "ACME-CN-2026-000002", 9450, "Full credit of invoice ACME-2026-000001",
    )  # fmt: skip
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.credited_minor, inv.amount_due_minor, inv.status) == (12000, 0, "paid")  # nothing left to collect

    with pytest.raises(Invalid) as exc:
        create_credit_note(sf, TENANT, "inv-1", "again", [{"description": "x", "amount": "0.01"}], issue_date=DAY)
    assert exc.value.field == "amount"
    assert [c.number for c in list_credit_notes(sf, TENANT, invoice_id="inv-1")] == [first.number, full.number]


def test_more_than_the_creditable_amount_is_refused_and_consumes_no_number(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    with pytest.raises(Invalid) as exc:
        create_credit_note(sf, TENANT, "inv-1", "too much", [{"description": "x", "amount": "120.01"}], issue_date=DAY)
    assert exc.value.field == "amount" and "120.00" in str(exc.value)
    assert numbering.last_number(sf, TENANT, "ACME", "CN", 2026) == 0
    assert invoices.get(sf, TENANT, "inv-1").amount_due_minor == 12000
    assert list_credit_notes(sf, TENANT) == []


def test_a_credit_note_dated_before_its_invoice_is_refused_and_consumes_no_number(sf) -> None:
    """An audit dated one 2020-01-01 against an invoice of 2027-03-01: it opened a 2020 series and changed an
    exported month. The invoice here is issued 2026-12-01 (invoice_helpers.issued)."""
    issued(sf, "inv-1", total="120.00")
    one = [{"description": "x", "amount": "1.00"}]
    with pytest.raises(Invalid) as exc:
        create_credit_note(sf, TENANT, "inv-1", "r", one, issue_date=date(2020, 1, 1))
    assert exc.value.field == "issue_date" and "2026-12-01" in str(exc.value)
    with pytest.raises(Invalid):
        create_credit_note(sf, TENANT, "inv-1", "r", one, issue_date=date(2026, 11, 30))  # the day before
    assert numbering.last_number(sf, TENANT, "ACME", "CN", 2020) == 0
    assert list_credit_notes(sf, TENANT) == []
    # the invoice's own day is fine
    assert create_credit_note(sf, TENANT, "inv-1", "r", one, issue_date=date(2026, 12, 1)).total_minor == 100


def test_prepaid_credits_are_not_creditable(sf) -> None:
    issued(sf, "inv-1", total="120.00", amount_due="100.00")  # 20.00 of prepaid credits applied
    with pytest.raises(Invalid):
        create_credit_note(sf, TENANT, "inv-1", "r", [{"description": "x", "amount": "100.01"}], issue_date=DAY)
    assert create_credit_note(sf, TENANT, "inv-1", "r", None, issue_date=DAY).total_minor == 10000


def test_after_a_payment_the_rest_is_owed_back(sf) -> None:
    issued(sf, "inv-1", total="100.00")
    record_payment(
        sf, TENANT, amount="70.00", currency="EUR", paid_on=date(2026, 12, 5), reference="p1", invoice_id="inv-1"
    )
    note = create_credit_note(
        sf, TENANT, "inv-1", "price error", [{"description": "x", "amount": "50.00"}], issue_date=DAY
    )
    # 30.00 was still due: 30.00 cancels it, the other 20.00 was paid and is owed back
    assert (note.credit, note.refund, note.status) == (Decimal("30.00"), Decimal("20.00"), "refund_due")
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.paid_minor, inv.credited_minor, inv.amount_due_minor, inv.status) == (7000, 5000, 0, "paid")
    # 100.00 - 50.00 credited = 50.00 still creditable
    last = create_credit_note(sf, TENANT, "inv-1", "rest", None, issue_date=DAY)
    assert (last.total_minor, last.credit_minor, last.refund_minor) == (5000, 0, 5000)


def test_only_issued_invoices_are_credited(sf) -> None:
    draft(sf, "d")
    issued(sf, "v")
    invoices.void(sf, TENANT, "v", "wrong customer")
    for invoice_id in ("d", "v"):
        with pytest.raises(Conflict) as exc:
            create_credit_note(sf, TENANT, invoice_id, "r", [{"description": "x", "amount": "1.00"}], issue_date=DAY)
        assert exc.value.field == "status"


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([{"description": "x", "amount": "0"}], "lines[0].amount"),
        ([{"description": "x", "amount": 1.5}], "lines[0].amount"),
        ([{"description": "x", "amount": "1.00"}, {"description": "y", "amount": "0.001"}], "lines[1].amount"),
        ([{"description": "", "amount": "1.00"}], "lines[0].description"),
        ([], "lines"),
    ],
)
def test_bad_lines_name_the_field(sf, lines, field) -> None:
    issued(sf, "inv-1")
    with pytest.raises(Invalid) as exc:
        create_credit_note(sf, TENANT, "inv-1", "r", lines, issue_date=DAY)
    assert exc.value.field == field


def test_the_same_credit_note_id_counts_once(sf) -> None:
    issued(sf, "inv-1")
    line = [{"description": "x", "amount": "10.00"}]
    a = create_credit_note(sf, TENANT, "inv-1", "r", line, issue_date=DAY, credit_note_id="cn-42")
    b = create_credit_note(sf, TENANT, "inv-1", "r", line, issue_date=DAY, credit_note_id="cn-42")
    assert a.number == b.number == "ACME-CN-2026-000001"
    assert invoices.get(sf, TENANT, "inv-1").credited_minor == 1000
    with pytest.raises(Conflict) as exc:
        create_credit_note(sf, TENANT, "inv-1", "r", [{"description": "x", "amount": "11.00"}], credit_note_id="cn-42")
    assert exc.value.field == "credit_note_id"
    assert get_credit_note(sf, TENANT, "cn-42").total == Decimal("10.00")
    full = create_credit_note(sf, TENANT, "inv-1", "cancel", None, issue_date=DAY, credit_note_id="cn-43")
    assert full.total_minor == 11000  # 120.00 - 10.00
    assert create_credit_note(sf, TENANT, "inv-1", "cancel", None, issue_date=DAY, credit_note_id="cn-43") == full
    assert invoices.get(sf, TENANT, "inv-1").credited_minor == 12000


def test_credit_notes_do_not_use_invoice_numbers(sf) -> None:
    issued(sf, "inv-1")
    create_credit_note(sf, TENANT, "inv-1", "r", [{"description": "x", "amount": "1.00"}], issue_date=DAY)
    assert issued(sf, "inv-2").number == "ACME-2026-000002"
    assert numbering.last_number(sf, TENANT, "ACME", "CN", 2026) == 1


def test_a_refund_is_recorded_once_when_paid_back(sf) -> None:
    """Billed 100.00, paid 70.00, a credit note of 50.00: 30.00 cancels what is due, 20.00 is owed back
    (refund_due). Paid back on 15 December by transfer tr-9: refunded, once; one `credit_note.refunded` event."""
    from sqlalchemy import select

    from meterstream.entities.common import NotFound
    from meterstream.entities.credit_notes import mark_refunded
    from meterstream.webhooks.events import CREDIT_NOTE_REFUNDED, WebhookOutboxRow

    issued(sf, "inv-1", total="100.00")
    record_payment(sf, TENANT, amount="70.00", currency="EUR", paid_on=date(2026, 12, 5), reference="b-1",
                   invoice_id="inv-1")  # fmt: skip
    note = create_credit_note(sf, TENANT, "inv-1", "goodwill", [{"description": "x", "amount": "50.00"}],
                              issue_date=date(2026, 12, 10), today=date(2026, 12, 10))  # fmt: skip
    assert (note.credit_minor, note.refund_minor, note.status, note.refunded_on) == (3000, 2000, "refund_due", None)
    today = date(2026, 12, 20)
    for bad in (date(2026, 12, 9), date(2026, 12, 21)):  # before the note, after today
        with pytest.raises(Invalid) as exc:
            mark_refunded(sf, TENANT, note.credit_note_id, bad, "tr-9", today=today)
        assert exc.value.field == "refunded_on"
    done = mark_refunded(sf, TENANT, note.credit_note_id, date(2026, 12, 15), "tr-9", today=today)
    assert (done.status, done.refunded_on, done.refund_reference, done.refund_minor) == (
        "refunded", date(2026, 12, 15), "tr-9", 2000)  # fmt: skip
    again = mark_refunded(sf, TENANT, note.credit_note_id, date(2026, 12, 15), "tr-9", today=today)
    assert again == done
    with pytest.raises(Conflict) as other:
        mark_refunded(sf, TENANT, note.credit_note_id, date(2026, 12, 16), "tr-9", today=today)
    assert other.value.field == "refunded_on" and "2026-12-15" in str(other.value)
    assert get_credit_note(sf, TENANT, note.credit_note_id).status == "refunded"
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.credited_minor, inv.paid_minor, inv.amount_due_minor) == (5000, 7000, 0)  # the invoice unchanged
    with sf() as s:
        types = list(s.scalars(select(WebhookOutboxRow.type).where(WebhookOutboxRow.tenant == TENANT)))
    assert types.count(CREDIT_NOTE_REFUNDED) == 1

    second = create_credit_note(sf, TENANT, "inv-1", "more", [{"description": "y", "amount": "1.00"}],
                                 issue_date=date(2026, 12, 10), today=date(2026, 12, 10))  # fmt: skip
    assert second.refund_minor == 100 and second.status == "refund_due"  # nothing was due any more
    issued(sf, "inv-2", total="10.00")
    owed_nothing = create_credit_note(sf, TENANT, "inv-2", "z", [{"description": "z", "amount": "1.00"}],
                                      issue_date=DAY, today=DAY)  # fmt: skip
    with pytest.raises(Conflict) as nothing:
        mark_refunded(sf, TENANT, owed_nothing.credit_note_id, today, today=today)
    assert nothing.value.field == "status"
    with pytest.raises(NotFound):
        mark_refunded(sf, TENANT, "nope", today, today=today)
