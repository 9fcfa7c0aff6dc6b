"""The invoice lifecycle (entities/invoices.py) on SQLite and PostgreSQL: drafts replaced as usage arrives,
finalized invoices immutable, void with a reason, overdue past the due date, every refused transition a
Conflict naming `status`; bad input an Invalid naming the field; migration 0006 down and up."""

from __future__ import annotations

import json
import threading
from datetime import date
from decimal import Decimal

import pytest
from invoice_helpers import AT, TENANT, draft, issued
from sqlalchemy import inspect

from meterstream.entities import invoices
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.payments import record_payment

MY_TABLES = ("invoices", "invoice_numbers", "credit_notes", "payments")


def test_the_migration_matches_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.credit_notes
    import meterstream.entities.payments  # noqa: F401 - registers the models
    from meterstream.entities.db import Base

    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if any(f"'{t}'" in repr(d) or f"table={t}" in repr(d) for t in MY_TABLES)] == []


def test_down_to_0005_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    issued(sf, "inv-1")
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    names = set(inspect(engine).get_table_names())
    assert not names & set(MY_TABLES)
    assert "finalized_periods" in names  # 0005's table stays
    migrate(engine=engine)
    assert invoices.list_invoices(sf, TENANT) == []  # back, empty
    assert issued(sf, "inv-1").number == "ACME-2026-000001"
    engine.dispose()


def test_a_draft_is_replaced_as_usage_arrives(sf) -> None:
    first = draft(sf, "inv-1", total="10.00")
    assert (first.status, first.total, first.amount_due, first.number, first.version) == (
        "draft", Decimal("10.00"), Decimal("10.00"), None, 1,
    )  # fmt: skip
    second = draft(sf, "inv-1", total="12.50")
    assert (second.total_minor, second.amount_due_minor, second.version) == (1250, 1250, 2)
    assert json.loads(invoices.get(sf, TENANT, "inv-1").document)["total"] == "12.50"
    assert len(invoices.list_invoices(sf, TENANT)) == 1


def test_concurrent_first_upserts_of_one_draft_all_succeed(sf) -> None:
    barrier = threading.Barrier(5)
    errors: list[Exception] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            draft(sf, "inv-1", total=f"{i}.00")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    [inv] = invoices.list_invoices(sf, TENANT)
    assert inv.version == 5 and inv.total_minor in {0, 100, 200, 300, 400}


def test_draft_and_finalize_in_one_transaction(sf) -> None:
    """The close's pattern: the last draft and its finalization commit together, or neither does."""
    fields = dict(
        tenant=TENANT, invoice_id="inv-1", customer="c1", period="2026-11", currency="EUR", total="7.00",
        issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31), document=b'{"number": null}',
    )  # fmt: skip
    with sf() as s:
        invoices.upsert_draft_in(s, **fields)
        assert invoices.finalize_in(s, TENANT, "inv-1", "ACME", "INV", AT).number == "ACME-2026-000001"
        s.rollback()
    with pytest.raises(NotFound):
        invoices.get(sf, TENANT, "inv-1")
    with sf.begin() as s:
        invoices.upsert_draft_in(s, **fields)
        invoices.finalize_in(s, TENANT, "inv-1", "ACME", "INV", AT)
    inv = invoices.get(sf, TENANT, "inv-1")
    assert (inv.status, inv.number, inv.total_minor, json.loads(inv.document)) == (
        "finalized", "ACME-2026-000001", 700, {"number": "ACME-2026-000001", "status": "finalized"},
    )  # fmt: skip


def test_a_draft_keeps_its_customer_and_currency(sf) -> None:
    draft(sf, "inv-1")
    for kwargs, field in (({"customer": "c2"}, "customer"), ({"currency": "USD"}, "currency")):
        with pytest.raises(Conflict) as exc:
            draft(sf, "inv-1", **kwargs)
        assert exc.value.field == field


def test_a_finalized_invoice_is_never_changed(sf) -> None:
    inv = issued(sf, "inv-1")
    assert (inv.status, inv.number, inv.finalized_at) == ("finalized", "ACME-2026-000001", AT)
    assert json.loads(inv.document)["number"] == "ACME-2026-000001"
    assert json.loads(inv.document)["status"] == "finalized"
    with pytest.raises(Conflict) as exc:
        draft(sf, "inv-1", total="99.00")
    assert exc.value.field == "status"
    assert invoices.get(sf, TENANT, "inv-1").total == Decimal("120.00")


def test_a_zero_invoice_is_paid_at_finalization(sf) -> None:
    inv = issued(sf, "inv-0", total="0.00")
    assert (inv.status, inv.number, inv.amount_due_minor) == ("paid", "ACME-2026-000001", 0)


