"""The invoice list's filters (entities/invoice_lists.py `InvoiceFilter`) on SQLite and PostgreSQL: currency, issue
date range, amount asked for, one-off or not, and the search text (id, number, customer id, name, email; LIKE's
own characters taken literally). Expected ids are read off the invoices stored here, by hand."""

from __future__ import annotations

from datetime import date

import pytest
from invoice_helpers import TENANT, draft, issued

from meterstream.entities.customers import put_customer
from meterstream.entities.invoice_lists import InvoiceFilter, invoice_page
from meterstream.schemas.entities import CustomerDoc


@pytest.fixture
def store(sf):  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=TENANT, external_id="c1", name="Kerry Brew", version=0,
                                 email="ap@kerry.example"))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant=TENANT, external_id="c_2", name="Globex 100%", version=0))
    issued(sf, "inv-a", customer="c1", total="120.00", issue_date=date(2026, 11, 1))  # ACME-2026-000001
    issued(sf, "inv-b", customer="c_2", total="80.00", currency="USD", issue_date=date(2026, 11, 15))  # ...000002
    issued(sf, "inv-c", customer="c1", total="15.50", issue_date=date(2026, 12, 1), period="one-off")  # ...000003
    draft(sf, "inv-d", customer="c_2", total="999.99", issue_date=date(2026, 12, 1))
    issued(sf, "inv-e", customer="c1", total="5.00", tenant="other", issue_date=date(2026, 11, 1))  # another tenant
    return sf


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        (InvoiceFilter(), ["inv-a", "inv-b", "inv-c", "inv-d"]),
        (InvoiceFilter(currency="usd"), ["inv-b"]),
        (InvoiceFilter(issued_from=date(2026, 11, 15)), ["inv-b", "inv-c", "inv-d"]),
        (InvoiceFilter(issued_to=date(2026, 11, 15)), ["inv-a", "inv-b"]),  # both ends inclusive
        (InvoiceFilter(issued_from=date(2026, 11, 2), issued_to=date(2026, 11, 30)), ["inv-b"]),
        (InvoiceFilter(billed_from=8000, billed_to=12000), ["inv-a", "inv-b"]),  # 120.00 and 80.00, inclusive
        (InvoiceFilter(billed_from=100000), []),
        (InvoiceFilter(one_off=True), ["inv-c"]),
        (InvoiceFilter(one_off=False), ["inv-a", "inv-b", "inv-d"]),
        (InvoiceFilter(search="kerry"), ["inv-a", "inv-c"]),  # the customer's name, case aside
        (InvoiceFilter(search="AP@KERRY"), ["inv-a", "inv-c"]),  # its email
        (InvoiceFilter(search="2026-000002"), ["inv-b"]),  # the number
        (InvoiceFilter(search="INV-D"), ["inv-d"]),  # the id
        (InvoiceFilter(search="c_"), ["inv-b", "inv-d"]),  # "_" is not LIKE's any-character: only c_2 has it
        (InvoiceFilter(search="100%"), ["inv-b", "inv-d"]),  # "%" literally: Globex 100%
        (InvoiceFilter(search="nothing like it"), []),
    ],
)
def test_filters(store, where: InvoiceFilter, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert [x.invoice_id for x in invoice_page(store, TENANT, where=where).items] == ids


def test_filters_page_with_the_cursor(store) -> None:  # type: ignore[no-untyped-def]
    where = InvoiceFilter(one_off=False)
    first = invoice_page(store, TENANT, where=where, limit=2)
    rest = invoice_page(store, TENANT, where=where, limit=2, cursor=first.next_cursor)
    assert ([x.invoice_id for x in first.items], [x.invoice_id for x in rest.items], rest.next_cursor) == (
        ["inv-a", "inv-b"], ["inv-d"], None)  # fmt: skip
