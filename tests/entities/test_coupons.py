"""The coupon store (entities/coupons.py) on SQLite and PostgreSQL: the use of an applied coupon is derived from
the customer's issued invoices (drafts and voided invoices do not count, invoices of the period closed or
later do not count, invoices from before the coupon was applied do not count), the bulk loader's query count,
expiry (it stops applying the coupon, not applied coupons), the rules of applying; migration 0008 matches the
models and goes down to 0007 and up again.
Expected values are written from the invoices given, by hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, inspect

from meterstream.billing.discounts import Coupon
from meterstream.entities import invoices
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.coupons import (
    CouponOverrides,
    CouponSpec,
    apply_coupon,
    coupon_uses,
    create_coupon,
    derive_use,
    list_applied,
    terminate_applied,
    terminate_coupon,
    update_coupon,
)
from meterstream.entities.customers import put_customer
from meterstream.schemas.entities import CustomerDoc

T = "acme"
APPLIED = datetime(2026, 9, 15, tzinfo=UTC)


class D:
    def __init__(self, code: str, amount: str) -> None:
        self.code, self.amount = code, Decimal(amount)


def test_derive_use_by_hand() -> None:
    fixed = Coupon("c50", "fixed", amount_off=Decimal("50.00"), currency="EUR", duration="once")
    before = APPLIED - timedelta(days=1)
    after = APPLIED + timedelta(days=20)
    invoices_ = [
        (before, [D("c50", "9.00")]),  # finalized before it was applied: an earlier application's
        (after, [D("c50", "12.50"), D("other", "3.00")]),
        (after + timedelta(days=30), [D("c50", "20.00")]),
        (after + timedelta(days=60), []),  # no entry: not used on that invoice
    ]
    use = derive_use(fixed, APPLIED, invoices_)
    assert (use.periods_used, use.amount_remaining) == (2, Decimal("17.50"))  # 50.00 - 12.50 - 20.00
    repeating = Coupon("c50", "percentage", percent_off=Decimal("10"), duration="repeating", duration_periods=3)
    assert derive_use(repeating, APPLIED, invoices_).periods_used == 2
    assert derive_use(repeating, APPLIED, invoices_).amount_remaining is None


def customer(sf, external_id: str, currency: str | None = "EUR") -> None:
    put_customer(sf, CustomerDoc(tenant=T, external_id=external_id, name=external_id, version=0, currency=currency))


def invoice(sf, invoice_id: str, customer_id: str, period: str, discounts: list[tuple[str, str]],
            *, finalize: bool = True, at: datetime | None = None) -> None:  # fmt: skip
    doc = {"discounts": [{"code": c, "description": c, "kind": "fixed", "amount": a} for c, a in discounts]}
    invoices.upsert_draft(sf, tenant=T, invoice_id=invoice_id, customer=customer_id, period=period, currency="EUR",
                          total="10.00", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 1),
                          document=json.dumps(doc))  # fmt: skip
    if finalize:
        invoices.finalize(sf, T, invoice_id, "ACME", "INV", at or datetime.now(UTC))


def test_the_close_gets_the_use_derived_from_issued_invoices_of_earlier_periods(sf) -> None:
    customer(sf, "c1")
    customer(sf, "c2")
    create_coupon(sf, CouponSpec(tenant=T, code="c50", name="50 off", kind="fixed", amount_off=Decimal("50"),
                                 currency="EUR"))  # fmt: skip
    create_coupon(sf, CouponSpec(tenant=T, code="rep", name="Rep", kind="percentage", percent_off=Decimal("10"),
                                 duration="repeating", duration_periods=2))  # fmt: skip
    apply_coupon(sf, T, "c1", "c50")
    apply_coupon(sf, T, "c1", "rep")
    apply_coupon(sf, T, "c2", "rep")
    invoice(sf, "i-09", "c1", "2026-09", [("c50", "10.00"), ("rep", "1.00")])
    invoice(sf, "i-10", "c1", "2026-10", [("c50", "15.00"), ("rep", "0.00")])  # 0.00 still counts a period
    invoice(sf, "i-10v", "c1", "2026-10", [("c50", "7.00")])  # voided below: gives its 7.00 back
    invoices.void(sf, T, "i-10v", "wrong")
    invoice(sf, "i-10d", "c1", "2026-10", [("c50", "5.00")], finalize=False)  # a draft: does not count
    invoice(sf, "i-11", "c1", "2026-11", [("c50", "20.00")])  # the period being closed: does not count

    with sf() as s:
        uses = coupon_uses(s, None, "2026-11")
    c1 = {u.coupon.code: u for u in uses[(T, "c1")]}
    assert [u.coupon.code for u in uses[(T, "c1")]] == ["c50", "rep"]  # the order applied
    assert (c1["c50"].periods_used, c1["c50"].amount_remaining) == (2, Decimal("25.00"))  # 50 - 10 - 15
    assert c1["rep"].periods_used == 2  # both periods used: the pure engine will not apply it again
    (c2,) = uses[(T, "c2")]
    assert (c2.coupon.code, c2.periods_used) == ("rep", 0)
    with sf() as s:
        assert set(coupon_uses(s, [(T, "c2")], "2026-11")) == {(T, "c2")}
        # closing October again (a re-run) sees only September: 50 - 10 = 40 left, 1 period used
        (c50, rep) = coupon_uses(s, None, "2026-10")[(T, "c1")]
    assert (c50.amount_remaining, rep.periods_used) == (Decimal("40.00"), 1)


def test_the_loader_runs_two_queries_for_many_customers(sf, engine) -> None:
    create_coupon(sf, CouponSpec(tenant=T, code="ten", name="Ten", kind="percentage", percent_off=Decimal("10"),
                                 duration="forever"))  # fmt: skip
    for i in range(30):
        customer(sf, f"c{i}")
        apply_coupon(sf, T, f"c{i}", "ten")
        invoice(sf, f"i{i}", f"c{i}", "2026-10", [("ten", "1.00")])
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with sf() as s:
            uses = coupon_uses(s, None, "2026-11")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(uses) == 30 and all(u[0].periods_used == 1 for u in uses.values())
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 2


def test_expiry_termination_and_the_rules_of_applying(sf) -> None:
    customer(sf, "c1")
    customer(sf, "usd", currency="USD")
    create_coupon(sf, CouponSpec(tenant=T, code="short", name="Short", kind="percentage", percent_off=Decimal("5"),
                                 expires_at=datetime(2026, 11, 15, tzinfo=UTC), reusable=False))  # fmt: skip
    apply_coupon(sf, T, "c1", "short", at=datetime(2026, 10, 1, tzinfo=UTC))
    with sf() as s:  # applied before it expired: the customer keeps it after (expiry is about applying it)
        assert list(coupon_uses(s, None, "2026-12")) == [(T, "c1")]
    with pytest.raises(Conflict) as twice:
        apply_coupon(sf, T, "c1", "short", at=datetime(2026, 10, 2, tzinfo=UTC))
    assert twice.value.field == "coupon_code"
    (applied,) = list_applied(sf, T, "c1")
    terminate_applied(sf, T, "c1", applied.id)
    with pytest.raises(Conflict) as not_reusable:
        apply_coupon(sf, T, "c1", "short", at=datetime(2026, 10, 3, tzinfo=UTC))
    assert "not reusable" in str(not_reusable.value)
    with pytest.raises(Invalid) as expired:
        apply_coupon(sf, T, "c1", "short", at=datetime(2026, 11, 16, tzinfo=UTC))
    assert expired.value.field == "coupon_code"

    create_coupon(sf, CouponSpec(tenant=T, code="eur5", name="EUR 5", kind="fixed", amount_off=Decimal("5"),
                                 currency="EUR"))  # fmt: skip
    with pytest.raises(Invalid) as currency:
        apply_coupon(sf, T, "usd", "eur5")
    assert currency.value.field == "currency"
    with pytest.raises(Invalid) as wrong_override:
        apply_coupon(sf, T, "c1", "eur5", CouponOverrides(percent_off=Decimal("10")))
    assert wrong_override.value.field == "percent_off"
    with pytest.raises(NotFound):
        apply_coupon(sf, T, "nobody", "eur5")
    apply_coupon(sf, T, "c1", "eur5", CouponOverrides(amount_off=Decimal("7.50")))
    with pytest.raises(Conflict) as terms:  # applied: its terms are fixed, its name is not
        update_coupon(sf, T, "eur5", CouponSpec(tenant=T, code="eur5", name="EUR 5", kind="fixed",
                                                amount_off=Decimal("6"), currency="EUR"))  # fmt: skip
    assert terms.value.field == "amount_off"
    renamed = update_coupon(sf, T, "eur5", CouponSpec(tenant=T, code="eur5", name="Five euros", kind="fixed",
                                                      amount_off=Decimal("5"), currency="EUR"))  # fmt: skip
    assert renamed.spec.name == "Five euros"
    terminate_coupon(sf, T, "eur5")
    with pytest.raises(NotFound):
        apply_coupon(sf, T, "c1", "eur5")
    with sf() as s:  # the customer keeps it, with its override
        (use,) = coupon_uses(s, [(T, "c1")], "2026-12")[(T, "c1")]
    assert (use.coupon.code, use.coupon.amount_off, use.amount_remaining) == ("eur5", Decimal("7.50"), Decimal("7.50"))


MY_TABLES = ("coupons", "applied_coupons", "taxes", "customer_taxes")


def test_the_migration_matches_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.coupons
    import meterstream.entities.tax_objects  # noqa: F401
    from meterstream.entities.db import Base

    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if any(f"'{t}'" in repr(d) or f"table={t}" in repr(d) for t in MY_TABLES)] == []


def test_down_to_0007_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    create_coupon(sf, CouponSpec(tenant=T, code="x", name="X", kind="percentage", percent_off=Decimal("1")))
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    names = set(inspect(engine).get_table_names())
    assert not names & set(MY_TABLES) and "invoices" in names
    migrate(engine=engine)
    create_coupon(sf, CouponSpec(tenant=T, code="x", name="X", kind="percentage", percent_off=Decimal("1")))
    engine.dispose()
