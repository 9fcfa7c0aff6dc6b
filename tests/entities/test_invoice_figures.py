"""The monthly finance figures (entities/invoice_figures.py), by hand. Today is 3 December 2026.

The invoices (minor units):
- A: EUR, issued 5 Nov, asks 100.00, a credit note refunds 25.00; usage api_calls 42.57, storage 123.30;
- B: EUR, issued 20 Nov, paid, asks 50.00; usage api_calls 10.00;
- C: USD, issued 1 Dec, asks 1,324.07; usage storage_gb_hours 234.56;
- F: EUR, issued 31 Oct, due 30 Nov, overdue, asks 70.00, all still due;
- G: EUR, issued 1 Oct, due 10 Nov, overdue, asks 9.00, 3.00 still due;
- D (a draft) and E (voided) count nowhere, whatever they hold.
"""

from __future__ import annotations

from datetime import date

import pytest

from meterstream.entities.invoice_figures import (
    Collection,
    InvoiceFacts,
    MonthAmount,
    Overdue,
    UsageAmount,
    add_months,
    gross_revenue,
    invoice_collection,
    invoiced_usage,
    month_window,
    overdue_balance,
)

TODAY = date(2026, 12, 3)
OCT, NOV, DEC, SEP = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2026, 9, 1)


def facts(invoice_id: str, currency: str, status: str, issued: date, billed: int, *, due: date | None = None,
          amount_due: int | None = None, refunded: int = 0, usage: tuple = ()) -> InvoiceFacts:  # fmt: skip
    return InvoiceFacts(invoice_id, "c1", currency, status, issued, due or issued, billed,
                        billed if amount_due is None else amount_due, refunded, usage)  # fmt: skip


INVOICES = [
    facts("A", "EUR", "finalized", date(2026, 11, 5), 10000, refunded=2500,
          usage=(("api_calls", 4257), ("storage", 12330))),
    facts("B", "EUR", "paid", date(2026, 11, 20), 5000, amount_due=0, usage=(("api_calls", 1000),)),
    facts("C", "USD", "finalized", date(2026, 12, 1), 132407, usage=(("storage_gb_hours", 23456),)),
    facts("F", "EUR", "overdue", date(2026, 10, 31), 7000, due=date(2026, 11, 30)),
    facts("G", "EUR", "overdue", date(2026, 10, 1), 900, due=date(2026, 11, 10), amount_due=300),
    facts("D", "EUR", "draft", date(2026, 11, 2), 99900, usage=(("api_calls", 99900),)),
    facts("E", "EUR", "voided", date(2026, 11, 3), 88800, usage=(("api_calls", 88800),)),
]  # fmt: skip


def test_month_window_is_lagos_months_parameter() -> None:
    assert month_window(TODAY, None) == (None, DEC)
    assert month_window(TODAY, 3) == (OCT, DEC)  # the current month and the two before it
    assert month_window(TODAY, 1) == month_window(TODAY, 0) == month_window(TODAY, -4) == (DEC, DEC)
    assert month_window(date(2027, 1, 31), 2) == (DEC, date(2027, 1, 1))  # across the year
    assert add_months(date(2026, 1, 1), -13) == date(2024, 12, 1)


def test_gross_revenue_is_what_issued_invoices_ask_less_refunds() -> None:
    assert gross_revenue(INVOICES, TODAY) == [
        MonthAmount(OCT, "EUR", 7000 + 900, 2),  # F and G
        MonthAmount(NOV, "EUR", 10000 - 2500 + 5000, 2),  # A less its refund, and B
        MonthAmount(DEC, "USD", 132407, 1),
    ]
    assert gross_revenue(INVOICES, TODAY, months=2) == [MonthAmount(NOV, "EUR", 12500, 2),
                                                        MonthAmount(DEC, "USD", 132407, 1)]  # fmt: skip
    assert gross_revenue(INVOICES, TODAY, currency="USD") == [MonthAmount(DEC, "USD", 132407, 1)]
    assert gross_revenue(INVOICES, date(2026, 11, 30)) == gross_revenue(INVOICES, TODAY)[:2]  # nothing after today


