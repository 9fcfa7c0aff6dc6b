"""Plan versions (SQLite and PostgreSQL): immutable versions, idempotent publish, validation, delete in use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from entity_docs import TENANT, at, customer, outbox_count, phase, plan, subscription

from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import put_customer
from meterstream.entities.outbox import read_outbox
from meterstream.entities.plans import delete_plan, get_plan, list_plans, plan_versions, publish_plan
from meterstream.entities.subscriptions import cancel_subscription, create_subscription
from meterstream.rating import parse_price, quote
from meterstream.schemas.entities import FixedCharge, InstallmentCharge, OneTimeCharge, decode_change

ROOT = Path(__file__).resolve().parents[2]

GRADUATED = {
    "model": "graduated",
    "tiers": [
        {"up_to": "1000", "unit_amount": "0"},
        {"up_to": "10000", "unit_amount": "0.002"},
        {"up_to": None, "unit_amount": "0.001"},
    ],
}


def test_publish_numbers_versions_and_repeats_are_unchanged(sf) -> None:
    first, created = publish_plan(sf, plan(version=7))
    assert created and first.version == 1 and first.published_at is not None
    again, created = publish_plan(sf, plan())
    assert not created and again == first
    changed, created = publish_plan(sf, plan(usage={"api_calls": GRADUATED}))
    assert created and changed.version == 2 and changed.rating_id == "basic@2"
    assert get_plan(sf, TENANT, "basic") == changed
    assert get_plan(sf, TENANT, "basic", 1) == first  # a published version never changes
    assert [p.version for p in plan_versions(sf, TENANT, "basic")] == [1, 2]
    back, created = publish_plan(sf, plan())  # same content as version 1, but not the newest: a new version
    assert created and back.version == 3
    publish_plan(sf, plan("pro"))
    assert [(p.code, p.version) for p in list_plans(sf, TENANT)] == [("basic", 3), ("pro", 1)]
    assert list_plans(sf, "globex") == []
    with pytest.raises(NotFound):
        get_plan(sf, TENANT, "basic", 9)


def test_stored_prices_rate_exactly_as_published(sf) -> None:
    stored, _ = publish_plan(sf, plan(usage={"api_calls": GRADUATED}))
    price = parse_price(get_plan(sf, TENANT, "basic").usage["api_calls"], currency="USD")
    # 12,000 calls: 1,000 free + 9,000 x 0.002 + 2,000 x 0.001 = 18 + 2 = 20.000
    assert quote(price, Decimal(12000)).total == Decimal("20.00")
    assert stored.fixed[0].amount == Decimal("10.00")


def test_every_charge_kind_round_trips(sf) -> None:
    doc = plan(
        interval="yearly",
        fixed=[FixedCharge(code="seat", name="Seats", amount=Decimal("120.00"), interval="monthly", timing="arrears")],
        one_time=[OneTimeCharge(code="setup", name="Setup", amount=Decimal("99.00"))],
        installments=[InstallmentCharge(code="device", name="Router", total=Decimal("100.00"), count=3)],
        minimum_commitment=Decimal("50.00"),
    )
    stored, _ = publish_plan(sf, doc)
    got = get_plan(sf, TENANT, "basic")
    assert got == stored
    assert got.installments[0].count == 3 and got.minimum_commitment == Decimal("50.00")
    assert got.fixed[0].timing == "arrears" and got.interval == "yearly"


def test_an_inline_telecom_plan_is_accepted(sf) -> None:
    from meterstream.rating.cli import load_price_text

    telecom = load_price_text((ROOT / "rating/telecom/examples/telecom_plan.yaml").read_text())
    stored, created = publish_plan(sf, plan("mobile", currency="EUR", usage={}, fixed=[], telecom=telecom))
    assert stored.rating_id == "mobile@1"
    assert created
    assert sorted(get_plan(sf, TENANT, "mobile").telecom["meters"]) == ["data_bytes", "sms", "voice_seconds"]
    _, created = publish_plan(sf, plan("mobile", currency="EUR", usage={}, fixed=[], telecom=telecom))
    assert not created  # dates and decimals survive the JSON round trip unchanged


def _tiers(*bounds: str | None) -> dict:
    return {"model": "graduated", "tiers": [{"up_to": b, "unit_amount": "0.01"} for b in bounds]}


BAD_PLANS = [
    ({"usage": {"calls": _tiers("100", "50", None)}}, "usage.calls.tiers[1].up_to", "bounds must increase"),
    ({"usage": {"calls": _tiers("100", "100", None)}}, "usage.calls.tiers[1].up_to", "bounds must increase"),
    ({"usage": {"calls": _tiers("100", None, "200")}}, "usage.calls.tiers[1].up_to", "only the last tier"),
    ({"usage": {"calls": {"model": "unit", "unit_amount": "-0.01"}}}, "usage.calls.unit_amount", "negative"),
    ({"usage": {"calls": {"model": "unit", "unit_amount": "0.0000000000001"}}}, "usage.calls.unit_amount",
     "at most 12 decimals"),
    ({"usage": {"calls": {"model": "unit", "unit_amount": 0.1}}}, "usage.calls.unit_amount", "float"),
    ({"usage": {"Calls": {"model": "unit", "unit_amount": "1"}}}, "usage.Calls", "meter name"),
    ({"currency": "XYZ"}, "currency", "unknown currency"),
    ({"usage": {"calls": {"model": "unit", "unit_amount": "1", "currency": "EUR"}}}, "usage.calls.currency",
     "differs from the plan currency"),
    ({"fixed": [FixedCharge(code="base", name="Base", amount=Decimal("-5.00"))]}, "fixed[0].amount", "negative"),
    ({"fixed": [FixedCharge(code="base", name="Base", amount=Decimal("9.999"))]}, "fixed[0].amount",
     "at most 2 decimals"),
    ({"currency": "JPY", "usage": {}, "fixed": [FixedCharge(code="b", name="B", amount=Decimal("1000.5"))]},
     "fixed[0].amount", "JPY amounts have at most 0 decimals"),
    ({"fixed": [FixedCharge(code="b", name="B", amount=Decimal("1"), interval="daily")]}, "fixed[0].interval", ""),
    ({"one_time": [OneTimeCharge(code="base", name="Setup", amount=Decimal("1"))]}, "one_time[0].code", "duplicate"),
    ({"installments": [InstallmentCharge(code="i", name="I", total=Decimal("10"), count=0)]},
     "installments[0].count", "from 1"),
    ({"minimum_commitment": Decimal("0.001")}, "minimum_commitment", "at most 2 decimals"),
    ({"code": "basic@2"}, "code", ""),
    ({"usage": {}, "fixed": []}, "usage", "at least one charge"),
    ({"fixed": [{"code": "b", "name": "B", "amount": "1"}]}, "fixed[0]", "must be a FixedCharge"),
    ({"telecom": {"csv": "rates/"}}, "telecom", "inline"),
    ({"telecom": {"timezone": "UTC"}}, "telecom.time_bands", "Field required"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "reason"), BAD_PLANS)
def test_bad_plan_names_the_field_and_writes_nothing(sf, changes, field, reason) -> None:
    with pytest.raises(Invalid) as exc:
        publish_plan(sf, plan(**changes))
    assert exc.value.field == field, str(exc.value)
    assert reason in exc.value.reason
    assert str(exc.value).startswith(f"{field}: ")
    assert list_plans(sf, TENANT) == [] and outbox_count(sf) == 0


def test_trailing_zeros_do_not_count_as_decimals(sf) -> None:
    stored, _ = publish_plan(sf, plan(fixed=[FixedCharge(code="b", name="B", amount=Decimal("10.5000"))]))
    assert stored.version == 1


def test_delete_refused_while_in_use_then_allowed_once_ended(sf) -> None:
    put_customer(sf, customer())
    publish_plan(sf, plan())
    publish_plan(sf, plan("pro"))
    create_subscription(sf, subscription(phases=[phase(start=at(1))]))
    before = outbox_count(sf)
    with pytest.raises(Conflict) as exc:
        delete_plan(sf, TENANT, "basic")
    assert exc.value.field == "code" and "s1" in str(exc.value)
    assert get_plan(sf, TENANT, "basic").version == 1 and outbox_count(sf) == before  # nothing half-written
    deleted = delete_plan(sf, TENANT, "pro")
    assert [d.deleted for d in deleted] == [True]
    with pytest.raises(NotFound):
        get_plan(sf, TENANT, "pro")
    cancel_subscription(sf, TENANT, "s1", at(1, month=2))  # ended (in the past): no longer in use
    delete_plan(sf, TENANT, "basic")
    assert list_plans(sf, TENANT) == []
    assert decode_change(read_outbox(sf, 0, 99)[-1][2]).deleted


def test_catalog_yaml_prices_are_accepted_as_loaded(sf) -> None:
    """The demo catalog's usage prices, loaded with decimals preserved, publish as they are."""
    from meterstream.rating.cli import load_price_text

    data = load_price_text((ROOT / "deploy/demo_catalog.yaml").read_text())
    cloud = next(p for p in data["plans"] if "meters" in p)
    stored, created = publish_plan(sf, plan("cloud", currency=cloud["currency"], usage=cloud["meters"], fixed=[]))
    assert created and set(stored.usage) == set(cloud["meters"])
    assert not isinstance(yaml.safe_load("x: 0.000137")["x"], Decimal)  # why load_price_text is used above
