"""Collections (entities/dunning.py, invoice_emitter/dunning_run.py) on SQLite and PostgreSQL, with the close on chdb.

The worked example of issue 16: an invoice of 100.00 EUR due 2026-10-15 stays unpaid; the policy reminds at
+3, +7 and +14 days, charges 2 % per 30 days from day 30, and suspends after the last reminder. By hand:
reminders on 10-18, 10-22 and 10-29, the suspension on 10-30, the late fee 2 % x 100.00 = 2.00 on 11-14
(the first day that is 30 days after the due date), billed on the November invoice (its period ends 12-01,
after 11-14): 100.00 fee + 2.00 = 102.00 (the customer has no country: no tax). Paid on 12-02: reactivated.
Migration 0010 matches the models and goes down to 0009 and up again."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from meterstream.billing.dunning import LateFee, Policy
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.customers import put_customer
from meterstream.entities.dunning import (
    delete_policy,
    get_policy,
    list_charges,
    list_log,
    list_policies,
    put_policy,
)
from meterstream.entities.invoices import finalize, mark_overdue, upsert_draft
from meterstream.entities.payments import record_payment
from meterstream.invoice_emitter.dunning_run import run_dunning
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.provisioning import NOTIFICATIONS, PROVISIONING, decode_command, decode_notification
from meterstream.webhooks.events import WebhookOutboxRow

T = "acme"
POLICY = Policy((3, 7, 14), LateFee("percent", Decimal(2)), suspend_after_last=True)
AT = datetime(2026, 10, 1, 8, tzinfo=UTC)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = 0

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self) -> None:
        self.flushed += 1


def customer(sf, external_id: str = "c1") -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id=external_id, name=external_id, version=0, currency="EUR",
                                 payment_terms_days=14))  # fmt: skip


def september_invoice(sf, customer_id: str = "c1", total: str = "100.00", invoice_id: str = "inv-sep"):  # type: ignore[no-untyped-def]
    doc = b'{"id": "inv-sep", "lines": []}'
    upsert_draft(sf, tenant=T, invoice_id=invoice_id, customer=customer_id, period="2026-09", currency="EUR",
                 total=total, issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15), document=doc)  # fmt: skip
    return finalize(sf, T, invoice_id, "ACME", "INV", AT)


def days(first: date, last: date):  # type: ignore[no-untyped-def]
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def run_days(sf, sink: Sink, first: date, last: date) -> dict[str, date]:  # type: ignore[no-untyped-def]
    """A billing run each day: mark overdue, then dunning; step -> the day it was done."""
    when: dict[str, date] = {}
    for d in days(first, last):
        mark_overdue(sf, d)
        for step in run_dunning(sf, d, sink).steps:
            when[step["step"]] = d
    return when


def test_policies_crud_and_override(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    default, created = put_policy(sf, T, None, Policy((5,)))
    assert created and default.customer is None and default.policy.reminder_days == (5,)
    own, created = put_policy(sf, T, "c1", POLICY)
    assert created and own.policy == POLICY
    again, created = put_policy(sf, T, "c1", Policy((1, 2), LateFee("fixed", Decimal("7.50"), 10, None)))
    assert not created and again.policy.late_fee == LateFee("fixed", Decimal("7.50"), 10, None)
    assert [p.customer for p in list_policies(sf, T)] == [None, "c1"]
    assert get_policy(sf, T, "c1").policy.reminder_days == (1, 2)
    with pytest.raises(NotFound):
        put_policy(sf, T, "nobody", POLICY)
    with pytest.raises(Invalid) as bad:
        put_policy(sf, T, " ", POLICY)
    assert bad.value.field == "customer"
    delete_policy(sf, T, "c1")
    with pytest.raises(NotFound):
        get_policy(sf, T, "c1")
    assert list_policies(sf, "other") == []


def test_the_worked_example(sf, chdb_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from meterstream.aggregation.ddl import create_schema
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.invoice_emitter.close import close_period
    from meterstream.invoice_emitter.issue import Issuing
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import Catalog
    from meterstream.schemas.entities import FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc

    customer(sf)
    put_policy(sf, T, None, POLICY)  # the tenant's default applies to c1
    september_invoice(sf)
    sink = Sink()
    when = run_days(sf, sink, date(2026, 10, 15), date(2026, 11, 30))
    assert when == {"reminder:1": date(2026, 10, 18), "reminder:2": date(2026, 10, 22),
                    "reminder:3": date(2026, 10, 29), "suspend": date(2026, 10, 30),
                    "late_fee:1": date(2026, 11, 14)}  # fmt: skip
    notes = [decode_notification(v) for t, _, v in sink.sent if t == NOTIFICATIONS]
    assert [(n.kind, n.data["step"]) for n in notes] == [
        ("dunning.reminder", "reminder:1"), ("dunning.reminder", "reminder:2"), ("dunning.reminder", "reminder:3"),
        ("dunning.suspended", "suspend"), ("dunning.late_fee", "late_fee:1"),
    ]  # fmt: skip
    assert notes[2].data["last"] is True and notes[4].data["late_fee"] == "2.00"
    (suspend,) = [decode_command(v) for t, _, v in sink.sent if t == PROVISIONING]
    assert (suspend.command, suspend.reason, suspend.customer, suspend.id) == (
        "suspend",
        "invoice_overdue",
        "c1",
        "dunning:acme:inv-sep:suspend",
    )
    assert suspend.state["amount_due"] == "100.00" and suspend.state["days_overdue"] == 15
    assert all(k == b"acme\x1fc1" for _, k, _ in sink.sent)
    (charge,) = list_charges(sf, T, "c1")
    assert (charge.amount, charge.due_on, charge.billed_invoice_id) == (Decimal("2.00"), date(2026, 11, 14), None)
    with sf() as s:
        hooks = s.scalars(select(WebhookOutboxRow.type).where(WebhookOutboxRow.type.like("dunning.%"))
                          .order_by(WebhookOutboxRow.seq)).all()  # fmt: skip
    assert hooks == ["dunning.reminder"] * 3 + ["dunning.suspended", "dunning.late_fee"]
    # a second run on the same day does nothing
    assert run_dunning(sf, date(2026, 11, 30), sink).steps == []

    # the November invoice: a subscription with a 100.00 fee from 11-01, closed on chdb; the late fee is a line
    db = f"d_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    publish_plan(sf, PlanVersionDoc(tenant=T, code="base", version=0, name="Base", currency="EUR", usage={},
                                    fixed=[FixedCharge(code="base", name="Base fee", amount=Decimal("100.00"),
                                                       timing="arrears")]))  # fmt: skip
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s1", customer="c1", version=0,
                                            phases=[Phase(plan_code="base", plan_version=1,
                                                          start=datetime(2026, 11, 1, tzinfo=UTC))]))  # fmt: skip
    issuing = Issuing.default()

    def close(label: str):  # type: ignore[no-untyped-def]
        result = close_period(chdb_client, db, Catalog(plans={}), label, tmp_path / "inv", progress=False,
                              store=StoreView(sf), issuing=issuing)  # fmt: skip
        assert result.failed == []
        (doc,) = [d for d in result.invoices if d["customer"] == "c1"]
        return doc

    november = close("2026-11")
    fee = [ln for ln in november["lines"] if ln["kind"] == "one_time"]
    assert [(ln["code"], ln["amount"], ln["line_key"]) for ln in fee] == [
        ("late_fee", "2.00", "dunning:inv-sep:late_fee:1")
    ]
    assert (november["subtotal"], november["total"]) == ("102.00", "102.00")
    assert close("2026-11")["total"] == "102.00"  # the re-run re-issues the same document
    assert run_dunning(sf, date(2026, 12, 1), sink).charges_billed == 1
    (charge,) = list_charges(sf, T, "c1")
    assert charge.billed_invoice_id == november["id"]

    # paid in full on 12-02: reactivated, once
    record_payment(sf, T, amount="100.00", currency="EUR", paid_on=date(2026, 12, 2), reference="bank-1",
                   invoice_id="inv-sep")  # fmt: skip
    sent = len(sink.sent)
    result = run_dunning(sf, date(2026, 12, 2), sink)
    assert [s["step"] for s in result.steps] == ["reactivate"]
    (reactivate,) = [decode_command(v) for t, _, v in sink.sent[sent:] if t == PROVISIONING]
    assert (reactivate.command, reactivate.reason, reactivate.cause) == (
        "reactivate",
        "invoice_overdue",
        "invoice ACME-2026-000001 paid",
    )
    assert run_dunning(sf, date(2026, 12, 3), sink).steps == []
    assert [e.step for e in list_log(sf, T, "c1")][-1] == "reactivate"

    # December: no second late fee (paid before 12-14) and the November one is not billed again
    december = close("2026-12")
    assert [ln for ln in december["lines"] if ln["kind"] == "one_time"] == []


def test_reactivation_waits_for_every_suspended_invoice_and_no_kafka_means_log_and_webhooks(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    put_policy(sf, T, "c1", Policy((), suspend_after_last=True))  # suspend the day after the due date
    september_invoice(sf, invoice_id="inv-a", total="10.00")
    september_invoice(sf, invoice_id="inv-b", total="20.00")
    run_days(sf, Sink(), date(2026, 10, 16), date(2026, 10, 16))
    assert sorted((e.invoice_id, e.step) for e in list_log(sf, T, "c1")) == [("inv-a", "suspend"),
                                                                              ("inv-b", "suspend")]  # fmt: skip
    record_payment(sf, T, amount="10.00", currency="EUR", paid_on=date(2026, 10, 20), reference="p1",
                   invoice_id="inv-a")  # fmt: skip
    assert run_dunning(sf, date(2026, 10, 20), None).steps == []  # inv-b still due: stays suspended
    record_payment(sf, T, amount="20.00", currency="EUR", paid_on=date(2026, 10, 21), reference="p2",
                   invoice_id="inv-b")  # fmt: skip
    (step,) = run_dunning(sf, date(2026, 10, 21), None).steps  # without Kafka: logged and announced by webhook
    assert (step["step"], step["invoice"]) == ("reactivate", "inv-a+inv-b")
    with sf() as s:
        assert s.scalars(select(WebhookOutboxRow.type).where(WebhookOutboxRow.type == "dunning.reactivated")).all() \
            == ["dunning.reactivated"]  # fmt: skip


def test_a_kafka_failure_logs_nothing_and_the_next_run_does_it(sf) -> None:  # type: ignore[no-untyped-def]
    class Down(Sink):
        def flush(self) -> None:
            raise RuntimeError("Kafka down")

    customer(sf)
    put_policy(sf, T, None, Policy((3,)))
    september_invoice(sf)
    mark_overdue(sf, date(2026, 10, 18))
    with pytest.raises(RuntimeError, match="Kafka down"):
        run_dunning(sf, date(2026, 10, 18), Down())
    assert list_log(sf, T, "c1") == []
    sink = Sink()
    assert [s["step"] for s in run_dunning(sf, date(2026, 10, 18), sink).steps] == ["reminder:1"]
    assert [decode_notification(v).id for _, _, v in sink.sent] == ["dunning:acme:inv-sep:reminder:1"]


def test_dry_run_changes_nothing(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    put_policy(sf, T, None, POLICY)
    september_invoice(sf)
    mark_overdue(sf, date(2026, 11, 20))
    result = run_dunning(sf, date(2026, 11, 20), Sink(), dry_run=True)
    assert [(s["step"], s.get("late_fee")) for s in result.steps] == [
        ("reminder:1", None),
        ("reminder:2", None),
        ("reminder:3", None),
        ("suspend", None),
        ("late_fee:1", "2.00"),
    ]
    assert list_log(sf, T, "c1") == [] and list_charges(sf, T, "c1") == []


MY_TABLES = ("dunning_policies", "dunning_log", "dunning_charges")


def test_the_migration_matches_the_models(engine) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.dunning  # noqa: F401
    from meterstream.entities.db import Base

    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [x for x in diff if any(f"'{t}'" in repr(x) or f"table={t}" in repr(x) for t in MY_TABLES)] == []


def test_down_to_0009_and_up_again(tmp_path: Path) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate

    url = f"sqlite:///{tmp_path / 'e.db'}"
    engine = make_engine(url=url)
    migrate(engine=engine)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    names = set(inspect(engine).get_table_names())
    assert not names & set(MY_TABLES) and "wallets" in names
    migrate(engine=engine)
    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_a_charge_on_a_voided_invoice_is_pending_again(sf) -> None:  # type: ignore[no-untyped-def]
    from meterstream.entities.dunning import add_charge, pending_charge_lines, settle_billed
    from meterstream.entities.invoices import void

    customer(sf)
    with sf.begin() as s:
        assert add_charge(s, T, "c1", "inv-src", "late_fee:1", "Late fee 1", "EUR", 250, date(2026, 11, 14))
        assert not add_charge(s, T, "c1", "inv-src", "late_fee:1", "Late fee 1", "EUR", 250, date(2026, 11, 14))
    with sf() as s:
        (pending,) = pending_charge_lines(s, "2026-11")[(T, "c1")]
        assert pending_charge_lines(s, "2026-10") == {}  # due 11-14: not before October ended
    assert pending == ("EUR", {"kind": "one_time", "code": "late_fee", "description": "Late fee 1", "quantity": "1",
                               "unit_price": "2.50", "amount": "2.50", "line_key": "dunning:inv-src:late_fee:1",
                               "applies_to": "inv-src"})  # fmt: skip
    doc = b'{"lines": [{"line_key": "dunning:inv-src:late_fee:1", "amount": "2.50"}]}'
    upsert_draft(sf, tenant=T, invoice_id="inv-nov", customer="c1", period="2026-11", currency="EUR", total="2.50",
                 issue_date=date(2026, 12, 1), due_date=date(2026, 12, 15), document=doc)  # fmt: skip
    with sf() as s:  # a draft does not bill it
        assert (T, "c1") in pending_charge_lines(s, "2026-11")
    finalize(sf, T, "inv-nov", "ACME", "INV", AT)
    with sf() as s:  # the issued invoice does
        assert pending_charge_lines(s, "2026-12") == {}
    assert settle_billed(sf) == 1
    assert list_charges(sf, T, "c1")[0].billed_invoice_id == "inv-nov"
    void(sf, T, "inv-nov", "wrong address")
    assert settle_billed(sf) == 0
    assert list_charges(sf, T, "c1")[0].billed_invoice_id is None
    with sf() as s:
        assert [line["amount"] for _, line in pending_charge_lines(s, "2026-12")[(T, "c1")]] == ["2.50"]


def test_a_step_is_logged_once(sf) -> None:  # type: ignore[no-untyped-def]
    from meterstream.entities.dunning import done_steps, record_step

    with sf.begin() as s:
        assert record_step(s, T, "inv-1", "c1", "reminder:1", date(2026, 10, 18))
        assert not record_step(s, T, "inv-1", "c1", "reminder:1", date(2026, 10, 18))  # a second run: skipped
        assert record_step(s, T, "inv-1", "c1", "reminder:2", date(2026, 10, 22))
        assert record_step(s, "other", "inv-1", "c1", "reminder:1", date(2026, 10, 18))  # another tenant's invoice
    with sf() as s:
        assert done_steps(s, [(T, "inv-1"), (T, "inv-2")]) == {(T, "inv-1"): {"reminder:1", "reminder:2"}}
