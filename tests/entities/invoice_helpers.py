"""Shared by the invoice lifecycle tests (test_invoices, test_numbering, test_credit_notes, test_payments,
test_exports): a draft with hand-chosen amounts and dates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from meterstream.entities import invoices

TENANT = "acme-t"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def draft(
    sf,
    invoice_id: str,
    *,
    customer: str = "c1",
    total: str = "120.00",
    currency: str = "EUR",
    issue_date: date = date(2026, 12, 1),
    due_date: date = date(2026, 12, 31),
    amount_due: str | None = None,
    tenant: str = TENANT,
    period: str = "2026-11",
) -> invoices.Invoice:
    doc = {"id": invoice_id, "number": None, "status": "draft", "customer": customer, "total": total}
    return invoices.upsert_draft(
        sf,
        tenant=tenant,
        invoice_id=invoice_id,
        customer=customer,
        period=period,
        currency=currency,
        total=total,
        issue_date=issue_date,
        due_date=due_date,
        document=json.dumps(doc).encode(),
        amount_due=amount_due,
    )


def issued(sf, invoice_id: str, **kwargs) -> invoices.Invoice:
    """A draft finalized by issuer ACME in series INV."""
    draft(sf, invoice_id, **kwargs)
    return invoices.finalize(sf, kwargs.get("tenant", TENANT), invoice_id, "ACME", "INV", AT)
