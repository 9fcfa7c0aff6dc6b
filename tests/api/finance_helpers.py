"""Invoices in the store for the finance API, CLI and Lago tests: a version 2 document with hand-checked figures
(tests/documents/invoice_samples.py `sales_tax_doc`: 1000.00 + 234.56 = 1234.56, 7.25 % sales tax per line
72.50 + 17.01 = 89.51, total 1324.07), stored as a draft and finalized by issuer ACME (ACME-2026-00000n)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "documents"))

from invoice_samples import sales_tax_doc

from meterstream.entities import invoices
from meterstream.schemas.invoice import InvoiceDoc, encode

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TOTAL = "1324.07"


def v2_draft(tenant: str, invoice_id: str, customer: str) -> InvoiceDoc:
    return msgspec.structs.replace(sales_tax_doc(status="draft"), id=invoice_id, tenant=tenant, customer=customer)


def store_invoice(
    sf,  # type: ignore[no-untyped-def]
    tenant: str,
    invoice_id: str,
    customer: str = "cust-1",
    *,
    finalize: bool = True,
    issue_date: date = date(2026, 12, 1),
    due_date: date = date(2026, 12, 31),
) -> invoices.Invoice:
    """The draft of `v2_draft` in the store, finalized unless `finalize=False`."""
    doc = msgspec.structs.replace(v2_draft(tenant, invoice_id, customer), issue_date=issue_date, due_date=due_date)
    record = invoices.upsert_draft(
        sf, tenant=tenant, invoice_id=invoice_id, customer=customer, period=doc.period, currency=doc.currency,
        total=doc.total, amount_due=doc.amount_due, issue_date=issue_date, due_date=due_date, document=encode(doc),
    )  # fmt: skip
    if not finalize:
        return record
    return invoices.finalize(sf, tenant, invoice_id, "ACME", "INV", AT)
