"""Payments (entities/payments.py) on SQLite and PostgreSQL: partial and full, reconciled per customer oldest
due first, idempotent on the reference (also when sent concurrently), overpayments and other currencies
refused naming the field; amounts by hand."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from invoice_helpers import TENANT, draft, issued

from meterstream.entities import invoices
from meterstream.entities.common import Conflict, Invalid
from meterstream.entities.payments import allocate, get_payment, list_payments, record_payment

DAY = date(2026, 12, 5)


def pay(sf, amount: str, reference: str, **kwargs):
    kwargs.setdefault("currency", "EUR")
    kwargs.setdefault("paid_on", DAY)
    return record_payment(sf, TENANT, amount=amount, reference=reference, **kwargs)


def test_partial_then_full_payment(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    pay(sf, "20.00", "bank-1", invoice_id="inv-1")
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.status, inv.paid, inv.amount_due) == ("partially_paid", Decimal("20.00"), Decimal("100.00"))
    p = pay(sf, "100.00", "bank-2", invoice_id="inv-1")
    assert (p.customer, p.amount, [(a.invoice_id, a.number, a.amount_minor) for a in p.allocations]) == (
        "c1", Decimal("100.00"), [("inv-1", "ACME-2026-000001", 10000)],
    )  # fmt: skip
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.status, inv.paid_minor, inv.amount_due_minor) == ("paid", 12000, 0)


def test_an_overpayment_is_refused_and_nothing_is_recorded(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    with pytest.raises(Invalid) as exc:
        pay(sf, "120.01", "bank-1", invoice_id="inv-1")
    assert exc.value.field == "amount" and "120.00" in str(exc.value)
    assert list_payments(sf, TENANT) == []
    pay(sf, "120.00", "bank-2", invoice_id="inv-1")
    with pytest.raises(Invalid) as paid:
        pay(sf, "0.01", "bank-3", invoice_id="inv-1")  # nothing is due any more
    assert paid.value.field == "amount"


def test_another_currency_is_refused(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    with pytest.raises(Invalid) as exc:
        pay(sf, "10.00", "bank-1", invoice_id="inv-1", currency="USD")
    assert exc.value.field == "currency"
    with pytest.raises(Invalid) as by_customer:
        pay(sf, "10.00", "bank-1", customer="c1", currency="USD")
    assert by_customer.value.field == "currency"
    assert invoices.get(sf, TENANT, "inv-1").paid_minor == 0


def test_the_same_reference_counts_once(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    a = pay(sf, "20.00", "bank-1", invoice_id="inv-1")
    b = pay(sf, "20.00", "bank-1", invoice_id="inv-1")  # a retried call
    assert a == b
    assert invoices.get(sf, TENANT, "inv-1").paid_minor == 2000
    with pytest.raises(Conflict) as exc:
        pay(sf, "21.00", "bank-1", invoice_id="inv-1")
    assert exc.value.field == "reference"
    assert get_payment(sf, TENANT, "bank-1").amount_minor == 2000


def test_concurrent_calls_with_one_reference_count_once(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    barrier = threading.Barrier(5)
    errors: list[Exception] = []

    def run() -> None:
        barrier.wait()
        try:
            pay(sf, "30.00", "bank-1", invoice_id="inv-1")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert invoices.get(sf, TENANT, "inv-1").paid_minor == 3000
    assert len(list_payments(sf, TENANT)) == 1


def test_a_customer_payment_goes_to_the_oldest_due_first(sf) -> None:
    issued(sf, "jan", total="50.00", due_date=date(2027, 1, 31))
    issued(sf, "dec", total="100.00", due_date=date(2026, 12, 31))
    issued(sf, "other", total="10.00", customer="c2")
    p = pay(sf, "120.00", "bank-1", customer="c1")
    # 100.00 settles December's invoice, the remaining 20.00 goes to January's (50.00 - 20.00 = 30.00 left)
    assert [(a.invoice_id, a.amount_minor) for a in p.allocations] == [("dec", 10000), ("jan", 2000)]
    assert (p.invoice_id, p.customer) == (None, "c1")
    dec, jan = invoices.get(sf, TENANT, "dec"), invoices.get(sf, TENANT, "jan")
    assert (dec.status, dec.amount_due_minor, jan.status, jan.amount_due_minor) == ("paid", 0, "partially_paid", 3000)
    assert invoices.get(sf, TENANT, "other").paid_minor == 0
    with pytest.raises(Invalid) as exc:
        pay(sf, "30.01", "bank-2", customer="c1")  # 30.00 is all c1 still owes
    assert exc.value.field == "amount"


def test_only_issued_invoices_take_payments(sf) -> None:
    draft(sf, "d")
    issued(sf, "v")
    invoices.void(sf, TENANT, "v", "wrong customer")
    for invoice_id in ("d", "v"):
        with pytest.raises(Conflict) as exc:
            pay(sf, "1.00", f"r-{invoice_id}", invoice_id=invoice_id)
        assert exc.value.field == "status"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": "0.00"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": 5.0}, "amount"),
        ({"amount": "5.001"}, "amount"),
        ({"currency": "EURO"}, "currency"),
        ({"reference": ""}, "reference"),
        ({"invoice_id": None}, "invoice_id"),  # neither an invoice nor a customer
        ({"customer": "c2"}, "customer"),  # the invoice is c1's
    ],
)
def test_bad_payments_name_the_field(sf, kwargs, field) -> None:
    issued(sf, "inv-1")
    args = {"amount": "5.00", "currency": "EUR", "paid_on": DAY, "reference": "r", "invoice_id": "inv-1", **kwargs}
    with pytest.raises(Invalid) as exc:
        record_payment(sf, TENANT, **args)
    assert exc.value.field == field
    assert list_payments(sf, TENANT) == []


def test_yen_have_no_minor_unit(sf) -> None:
    issued(sf, "inv-1", total="1500", currency="JPY")
    with pytest.raises(Invalid):
        pay(sf, "1000.5", "r1", invoice_id="inv-1", currency="JPY")
    pay(sf, "1000", "r2", invoice_id="inv-1", currency="JPY")
    assert invoices.get(sf, TENANT, "inv-1").amount_due == Decimal("500")


def test_allocation_is_in_order_up_to_each_due() -> None:
    assert allocate(120, [("a", 100), ("b", 50), ("c", 10)]) == [("a", 100), ("b", 20)]
    assert allocate(100, [("a", 0), ("b", 100)]) == [("b", 100)]
