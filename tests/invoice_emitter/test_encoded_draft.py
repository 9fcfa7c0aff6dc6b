"""`records.EncodedDraft`: a draft's JSON numbered as it is gives exactly the JSON of the finalized document
(`encode(replace(draft, number=, status="finalized"))`), even when its texts hold the marker's characters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec
import pytest

from meterstream.invoice_emitter.records import EncodedDraft
from meterstream.schemas.invoice import InvoiceDoc, encode


def draft(invoice_id: str, customer: str) -> InvoiceDoc:
    return InvoiceDoc(
        id=invoice_id, status="draft", tenant="t1", customer=customer, period="2026-10",
        period_start=datetime(2026, 10, 1, tzinfo=UTC), period_end=datetime(2026, 11, 1, tzinfo=UTC),
        issue_date=date(2026, 11, 1), due_date=date(2026, 11, 15), currency="EUR", lines=[],
        subtotal=Decimal("12.50"), total=Decimal("12.50"), amount_due=Decimal("12.50"),
        notes=[',"number":null,"status":"draft",'],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("invoice_id", "customer"),
    [("INV-1", "c1"), ('INV-","number":null,"status":"draft",', 'ç"\\x,"number":null'), ("INV-é\u2028", "\x1f")],
)
def test_numbered_json_is_the_finalized_documents(invoice_id: str, customer: str) -> None:
    doc = draft(invoice_id, customer)
    encoded = EncodedDraft(encode(doc))
    assert (encoded.tenant, encoded.id, encoded.customer, encoded.total) == ("t1", invoice_id, customer,
                                                                             Decimal("12.50"))  # fmt: skip
    assert encoded.issue_date == date(2026, 11, 1) and encoded.doc() == doc
    final = msgspec.structs.replace(doc, number="ACME-2026-000007", status="finalized")
    assert encoded.finalized("ACME-2026-000007") == encode(final)


def test_a_numbered_document_is_not_a_draft() -> None:
    numbered = msgspec.structs.replace(draft("INV-1", "c1"), number="ACME-2026-000001", status="finalized")
    with pytest.raises(ValueError, match="not a draft without a number"):
        EncodedDraft(encode(numbered))
