"""Lifecycle events (webhooks/events.py) on SQLite and PostgreSQL: every invoice transition, credit note and
payment appends its event in the same transaction; a rolled-back transition leaves none. Expected payloads are
written out by hand from the amounts the tests choose."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import msgspec
import orjson
import pytest
from invoice_helpers import AT, TENANT, draft, issued

from meterstream.entities import invoices
from meterstream.entities.credit_notes import create_credit_note
from meterstream.entities.payments import record_payment
from meterstream.webhooks.outbox import events


def bodies(sf) -> list[dict]:
    return [orjson.loads(e.body) for e in events(sf, TENANT)]


def test_an_invoice_life_in_events(sf) -> None:
    draft(sf, "inv-1", total="120.00")
    draft(sf, "inv-1", total="130.00")  # replaced as usage arrives: no event
    invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    record_payment(sf, TENANT, amount="30.00", currency="EUR", paid_on=date(2026, 12, 10), reference="bank-1",
                   invoice_id="inv-1")  # fmt: skip
    invoices.mark_overdue(sf, date(2027, 1, 5))  # due 2026-12-31, 100.00 still due
    create_credit_note(sf, TENANT, "inv-1", "discount agreed", [{"description": "goodwill", "amount": "20.00"}],
                       issue_date=date(2027, 1, 6), today=date(2027, 1, 6))  # fmt: skip
    record_payment(sf, TENANT, amount="80.00", currency="EUR", paid_on=date(2027, 1, 7), reference="bank-2",
                   customer="c1")  # fmt: skip

    got = bodies(sf)
    assert [b["type"] for b in got] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.partially_paid",
        "payment.recorded",
        "invoice.overdue",
        "credit_note.created",  # 20.00 of 100.00 due: still overdue, no status event
        "invoice.paid",
        "payment.recorded",
    ]
    stored = events(sf, TENANT)
    assert [e.key for e in stored] == ["acme-t/inv-1"] * 3 + ["acme-t/c1"] + ["acme-t/inv-1"] * 3 + ["acme-t/c1"]
    assert all(b["id"] == e.event_id and b["id"].startswith("msg_") for b, e in zip(got, stored, strict=True))
    assert all(b["timestamp"].endswith("Z") for b in got)
    assert len({b["id"] for b in got}) == 8

    created, finalized, partial, pay1, overdue, note, paid, pay2 = (b["data"] for b in got)
    assert (created["status"], created["number"], created["total"], created["total_minor"], created["version"]) == (
        "draft", None, "120.00", 12000, 1,
    )  # fmt: skip
    assert finalized["number"] == "ACME-2026-000001" and finalized["previous_status"] == "draft"
    assert (finalized["total"], finalized["amount_due"], finalized["issue_date"], finalized["due_date"]) == (
        "130.00", "130.00", "2026-12-01", "2026-12-31",
    )  # fmt: skip
    assert finalized["finalized_at"] == "2026-12-01T09:00:00.000000Z"
    assert (partial["status"], partial["paid"], partial["amount_due"], partial["amount_due_minor"]) == (
        "partially_paid", "30.00", "100.00", 10000,
    )  # fmt: skip
    assert pay1 == {"object": "payment", "tenant": TENANT, "reference": "bank-1", "customer": "c1",
                    "invoice_id": "inv-1", "currency": "EUR", "amount": "30.00", "amount_minor": 3000,
                    "paid_on": "2026-12-10", "allocations": [{"invoice_id": "inv-1", "number": "ACME-2026-000001",
                                                              "amount": "30.00", "amount_minor": 3000}]}  # fmt: skip
    assert (overdue["status"], overdue["previous_status"]) == ("overdue", "partially_paid")
    assert (note["number"], note["invoice_number"], note["total"], note["credit"], note["refund"]) == (
        "ACME-CN-2027-000001", "ACME-2026-000001", "20.00", "20.00", "0.00",  # CN year: its issue date
    )  # fmt: skip
    assert note["lines"] == [{"description": "goodwill", "amount": "20.00", "amount_minor": 2000}]
    assert (paid["status"], paid["previous_status"], paid["paid"], paid["credited"], paid["amount_due"]) == (
        "paid", "overdue", "110.00", "20.00", "0.00",
    )  # fmt: skip
    assert pay2["invoice_id"] is None and pay2["allocations"][0]["amount_minor"] == 8000
    versions = [b["data"]["version"] for b in got if b["data"]["object"] == "invoice"]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)  # an invoice's events in order


def test_void_and_a_zero_invoice(sf) -> None:
    issued(sf, "inv-2", total="50.00")
    invoices.void(sf, TENANT, "inv-2", "issued twice by mistake")
    issued(sf, "inv-0", total="0.00")  # nothing to pay: paid at once
    got = [(b["type"], b["data"]["invoice_id"], b["data"]["status"]) for b in bodies(sf)]
    assert got == [
        ("invoice.created", "inv-2", "draft"),
        ("invoice.finalized", "inv-2", "finalized"),
        ("invoice.voided", "inv-2", "voided"),
        ("invoice.created", "inv-0", "draft"),
        ("invoice.finalized", "inv-0", "finalized"),
        ("invoice.paid", "inv-0", "paid"),
    ]
    voided = bodies(sf)[2]["data"]
    assert (voided["void_reason"], voided["previous_status"], voided["amount_due"]) == (
        "issued twice by mistake", "finalized", "0.00",
    )  # fmt: skip


def test_a_rolled_back_finalize_leaves_no_event_and_no_number(sf) -> None:
    draft(sf, "inv-1")
    with pytest.raises(RuntimeError, match="the close failed after finalizing"), sf.begin() as s:
        invoices.finalize_in(s, TENANT, "inv-1", "ACME", "INV", AT)
        raise RuntimeError("the close failed after finalizing")
    assert [b["type"] for b in bodies(sf)] == ["invoice.created"]
    assert invoices.get(sf, TENANT, "inv-1").status == "draft"
    again = invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", datetime(2026, 12, 2, tzinfo=UTC))
    assert again.number == "ACME-2026-000001"  # the rolled-back number was not used
    assert [b["type"] for b in bodies(sf)] == ["invoice.created", "invoice.finalized"]


def test_finalizing_twice_is_one_event(sf) -> None:
    issued(sf, "inv-1")
    invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    assert [b["type"] for b in bodies(sf)] == ["invoice.created", "invoice.finalized"]


def test_every_wallet_transaction_is_an_event_with_what_wrote_it(sf) -> None:  # type: ignore[no-untyped-def]
    """A wallet at rate 0.5 EUR per credit: 40 paid credits at creation (20.00 EUR), 8 granted by hand (4.00), an
    automatic threshold top-up of 10 paid (5.00), an interval top-up of 6 granted (3.00) on 15 November, 2 voided
    (1.00): five events, in order, each with the credits, the money (decimal and cents) and its source; a
    repeated write (the same reference, the same anniversary) is no new event."""
    from decimal import Decimal

    from meterstream.entities.customers import put_customer
    from meterstream.entities.wallets import (
        TopUp,
        WalletSpec,
        create_wallet,
        interval_top_ups,
        recurring_top_up,
        top_up,
        update_wallet,
        void_credits,
    )
    from meterstream.schemas.entities import CustomerDoc

    put_customer(sf, CustomerDoc(tenant=TENANT, external_id="w1", name="w1", version=0, currency="EUR"))
    rule = {"trigger": "threshold", "threshold_credits": "5", "paid_credits": "10"}
    wallet, _ = create_wallet(sf, WalletSpec(TENANT, "w1", rate_amount=Decimal("0.5"), rules=[rule]),
                              [TopUp("paid", "40")], at=datetime(2026, 10, 15, 9, tzinfo=UTC))  # fmt: skip
    top_up(sf, TENANT, wallet.id, TopUp("granted", "8", reference="gift-1"))
    top_up(sf, TENANT, wallet.id, TopUp("granted", "8", reference="gift-1"))  # the same write again: no event
    assert recurring_top_up(sf, TENANT, wallet.id, wallet.rules[0].id, "req-1", "10", None) == "written"
    interval = {"trigger": "interval", "interval": "monthly", "granted_credits": "6"}
    update_wallet(sf, TENANT, wallet.id, rules=[interval], at=datetime(2026, 10, 15, 10, tzinfo=UTC))
    assert interval_top_ups(sf, datetime(2026, 11, 20, tzinfo=UTC)) == {"written": 1, "wallets": 1}
    assert interval_top_ups(sf, datetime(2026, 11, 21, tzinfo=UTC)) == {"repeated": 1}
    void_credits(sf, TENANT, wallet.id, "2")

    got = [b for b in bodies(sf) if b["type"] == "wallet_transaction.created"]
    assert [(d["kind"], d["direction"], d["source"], d["credits"], d["amount"], d["amount_minor"], d["status"])
            for d in (b["data"] for b in got)] == [
        ("paid", "inbound", "manual", "40", "20.00", 2000, "settled"),
        ("granted", "inbound", "manual", "8", "4.00", 400, "settled"),
        ("paid", "inbound", "threshold", "10", "5.00", 500, "settled"),
        ("granted", "inbound", "interval", "6", "3.00", 300, "settled"),
        ("void", "outbound", "manual", "2", "1.00", 100, "settled"),
    ]  # fmt: skip
    first = got[0]["data"]
    assert (first["object"], first["wallet_id"], first["customer"], first["currency"]) == (
        "wallet_transaction", wallet.id, "w1", "EUR")  # fmt: skip
    assert got[3]["data"]["reference"].endswith(":2026-11-15:granted")
    assert {e.key for e in events(sf, TENANT) if e.type == "wallet_transaction.created"} == {f"{TENANT}/w1"}


def test_customer_changes_in_events(sf) -> None:
    """Every stored change of a customer (the Lago/own upsert, OpenMeter's create and replace, the delete) appends
    its event in the same transaction; a write that changes nothing appends none."""
    from meterstream.entities.customers import CustomerCreate, CustomerRepository, delete_customer, put_customer
    from meterstream.schemas.entities import CustomerDoc

    doc = CustomerDoc(tenant=TENANT, external_id="c7", name="Globex", version=0, currency="EUR",
                      metadata={"crm": "42"})  # fmt: skip
    put_customer(sf, doc)
    put_customer(sf, doc)  # the same again: nothing written, no event
    put_customer(sf, msgspec.structs.replace(doc, name="Globex SA", email="billing@globex.example"))
    made = CustomerRepository(sf).create(TENANT, CustomerCreate(name="Initech", key="c8"))
    CustomerRepository(sf).replace(TENANT, "c8", CustomerCreate(name="Initech LLC", key="c8"), subject_keys=None)
    delete_customer(sf, TENANT, "c7")

    got = bodies(sf)
    assert [(b["type"], b["data"]["customer"], b["data"]["name"], b["data"]["version"]) for b in got] == [
        ("customer.created", "c7", "Globex", 1), ("customer.updated", "c7", "Globex SA", 2),
        ("customer.created", "c8", "Initech", 1), ("customer.updated", "c8", "Initech LLC", 2),
        ("customer.deleted", "c7", "Globex SA", 3)]  # fmt: skip
    first, second, *_, deleted = (b["data"] for b in got)
    assert (first["object"], first["tenant"], first["currency"], first["metadata"], first["email"]) == (
        "customer", TENANT, "EUR", {"crm": "42"}, None)  # fmt: skip
    assert second["email"] == "billing@globex.example" and deleted["deleted"] is True
    assert [e.key for e in events(sf, TENANT)] == [f"{TENANT}/c7"] * 2 + [f"{TENANT}/c8"] * 2 + [f"{TENANT}/c7"]
    assert made.key == "c8"


def test_a_pending_top_up_settled_is_an_event(sf) -> None:
    """A wallet opened with 30 paid credits pending payment (at the default rate 1: 30.00 EUR): created as pending;
    the payment arrives: `wallet_transaction.settled`, once (settling again is a no-op), and Lago's endpoints get it
    as `wallet_transaction.updated` (webhooks/events.py LAGO_TYPES)."""
    from meterstream.entities.customers import put_customer
    from meterstream.entities.wallets import TopUp, WalletSpec, create_wallet, settle_transaction
    from meterstream.schemas.entities import CustomerDoc
    from meterstream.webhooks.events import LAGO_TYPES, WALLET_TRANSACTION_SETTLED

    put_customer(sf, CustomerDoc(tenant=TENANT, external_id="c1", name="C1", version=0, currency="EUR"))
    start = datetime(2026, 9, 1, tzinfo=UTC)
    w, (pending,) = create_wallet(sf, WalletSpec(TENANT, "c1"), [TopUp("paid", "30", status="pending")], at=start)
    settle_transaction(sf, TENANT, w.id, pending.id, at=start + timedelta(days=2))
    settle_transaction(sf, TENANT, w.id, pending.id, at=start + timedelta(days=3))
    got = [b for b in bodies(sf) if b["type"].startswith("wallet_transaction.")]
    assert [(b["type"], b["data"]["status"], b["data"]["amount"], b["data"]["settled_at"]) for b in got] == [
        ("wallet_transaction.created", "pending", "30.00", None),
        ("wallet_transaction.settled", "settled", "30.00", "2026-09-03T00:00:00.000000Z")]  # fmt: skip
    assert got[1]["data"]["transaction_id"] == pending.id
    assert LAGO_TYPES[WALLET_TRANSACTION_SETTLED] == ("wallet_transaction.updated", "wallet_transaction")