def test_invoice_collection_by_payment_status_with_empty_months() -> None:
    assert invoice_collection(INVOICES, TODAY, months=4) == [
        Collection(SEP, None, None, 0, 0),  # a month of the window without invoices
        Collection(OCT, "EUR", "pending", 7900, 2),  # overdue invoices are pending
        Collection(NOV, "EUR", "pending", 10000, 1),  # refunds do not change what A asks for
        Collection(NOV, "EUR", "succeeded", 5000, 1),
        Collection(DEC, "USD", "pending", 132407, 1),
    ]
    # without months: from the first issue month; with a currency: no empty rows
    assert invoice_collection(INVOICES, TODAY)[0] == Collection(OCT, "EUR", "pending", 7900, 2)
    assert invoice_collection(INVOICES, TODAY, months=4, currency="USD") == [Collection(DEC, "USD", "pending",
                                                                                        132407, 1)]  # fmt: skip
    assert invoice_collection([], TODAY) == [Collection(DEC, None, None, 0, 0)]


def test_overdue_balance_by_due_month() -> None:
    assert overdue_balance(INVOICES, TODAY) == [Overdue(NOV, "EUR", 7000 + 300, ("F", "G"))]
    assert overdue_balance(INVOICES, TODAY, currency="USD") == []
    assert overdue_balance(INVOICES, TODAY, months=1) == []  # due in November, not in December


def test_invoiced_usage_by_month_and_meter_newest_first_largest_first() -> None:
    assert invoiced_usage(INVOICES, TODAY) == [
        UsageAmount(DEC, "storage_gb_hours", "USD", 23456),
        UsageAmount(NOV, "storage", "EUR", 12330),
        UsageAmount(NOV, "api_calls", "EUR", 4257 + 1000),  # A and B; not the draft D nor the voided E
    ]
    assert invoiced_usage(INVOICES, TODAY, currency="EUR", months=1) == []


@pytest.mark.parametrize("figure", [gross_revenue, invoice_collection, overdue_balance, invoiced_usage])
def test_drafts_and_voided_invoices_count_nowhere(figure) -> None:  # type: ignore[no-untyped-def]
    only = [f for f in INVOICES if f.status in ("draft", "voided")]
    rows = figure(only, TODAY)
    assert all(getattr(r, "currency", None) is None for r in rows)  # nothing, or invoice_collection's empty month


def test_load_facts_from_the_store(sf) -> None:  # type: ignore[no-untyped-def]
    """On SQLite and PostgreSQL: i1 (120.00, paid, then 20.00 credited and so refunded), i2 (80.00, customer c2),
    a draft, and another tenant's invoice; documents that are not invoices have no usage lines."""
    from invoice_helpers import TENANT, draft, issued

    from meterstream.entities.credit_notes import create_credit_note
    from meterstream.entities.figures import load_facts
    from meterstream.entities.payments import record_payment

    issued(sf, "i1", total="120.00")
    record_payment(sf, TENANT, amount="120.00", currency="EUR", paid_on=date(2026, 12, 2), reference="r1",
                   invoice_id="i1")  # fmt: skip
    create_credit_note(sf, TENANT, "i1", "goodwill", [{"description": "goodwill", "amount": "20.00"}])
    issued(sf, "i2", customer="c2", total="80.00")
    draft(sf, "i3")
    issued(sf, "x1", tenant="other", total="999.00")
    got = {f.invoice_id: (f.customer, f.status, f.billed_minor, f.amount_due_minor, f.refunded_minor, f.usage)
           for f in load_facts(sf, TENANT, usage=True)}  # fmt: skip
    assert got == {"i1": ("c1", "paid", 12000, 0, 2000, ()), "i2": ("c2", "finalized", 8000, 8000, 0, ())}
    assert [f.invoice_id for f in load_facts(sf, TENANT, "c2")] == ["i2"]
    assert gross_revenue(load_facts(sf, TENANT), TODAY) == [MonthAmount(DEC, "EUR", 12000 - 2000 + 8000, 2)]
