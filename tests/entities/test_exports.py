"""The month export (entities/exports.py): CSV and JSON content written out by hand, from records built by hand
(pure) and from the store (SQLite and PostgreSQL): drafts left out, voided invoices in, each record by its
own date."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from invoice_helpers import TENANT, draft, issued

from meterstream.entities import exports, invoices
from meterstream.entities.common import Invalid
from meterstream.entities.credit_notes import CreditLine, CreditNote, create_credit_note
from meterstream.entities.payments import Allocation, Payment, record_payment

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _invoice(**kw) -> invoices.Invoice:
    base = dict(
        tenant=TENANT, invoice_id="inv-1", customer="c1", period="2026-11", currency="EUR", status="partially_paid",
        total_minor=12000, billed_minor=12000, credited_minor=2550, paid_minor=5000, amount_due_minor=4450,
        issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31), document="{}", issuer="ACME", series="INV",
        number="ACME-2026-000001", finalized_at=T0, voided_at=None, void_reason=None, version=3,
        created_at=T0, updated_at=T0,
    )  # fmt: skip
    base.update(kw)
    return invoices.Invoice(**base)


def test_csv_and_json_of_hand_built_records() -> None:
    data = exports.ExportData(
        tenant=TENANT,
        month="2026-12",
        invoices=(
            _invoice(),
            _invoice(
                invoice_id="inv-2",
                customer="Müller, GmbH",
                currency="JPY",
                status="voided",
                total_minor=1500,
                billed_minor=1500,
                credited_minor=0,
                paid_minor=0,
                amount_due_minor=0,
                number="ACME-2026-000002",
                voided_at=datetime(2026, 12, 2, 8, 30, tzinfo=UTC),
                void_reason='wrong "customer"',
            ),
        ),
        credit_notes=(
            CreditNote(
                tenant=TENANT,
                credit_note_id="cn-1",
                invoice_id="inv-1",
                invoice_number="ACME-2026-000001",
                customer="c1",
                currency="EUR",
                number="ACME-CN-2026-000001",
                status="applied",
                reason="duplicate",
                lines=(CreditLine("SMS billed twice", 2000), CreditLine("goodwill", 550)),
                total_minor=2550,
                credit_minor=2550,
                refund_minor=0,
                issue_date=date(2026, 12, 10),
                created_at=T0,
            ),
        ),
        payments=(
            Payment(
                tenant=TENANT,
                reference="bank-1",
                customer="c1",
                invoice_id=None,
                currency="EUR",
                amount_minor=5000,
                paid_on=date(2026, 12, 5),
                allocations=(
                    Allocation("inv-1", "ACME-2026-000001", 3000),
                    Allocation("inv-9", "ACME-2026-000009", 2000),
                ),
                created_at=T0,
            ),
        ),
    )
    files = exports.to_csv(data)
    assert files["invoices.csv"] == (
        "number,invoice_id,status,customer,period,issue_date,due_date,currency,total,billed,credited,paid,"
        "amount_due,voided_at,void_reason\r\n"
        "ACME-2026-000001,inv-1,partially_paid,c1,2026-11,2026-12-01,2026-12-31,EUR,120.00,120.00,25.50,50.00,"
        "44.50,,\r\n"
        'ACME-2026-000002,inv-2,voided,"Müller, GmbH",2026-11,2026-12-01,2026-12-31,JPY,1500,1500,0,0,0,'
        '2026-12-02T08:30:00+00:00,"wrong ""customer"""\r\n'
    )
    assert files["credit_notes.csv"] == (
        "number,credit_note_id,invoice_number,invoice_id,customer,issue_date,currency,total,credit,refund,status,"
        "reason,refunded_on,refund_reference\r\n"
        "ACME-CN-2026-000001,cn-1,ACME-2026-000001,inv-1,c1,2026-12-10,EUR,25.50,25.50,0.00,applied,duplicate,,\r\n"
    )
    assert files["payments.csv"] == (
        "reference,paid_on,customer,currency,amount,invoice_number,invoice_id,allocated\r\n"
        "bank-1,2026-12-05,c1,EUR,50.00,ACME-2026-000001,inv-1,30.00\r\n"
        "bank-1,2026-12-05,c1,EUR,50.00,ACME-2026-000009,inv-9,20.00\r\n"
    )
    body = json.loads(exports.to_json(data))
    assert (body["tenant"], body["month"]) == (TENANT, "2026-12")
    assert body["invoices"][0]["amount_due"] == "44.50" and body["invoices"][1]["total"] == "1500"
    assert body["credit_notes"][0]["lines"] == [
        {"description": "SMS billed twice", "amount": "20.00"},
        {"description": "goodwill", "amount": "5.50"},
    ]
    assert body["payments"] == [
        {
            "reference": "bank-1", "paid_on": "2026-12-05", "customer": "c1", "currency": "EUR", "amount": "50.00",
            "allocations": [
                {"invoice_number": "ACME-2026-000001", "invoice_id": "inv-1", "amount": "30.00"},
                {"invoice_number": "ACME-2026-000009", "invoice_id": "inv-9", "amount": "20.00"},
            ],
        }
    ]  # fmt: skip


