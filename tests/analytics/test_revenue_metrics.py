"""MRR, ARR, churn and net revenue retention (billing/revenue_metrics.py) for October 2026, worked by hand.

Plans (USD): basic 30/month; pro 100/month + support 120/year (= 10/month) = 110; add-on seats 60/quarter
(= 20/month); weekly 12/week (= 12 x 52 / 12 = 52/month).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterstream.billing.revenue_metrics import monthly, movements, mrr_by_customer, subscription_mrr
from meterstream.schemas.entities import FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc

D = Decimal


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def _plan(code: str, fixed: list[FixedCharge], addon: bool = False, usage: dict | None = None) -> PlanVersionDoc:
    return PlanVersionDoc(tenant="t", code=code, version=1, name=code, currency="USD", fixed=fixed, addon=addon,
                          usage=usage or {})  # fmt: skip


PLANS = {
    "basic": _plan("basic", [FixedCharge(code="base", name="Base", amount=D(30))],
                   usage={"api_calls": {"model": "unit", "unit_amount": "0.01"}}),  # usage is not recurring
    "pro": _plan("pro", [FixedCharge(code="base", name="Base", amount=D(100)),
                         FixedCharge(code="support", name="Support", amount=D(120), interval="yearly")]),
    "seats": _plan("seats", [FixedCharge(code="seat", name="Seats", amount=D(60), interval="quarterly")], addon=True),
    "weekly": _plan("weekly", [FixedCharge(code="w", name="Weekly", amount=D(12), interval="weekly")]),
}  # fmt: skip


def lookup(code: str, version: int | None, at: datetime) -> PlanVersionDoc:
    return PLANS[code]


def _sub(customer: str, *phases: tuple[str, datetime, datetime | None], **kw) -> SubscriptionDoc:  # type: ignore[no-untyped-def]
    overrides = kw.pop("overrides", {})
    addons = kw.pop("addons", [])
    return SubscriptionDoc(tenant="t", external_id=f"s-{customer}", customer=customer, version=1, phases=[
        Phase(plan_code=p, plan_version=1, start=s, end=e, fixed_overrides=overrides, addons=addons)
        for p, s, e in phases], **kw)  # fmt: skip


SUBS = [
    _sub("c1", ("basic", _at(2026, 9, 1), None)),  # 30 -> 30
    _sub("c2", ("basic", _at(2026, 9, 1), _at(2026, 10, 15)), ("pro", _at(2026, 10, 15), None)),  # 30 -> 110
    _sub("c3", ("pro", _at(2026, 8, 1), _at(2026, 10, 20)), overrides={"base": D(80)}, addons=["seats"],
         status="canceled"),  # 80 + 10 + 20 = 110 -> 0
    _sub("c4", ("basic", _at(2026, 10, 10), None)),  # 0 -> 30
    _sub("c5", ("pro", _at(2026, 10, 5), None), trial_end=_at(2026, 11, 15)),  # in its trial on Nov 1: 0
    _sub("c6", ("weekly", _at(2026, 9, 1), None)),  # 52 -> 52
    _sub("c7", ("pro", _at(2026, 9, 1), _at(2026, 10, 25)), ("basic", _at(2026, 10, 25), None)),  # 110 -> 30
    _sub("c8", ("basic", _at(2026, 9, 1), None), deleted=True),  # nothing
]  # fmt: skip


def test_monthly_normalization() -> None:
    assert monthly(D(120), "yearly") == D(10)
    assert monthly(D(60), "quarterly") == D(20)
    assert monthly(D(12), "weekly") == D(52)
    assert monthly(D(100), "yearly").quantize(D("0.000001")) == D("8.333333")  # 8.33... kept, not 8.33


def test_mrr_of_each_subscription() -> None:
    oct1 = _at(2026, 10, 1)
    assert subscription_mrr(SUBS[2], oct1, lookup) == ("USD", D(110))  # override 80 + support 10 + seats 20
    assert subscription_mrr(SUBS[4], _at(2026, 11, 1), lookup) == ("USD", D(0))  # trial
    assert subscription_mrr(SUBS[4], _at(2026, 11, 15), lookup) == ("USD", D(110))  # trial over
    assert subscription_mrr(SUBS[3], oct1, lookup) is None  # not started
    assert subscription_mrr(SUBS[7], oct1, lookup) is None  # deleted


def test_the_month_s_movements_churn_and_retention() -> None:
    start = mrr_by_customer(SUBS, _at(2026, 10, 1), lookup)
    end = mrr_by_customer(SUBS, _at(2026, 11, 1), lookup)
    (m,) = movements(start, end).values()
    assert (m.start_mrr, m.end_mrr) == (D(332), D(252))  # 30+30+110+52+110; 30+110+30+0+52+30
    assert (m.new, m.expansion, m.contraction, m.churned) == (D(30), D(80), D(80), D(110))  # c4; c2; c7; c3
    assert m.start_mrr + m.new + m.expansion - m.contraction - m.churned == m.end_mrr
    assert m.arr == D(3024)  # 252 x 12
    assert (m.customers_start, m.customers_end, m.customers_churned) == (5, 5, 1)
    assert m.churned_customers == ["c3"]
    assert m.customer_churn_rate == D("0.2")  # 1 / 5
    # retained: c1 30 + c2 110 + c3 0 + c6 52 + c7 30 = 222 of 332
    assert m.retained_end_mrr == D(222)
    assert m.net_revenue_retention.quantize(D("0.0001")) == D("0.6687")


def test_an_add_on_in_another_currency_is_refused() -> None:
    eur = _plan("eur_addon", [FixedCharge(code="x", name="X", amount=D(1))], addon=True)
    eur = PlanVersionDoc(**{**{f: getattr(eur, f) for f in eur.__struct_fields__}, "currency": "EUR"})
    sub = _sub("c9", ("basic", _at(2026, 9, 1), None), addons=["eur_addon"])
    with pytest.raises(ValueError, match="addons: eur_addon is in EUR"):
        subscription_mrr(sub, _at(2026, 10, 1), lambda c, v, a: eur if c == "eur_addon" else PLANS[c])


def entity_store(tmp_path, tenant: str = "t") -> str:  # type: ignore[no-untyped-def]
    """An entity store with `tenant`'s plans basic (30/month) and pro (100/month + 120/year = 110/month), c1 on
    basic from 2026-09-01, c2 on pro from 2026-09-01 to 2026-10-20; its URL."""
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.schemas.entities import CustomerDoc

    url = f"sqlite:///{tmp_path / 'entities.db'}"
    engine = make_engine(url=url)
    migrate(engine=engine)
    sf = session_factory(engine)
    for code in ("basic", "pro"):
        publish_plan(sf, PlanVersionDoc(tenant=tenant, code=code, version=0, name=code, currency="USD",
                                        fixed=PLANS[code].fixed))  # fmt: skip
    for customer, code, end in (("c1", "basic", None), ("c2", "pro", _at(2026, 10, 20))):
        put_customer(sf, CustomerDoc(tenant=tenant, external_id=customer, name=customer, version=0))
        create_subscription(sf, SubscriptionDoc(tenant=tenant, external_id=f"s-{customer}", customer=customer,
                                                version=0, phases=[Phase(plan_code=code, plan_version=1,
                                                                         start=_at(2026, 9, 1), end=end)]))  # fmt: skip
    return url


def test_the_cli_reads_the_entity_store(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from meterstream.deploy.cli import main

    monkeypatch.setenv("METERSTREAM_DATABASE_URL", entity_store(tmp_path))
    assert main(["revenue", "--tenant", "t", "--month", "2026-10", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    # start: c1 30 + c2 110 = 140; end: c1 30; c2 churned 110; retention 30 / 140 = 0.2142857...
    assert (row["start_mrr"], row["end_mrr"], row["churned"], row["arr"]) == ("140.00", "30.00", "110.00", "360.00")
    assert (row["customer_churn_rate"], row["net_revenue_retention"]) == ("0.5000", "0.2143")
    assert row["churned_customers"] == ["c2"]
    assert main(["revenue", "--tenant", "t", "--month", "2026-13"]) == 1
    assert "--month: must be YYYY-MM" in capsys.readouterr().err


def test_the_cli_refuses_a_one_digit_month_and_answers_for_a_tenant_without_subscriptions(
    tmp_path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    import json

    from meterstream.deploy.cli import main

    monkeypatch.setenv("METERSTREAM_DATABASE_URL", entity_store(tmp_path))
    for bad in ("2026-1", "2026-00", "26-10", "2026-10-01", ""):
        assert main(["revenue", "--tenant", "t", "--month", bad]) == 1, bad
        assert f"--month: must be YYYY-MM with a month 01-12 (got {bad!r})" in capsys.readouterr().err
    assert main(["revenue", "--tenant", "nobody", "--month", "2026-10", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["currency"], row["end_mrr"], row["customers_start"], row["churned_customers"]) == (None, None, 0, [])
    assert "no subscription in effect on 2026-10-01 or 2026-11-01" in row["note"]
    assert main(["revenue", "--tenant", "nobody", "--month", "2026-10"]) == 0
    assert capsys.readouterr().out == (
        "tenant nobody has no subscription in effect on 2026-10-01 or 2026-11-01: no recurring revenue\n"
    )