def test_prepaid_credits_lower_the_amount_due(sf) -> None:
    inv = issued(sf, "inv-1", total="120.00", amount_due="100.00")
    assert (inv.total_minor, inv.billed_minor, inv.amount_due_minor) == (12000, 10000, 10000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"total": 1.5}, "total"),  # a float
        ({"total": "1.005"}, "total"),  # EUR has 2 decimals
        ({"total": "-1.00"}, "total"),
        ({"total": "abc"}, "total"),
        ({"currency": "JPY", "total": "100.5"}, "total"),
        ({"currency": "XYZ"}, "currency"),
        ({"amount_due": "120.01"}, "amount_due"),  # more than the total
        ({"due_date": date(2026, 11, 30)}, "due_date"),  # before the issue date
        ({"customer": ""}, "customer"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(sf, kwargs, field) -> None:
    with pytest.raises(Invalid) as exc:
        draft(sf, "inv-1", **kwargs)
    assert exc.value.field == field
    assert invoices.list_invoices(sf, TENANT) == []


def test_a_document_must_be_json(sf) -> None:
    with pytest.raises(Invalid) as exc:
        invoices.upsert_draft(
            sf, tenant=TENANT, invoice_id="i", customer="c", period="2026-11", currency="EUR", total="1.00",
            issue_date=date(2026, 12, 1), due_date=date(2026, 12, 1), document=b"<html>",
        )  # fmt: skip
    assert exc.value.field == "document"


def test_void_with_a_reason_only_from_finalized(sf) -> None:
    draft(sf, "d")
    with pytest.raises(Conflict) as exc:
        invoices.void(sf, TENANT, "d", "mistake")
    assert exc.value.field == "status"
    issued(sf, "inv-1")
    with pytest.raises(Invalid) as bad:
        invoices.void(sf, TENANT, "inv-1", "")
    assert bad.value.field == "reason"
    voided = invoices.void(sf, TENANT, "inv-1", "issued to the wrong customer")
    assert (voided.status, voided.void_reason, voided.number, voided.amount_due_minor) == (
        "voided", "issued to the wrong customer", "ACME-2026-000001", 0,
    )  # fmt: skip
    with pytest.raises(Conflict) as again:
        invoices.void(sf, TENANT, "inv-1", "twice")
    assert again.value.field == "status"
    with pytest.raises(Conflict):
        draft(sf, "inv-1")  # a voided invoice is not a draft again


def test_a_paid_invoice_is_not_voided(sf) -> None:
    issued(sf, "inv-1")
    record_payment(
        sf, TENANT, amount="10.00", currency="EUR", paid_on=date(2026, 12, 5), reference="r1", invoice_id="inv-1"
    )
    with pytest.raises(Conflict) as exc:
        invoices.void(sf, TENANT, "inv-1", "mistake")
    assert exc.value.field == "status" and "credit note" in str(exc.value)


def test_overdue_after_the_due_date_until_nothing_is_due(sf) -> None:
    issued(sf, "late", due_date=date(2026, 12, 31))  # 120.00
    issued(sf, "later", due_date=date(2027, 1, 31))
    issued(sf, "globex-late", tenant="globex-t", due_date=date(2026, 12, 31))
    draft(sf, "still-draft", due_date=date(2026, 12, 1))
    assert invoices.mark_overdue(sf, date(2026, 12, 31)) == []  # the due date itself: not yet
    marked = invoices.mark_overdue(sf, date(2027, 1, 1), tenant=TENANT)
    assert [i.invoice_id for i in marked] == ["late"]
    assert [i.invoice_id for i in invoices.mark_overdue(sf, date(2027, 1, 1))] == ["globex-late"]  # every tenant
    assert invoices.get(sf, TENANT, "late").status == "overdue"
    assert invoices.get(sf, TENANT, "still-draft").status == "draft"
    pay = {"currency": "EUR", "paid_on": date(2027, 1, 2), "invoice_id": "late"}
    assert record_payment(sf, TENANT, amount="20.00", reference="p1", **pay).amount == Decimal("20.00")
    late = invoices.get(sf, TENANT, "late")
    assert (late.status, late.amount_due) == ("overdue", Decimal("100.00"))  # partly paid, still overdue
    record_payment(sf, TENANT, amount="100.00", reference="p2", **pay)
    assert invoices.get(sf, TENANT, "late").status == "paid"
    assert invoices.mark_overdue(sf, date(2027, 3, 1))[0].invoice_id == "later"  # paid ones are not marked
    assert invoices.mark_overdue(sf, date(2027, 3, 2)) == []  # nor those already overdue


def test_partially_paid_then_overdue(sf) -> None:
    issued(sf, "inv-1", due_date=date(2026, 12, 31))
    record_payment(
        sf, TENANT, amount="0.01", currency="EUR", paid_on=date(2026, 12, 5), reference="r", invoice_id="inv-1"
    )
    assert invoices.get(sf, TENANT, "inv-1").status == "partially_paid"
    assert [i.status for i in invoices.mark_overdue(sf, date(2027, 1, 1))] == ["overdue"]


def test_get_and_list_are_per_tenant_with_filters(sf) -> None:
    issued(sf, "a", customer="c1")
    issued(sf, "b", customer="c2")
    draft(sf, "c", customer="c1")
    draft(sf, "x", tenant="globex-t")
    assert [i.invoice_id for i in invoices.list_invoices(sf, TENANT, customer="c1")] == ["a", "c"]
    assert [i.invoice_id for i in invoices.list_invoices(sf, TENANT, status="draft")] == ["c"]
    assert [i.invoice_id for i in invoices.list_invoices(sf, TENANT, customer="c1", status="finalized")] == ["a"]
    with pytest.raises(Invalid) as exc:
        invoices.list_invoices(sf, TENANT, status="final")
    assert exc.value.field == "status"
    with pytest.raises(NotFound):
        invoices.get(sf, TENANT, "x")  # another tenant's invoice
    with pytest.raises(NotFound):
        invoices.finalize(sf, TENANT, "nope", "ACME", "INV", AT)


def test_minor_units_follow_the_currency() -> None:
    assert invoices.to_minor("total", "1500", "JPY") == 1500
    assert invoices.to_minor("total", "1.234", "KWD") == 1234
    assert invoices.to_minor("total", Decimal("10.5000"), "USD") == 1050  # trailing zeros do not count
    assert invoices.from_minor(1234, "KWD") == Decimal("1.234")
    assert str(invoices.from_minor(12000, "EUR")) == "120.00"
    assert invoices.settled_status("overdue", 100, 30, 70) == "paid"
    assert invoices.settled_status("overdue", 100, 30, 20) == "overdue"
    assert invoices.settled_status("finalized", 100, 30, 20) == "partially_paid"
    assert invoices.settled_status("finalized", 100, 30, 0) == "finalized"