def test_month_bounds() -> None:
    assert exports.month_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    assert exports.month_bounds("2027-02") == (date(2027, 2, 1), date(2027, 3, 1))
    for bad in ("2026-13", "2026-1", "26-12", "2026-00", None):
        with pytest.raises(Invalid) as exc:
            exports.month_bounds(bad)  # type: ignore[arg-type]
        assert exc.value.field == "month"


def test_a_month_read_from_the_store(sf) -> None:
    issued(sf, "nov", issue_date=date(2026, 11, 30), due_date=date(2026, 12, 30), total="10.00")  # not December
    issued(sf, "dec-1", total="120.00")  # ACME-2026-000002, issued 2026-12-01
    issued(sf, "dec-2", total="40.00", customer="c2", issue_date=date(2026, 12, 31), due_date=date(2027, 1, 30))
    draft(sf, "dec-draft", total="99.00")  # never exported
    issued(sf, "dec-void", total="5.00")  # ACME-2026-000004
    invoices.void(sf, TENANT, "dec-void", "duplicate")
    create_credit_note(
        sf,
        TENANT,
        "dec-1",
        "goodwill",
        [{"description": "goodwill", "amount": "20.00"}],
        issue_date=date(2026, 12, 10),
        today=date(2026, 12, 10),  # the test's timeline
    )
    record_payment(
        sf, TENANT, amount="50.00", currency="EUR", paid_on=date(2026, 12, 5), reference="b1", invoice_id="dec-1"
    )
    record_payment(
        sf, TENANT, amount="10.00", currency="EUR", paid_on=date(2026, 12, 1), reference="b0", invoice_id="nov"
    )
    record_payment(
        sf, TENANT, amount="1.00", currency="EUR", paid_on=date(2027, 1, 2), reference="b2", invoice_id="dec-2"
    )
    draft(sf, "other-tenant", tenant="globex-t")
    invoices.finalize(sf, "globex-t", "other-tenant", "ACME", "INV")

    data = exports.read_month(sf, TENANT, "2026-12")
    files = exports.to_csv(data)
    voided_at = invoices.get(sf, TENANT, "dec-void").voided_at.isoformat()
    # dec-1: 120.00 - 20.00 credited - 50.00 paid = 50.00 due; dec-2 paid 1.00 in January: 39.00 due
    assert files["invoices.csv"].split("\r\n")[1:] == [
        "ACME-2026-000002,dec-1,partially_paid,c1,2026-11,2026-12-01,2026-12-31,EUR,120.00,120.00,20.00,50.00,50.00,,",
        "ACME-2026-000003,dec-2,partially_paid,c2,2026-11,2026-12-31,2027-01-30,EUR,40.00,40.00,0.00,1.00,39.00,,",
        f"ACME-2026-000004,dec-void,voided,c1,2026-11,2026-12-01,2026-12-31,EUR,5.00,5.00,0.00,0.00,0.00,{voided_at},"
        "duplicate",
        "",
    ]
    assert files["credit_notes.csv"].split("\r\n")[1:-1] == [
        f"ACME-CN-2026-000001,{data.credit_notes[0].credit_note_id},ACME-2026-000002,dec-1,c1,2026-12-10,EUR,"
        "20.00,20.00,0.00,applied,goodwill,,"
    ]
    assert files["payments.csv"].split("\r\n")[1:-1] == [  # by date paid: b0 (for November's invoice) first
        "b0,2026-12-01,c1,EUR,10.00,ACME-2026-000001,nov,10.00",
        "b1,2026-12-05,c1,EUR,50.00,ACME-2026-000002,dec-1,50.00",
    ]
    assert [
        i["number"] for i in json.loads(exports.to_json(exports.read_month(sf, TENANT, "2026-11")))["invoices"]
    ] == ["ACME-2026-000001"]
