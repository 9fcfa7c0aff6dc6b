"""One-off invoices in the entity store (invoice_emitter/one_off_store.py) on SQLite and PostgreSQL: issued with a
gapless number at once, with the lifecycle events; a repeated reference never bills twice; what is refused.
Figures by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from meterstream.entities import invoices, numbering
from meterstream.entities.add_ons import create_add_on
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import put_customer
from meterstream.invoice_emitter.one_off_store import FeeRequest, issue_one_off
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.settings import Settings
from meterstream.webhooks.events import WebhookOutboxRow

T = "acme"
AT = datetime(2026, 12, 4, 10, tzinfo=UTC)
SETTINGS = Settings.model_construct()  # the demo issuer: DEMO-<year>-<seq>, Germany


@pytest.fixture
def store(sf):  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id="c1", name="Kunde GmbH", version=0, country="DE",
                                 currency="EUR", payment_terms_days=30))  # fmt: skip
    create_add_on(sf, T, code="setup", name="Setup fee", amount="150.00", currency="EUR", description="Onboarding")
    create_add_on(sf, T, code="day", name="Consulting day", amount="1000", currency="USD")
    return sf


def _types(sf) -> list[str]:  # type: ignore[no-untyped-def]
    with sf() as s:
        types = s.scalars(select(WebhookOutboxRow.type).where(WebhookOutboxRow.tenant == T)
                          .order_by(WebhookOutboxRow.seq))  # fmt: skip
        return [t for t in types if t.startswith("invoice.")]


def test_issued_and_numbered_at_once(store) -> None:  # type: ignore[no-untyped-def]
    out = issue_one_off(store, SETTINGS, T, "c1", [FeeRequest("setup", units=Decimal(2))], at=AT)
    doc = out.doc
    # 2 x 150.00 = 300.00; 19 % German VAT = 57.00; total 357.00
    assert (out.created, doc.status, doc.number, doc.subtotal, doc.tax_total, doc.total) == (
        True, "finalized", "DEMO-2026-000001", Decimal("300.00"), Decimal("57.00"), Decimal("357.00"))  # fmt: skip
    assert [(x.code, x.description, x.quantity, x.amount) for x in doc.lines] == [
        ("setup", "Setup fee — Onboarding", Decimal("2"), Decimal("300.00"))]  # fmt: skip
    record = invoices.get(store, T, doc.id)
    assert (record.status, record.period, record.total_minor, record.amount_due_minor, record.number) == (
        "finalized", "one-off", 35700, 35700, "DEMO-2026-000001")  # fmt: skip
    assert (record.issue_date.isoformat(), record.due_date.isoformat()) == ("2026-12-04", "2027-01-03")  # +30 days
    assert _types(store) == ["invoice.created", "invoice.finalized"]


def test_a_repeated_reference_answers_the_same_invoice_and_uses_no_number(store) -> None:  # type: ignore[no-untyped-def]
    fees = [FeeRequest("setup"), FeeRequest("day", units=Decimal("0.5"), unit_amount=Decimal("800.00"))]
    first = issue_one_off(store, SETTINGS, T, "c1", fees, reference="PO-77", at=AT)
    again = issue_one_off(store, SETTINGS, T, "c1", fees, reference="PO-77", at=AT.replace(day=5))
    assert (first.created, again.created, again.doc.id, again.doc.number) == (True, False, first.doc.id,
                                                                               first.doc.number)  # fmt: skip
    # 150.00 + 0.5 x 800.00 = 550.00, + 19 % = 104.50: 654.50
    assert first.doc.total == Decimal("654.50")
    assert numbering.last_number(store, T, "DEMO", "INV", 2026) == 1
    with pytest.raises(Conflict) as exc:
        issue_one_off(store, SETTINGS, T, "c1", [FeeRequest("setup", units=Decimal(3))], reference="PO-77", at=AT)
    assert exc.value.field == "reference"
    assert numbering.last_number(store, T, "DEMO", "INV", 2026) == 1


def test_a_zero_invoice_is_paid_at_once(store) -> None:  # type: ignore[no-untyped-def]
    out = issue_one_off(store, SETTINGS, T, "c1", [FeeRequest("setup", unit_amount=Decimal(0))], at=AT)
    assert (out.doc.total, invoices.get(store, T, out.doc.id).status) == (Decimal("0.00"), "paid")
    assert _types(store) == ["invoice.created", "invoice.finalized", "invoice.paid"]


@pytest.mark.parametrize(
    ("customer", "fees", "currency", "error", "field"),
    [
        ("nobody", [FeeRequest("setup")], None, NotFound, None),
        ("c1", [FeeRequest("nothing")], None, NotFound, None),
        # the USD add-on on a EUR invoice needs the amount in euros
        ("c1", [FeeRequest("day")], None, Invalid, "fees[0].unit_amount"),
        ("c1", [FeeRequest("setup", units=Decimal(-1))], None, Invalid, "fees[0].units"),
        ("c1", [FeeRequest("setup")], "XXY", Invalid, "currency"),
    ],
)
def test_refused_and_nothing_written(store, customer, fees, currency, error, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as exc:
        issue_one_off(store, SETTINGS, T, customer, fees, currency=currency, at=AT)
    if field is not None:
        assert exc.value.field == field
    assert numbering.last_number(store, T, "DEMO", "INV", 2026) == 0
    assert _types(store) == []


def test_another_tenant_cannot_bill_the_add_on(store) -> None:  # type: ignore[no-untyped-def]
    put_customer(store, CustomerDoc(tenant="globex", external_id="c1", name="Other", version=0, country="DE",
                                    currency="EUR"))  # fmt: skip
    with pytest.raises(NotFound):
        issue_one_off(store, SETTINGS, "globex", "c1", [FeeRequest("setup")], at=AT)
