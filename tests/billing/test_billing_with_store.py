"""The billing domain on documents written by the entity store (SQLite): the shapes agree end to end.

Lago's upgrade example again (getlago.com/docs/guide/subscriptions/upgrades-downgrades, in arrears:
Plan A €100 from January 1st, Plan B €200 from January 15th -> 14/31 x 100 = 45.16 and 17/31 x 200 =
109.68), this time with the customer, plans and the mid-cycle change made through entities/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterstream.billing import SubscriptionCharges, lookup_from
from meterstream.entities.customers import get_customer_doc, put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.plans import plan_versions, publish_plan
from meterstream.entities.subscriptions import change_plan, create_subscription, get_subscription
from meterstream.schemas.entities import CustomerDoc, FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc


@pytest.fixture
def sf(tmp_path: Path):
    engine = make_engine(url=f"sqlite:///{tmp_path / 'entities.db'}")
    migrate(engine=engine)
    yield session_factory(engine)
    engine.dispose()


def plan(code: str, fee: str, addon: bool = False) -> PlanVersionDoc:
    return PlanVersionDoc(
        tenant="acme",
        code=code,
        version=0,
        name=f"Plan {code.upper()}",
        currency="EUR",
        addon=addon,
        fixed=[FixedCharge(code="base", name="Subscription", amount=Decimal(fee), timing="arrears")],
    )


def test_upgrade_through_the_store(sf) -> None:
    put_customer(
        sf, CustomerDoc(tenant="acme", external_id="c-1", name="C1", version=0, currency="EUR", timezone="Europe/Paris")
    )
    for doc in (plan("a", "100"), plan("b", "200"), plan("support", "5", addon=True)):
        publish_plan(sf, doc)
    jan1_paris = datetime(2025, 12, 31, 23, tzinfo=UTC)
    create_subscription(
        sf,
        SubscriptionDoc(
            tenant="acme",
            external_id="s-1",
            customer="c-1",
            version=0,
            phases=[Phase(plan_code="a", plan_version=1, start=jan1_paris, addons=["support"])],
        ),
    )
    change_plan(sf, "acme", "s-1", "b", datetime(2026, 1, 15, 9, tzinfo=UTC))
    sub = get_subscription(sf, "acme", "s-1")
    customer = get_customer_doc(sf, "acme", "c-1")
    docs = [*plan_versions(sf, "acme", "a"), *plan_versions(sf, "acme", "b"), *plan_versions(sf, "acme", "support")]
    charges = SubscriptionCharges(sub, lookup_from(docs), customer.timezone)
    january = charges.lines(charges.period_containing(datetime(2026, 1, 20, tzinfo=UTC)))
    # plan A 14/31 x 100 = 45.16, the add-on 14/31 x 5 = 2.258 -> 2.26; plan B 17/31 x 200 = 109.68 and
    # the add-on carried over: 5.00 - round(5 x 14/31 = 2.258) = 5.00 - 2.26 = 2.74
    assert [(line.plan, str(line.amount)) for line in january] == [
        ("a@1", "45.16"),
        ("support@1", "2.26"),
        ("b@1", "109.68"),
        ("support@1", "2.74"),
    ]
    assert sum(line.amount for line in january) == Decimal("159.84")
