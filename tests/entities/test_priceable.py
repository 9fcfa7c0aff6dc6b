"""A usage price only on a meter that is a sum (entities/priceable.py), SQLite and PostgreSQL.

The rater and the close bill a meter's quantities summed per period. A MAX meter `peak` fed 3 events of 10
answers 10 to its query but would be billed 3 x 10 = 30 at unit_amount 1; a LATEST meter `storage_gb_hours`
read 5, 7.5, 3 answers 3 but would be billed 5 + 7.5 + 3 = 15.5; a UNIQUE_COUNT meter `api_calls` with
5 events of 3 users answers 3 but would be billed 5. So publishing such a price, or defining such a meter
under a price, is refused; a price of 0 (meters without charging) and unpriced meters stay allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from entity_docs import TENANT, customer, phase, plan, subscription

from meterstream.entities.catalog_apply import CatalogApplyError, apply_catalog
from meterstream.entities.common import Invalid, NotFound
from meterstream.entities.customers import get_customer_doc, put_customer
from meterstream.entities.meters import MeterRepository
from meterstream.entities.plans import delete_plan, get_plan, publish_plan
from meterstream.entities.priceable import catalog_prices, charges, file_catalog_prices
from meterstream.entities.subscriptions import create_subscription
from meterstream.ingest.translate import MeterDefinition
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.event import InvalidEvent

ROOT = Path(__file__).resolve().parents[2]
UNIT_1 = {"model": "unit", "unit_amount": "1"}
FREE = {"model": "unit", "unit_amount": "0"}


def meter(slug: str, aggregation: str) -> MeterDefinition:
    return MeterDefinition(
        slug=slug, event_type=slug, aggregation=aggregation, value_property=None if aggregation == "COUNT" else "$.v"
    )


@pytest.mark.parametrize(("slug", "aggregation"), [("peak", "MAX"), ("last", "LATEST"), ("users", "UNIQUE_COUNT"),
                                                   ("mean", "AVG"), ("low", "MIN")])  # fmt: skip
def test_a_usage_price_on_a_meter_that_is_not_a_sum_is_refused(sf, slug: str, aggregation: str) -> None:
    MeterRepository(sf).create(TENANT, meter(slug, aggregation))
    with pytest.raises(Invalid) as err:
        publish_plan(sf, plan("pk2", usage={"api_calls": UNIT_1, slug: UNIT_1}))
    assert err.value.field == f"usage.{slug}"
    assert aggregation in err.value.reason and "SUM or COUNT" in err.value.reason
    with pytest.raises(Invalid):  # also without the fixed fee: the plan of the audit, usage only
        publish_plan(sf, plan("pk3", usage={slug: UNIT_1}, fixed=[]))


def test_sums_undefined_meters_and_free_prices_are_published(sf) -> None:
    repo = MeterRepository(sf)
    repo.create(TENANT, meter("storage", "SUM"))
    repo.create(TENANT, meter("calls", "COUNT"))
    repo.create(TENANT, meter("peak", "MAX"))
    usage = {"storage": UNIT_1, "calls": UNIT_1, "native": UNIT_1, "peak": FREE}  # native: no definition
    stored, created = publish_plan(sf, plan("ok", usage=usage))
    assert created and stored.version == 1
    repo.create("globex", meter("other", "MAX"))  # another tenant's MAX meter says nothing about acme's plans
    assert publish_plan(sf, plan("other", usage={"other": UNIT_1}))[1]


def test_a_deleted_meter_does_not_count(sf) -> None:
    repo = MeterRepository(sf)
    repo.create(TENANT, meter("peak", "MAX"))
    repo.delete(TENANT, "peak")
    repo.create(TENANT, meter("peak", "SUM"))
    assert publish_plan(sf, plan("pk2", usage={"peak": UNIT_1}))[0].version == 1


def test_a_meter_priced_by_a_live_plan_must_be_a_sum(sf) -> None:
    publish_plan(sf, plan("pk2", usage={"peak": UNIT_1}, fixed=[]))
    repo = MeterRepository(sf)
    for aggregation in ("MAX", "LATEST", "UNIQUE_COUNT", "AVG", "MIN"):
        with pytest.raises(InvalidEvent) as err:
            repo.create(TENANT, meter("peak", aggregation))
        assert err.value.field == "aggregation"
        assert "pk2@1" in err.value.reason and aggregation in err.value.reason
    assert repo.list(TENANT) == []  # nothing stored
    assert repo.create(TENANT, meter("gauge", "MAX")).aggregation == "MAX"  # querying only: not priced
    assert repo.create("globex", meter("peak", "MAX")).aggregation == "MAX"  # another tenant
    assert repo.create(TENANT, meter("peak", "SUM")).aggregation == "SUM"


def test_free_prices_and_deleted_plans_do_not_price(sf) -> None:
    publish_plan(sf, plan("meter-only", usage={"peak": FREE}, fixed=[]))
    publish_plan(sf, plan("gone", usage={"last": UNIT_1}, fixed=[]))
    delete_plan(sf, TENANT, "gone")
    repo = MeterRepository(sf)
    assert repo.create(TENANT, meter("peak", "MAX")).slug == "peak"
    assert repo.create(TENANT, meter("last", "LATEST")).slug == "last"


def test_an_older_active_version_still_prices(sf) -> None:
    publish_plan(sf, plan("pk2", usage={"peak": UNIT_1}, fixed=[]))  # version 1 prices peak
    publish_plan(sf, plan("pk2", usage={"calls": UNIT_1}, fixed=[]))  # version 2 does not
    with pytest.raises(InvalidEvent) as err:
        MeterRepository(sf).create(TENANT, meter("peak", "MAX"))
    assert "pk2@1" in err.value.reason and "pk2@2" not in err.value.reason


def test_the_file_catalog_prices_meters_too(sf) -> None:
    """deploy/demo_catalog.yaml: cloudco's default plan cloud-standard prices api_calls and storage_gb_hours."""
    demo = ROOT / "deploy" / "demo_catalog.yaml"
    repo = MeterRepository(sf, file_prices=lambda tenant: file_catalog_prices(demo, tenant))
    with pytest.raises(InvalidEvent) as err:
        repo.create("cloudco", meter("storage_gb_hours", "LATEST"))
    assert err.value.field == "aggregation" and "catalog plan cloud-standard" in err.value.reason
    with pytest.raises(InvalidEvent) as err:
        repo.create("cloudco", meter("api_calls", "UNIQUE_COUNT"))
    assert "catalog plan cloud-enterprise" in err.value.reason  # org-000..002 are on it (and cloud-standard)
    assert repo.create("cloudco", meter("storage_gb_hours", "SUM")).aggregation == "SUM"
    assert repo.create("cloudco", meter("peak", "MAX")).aggregation == "MAX"  # not priced: querying only
    assert repo.create("nobody", meter("api_calls", "UNIQUE_COUNT")).slug == "api_calls"  # no assignment
    assert file_catalog_prices(ROOT / "no-such-catalog.yaml", "cloudco") == {}


def test_catalog_apply_publishes_through_the_same_rule(sf) -> None:
    """`meterstream catalog apply`: a file plan pricing the tenant's LATEST meter is refused at its plan."""
    MeterRepository(sf).create("t1", meter("storage_gb_hours", "LATEST"))
    doc = {
        "plans": [{"id": "cloud", "currency": "USD", "meters": {"storage_gb_hours": {"model": "unit",
                                                                                      "unit_amount": "0.000137"}}}],
        "assignments": [{"tenant": "t1", "customer": "*", "plan": "cloud"}],
    }  # fmt: skip
    with pytest.raises(CatalogApplyError) as err:
        apply_catalog(sf, doc)
    assert "plans[0]" in str(err.value) and "storage_gb_hours" in str(err.value) and "LATEST" in str(err.value)
    with pytest.raises(NotFound):
        get_plan(sf, "t1", "cloud")
    doc["plans"][0]["meters"]["storage_gb_hours"] = FREE  # metered, never charged: applied
    apply_catalog(sf, doc)
    assert get_plan(sf, "t1", "cloud").version == 1


def test_catalog_prices_by_assignment_and_money() -> None:
    catalog = parse_catalog({
        "plans": [
            {"id": "a", "currency": "USD", "meters": {"calls": UNIT_1, "peak": FREE}},
            {"id": "b", "currency": "USD", "meters": {"storage": {"model": "graduated", "tiers": [
                {"up_to": "10", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0", "flat_amount": "5"}]}}},
        ],
        "assignments": [{"tenant": "t1", "customer": "*", "plan": "a"}, {"tenant": "t1", "customer": "c", "plan": "b"},
                        {"tenant": "t2", "customer": "*", "plan": "b"}],
    })  # fmt: skip
    assert catalog_prices(catalog, "t1") == {"calls": ["catalog plan a"], "storage": ["catalog plan b"]}
    assert catalog_prices(catalog, "t2") == {"storage": ["catalog plan b"]}
    assert catalog_prices(catalog, "t3") == {}
    assert catalog_prices(None, "t1") == {}


@pytest.mark.parametrize(
    ("price", "charging"),
    [
        ({"model": "unit", "unit_amount": "0"}, False),
        ({"model": "unit", "unit_amount": "0.00"}, False),
        ({"model": "unit", "unit_amount": "0.000137"}, True),
        ({"model": "unit", "unit_amount": "0", "minimum": "5"}, True),  # a period minimum bills money
        ({"model": "unit", "unit_amount": "0", "free_units": "100", "maximum": "9"}, False),
        ({"model": "graduated", "tiers": [{"up_to": "10", "unit_amount": "0"}, {"up_to": None, "flat_amount": "1"}]},
         True),
        ({"model": "volume", "tiers": [{"up_to": None, "block_size": "100", "block_amount": "2"}]}, True),
        ({"model": "package", "package_size": "1000", "package_amount": "0.12"}, True),
        ({"model": "percentage", "rate": "0", "fixed_amount": "0.25"}, True),
        ({"model": "percentage", "rate": "0"}, False),
        ("not a price", True),
        # a shape with an amount of a name not known yet counts as charging; its words and quantities do not
        ({"model": "unit", "unit_amount": "0", "surcharge": "0.10"}, True),
        ({"model": "unit", "unit_amount": "0", "surcharge": "0", "note": "per call", "conversion_rounding": "up",
          "conversion_precision": 2, "divide_by": "60", "multiply_by": "2"}, False),
    ],
)  # fmt: skip
def test_charges(price: object, charging: bool) -> None:
    assert charges(price) is charging


def test_every_number_of_every_price_shape_is_known_as_money_or_not() -> None:
    """`charges` reads the shapes by their field names: every numeric field of rating/price.py's models (tiers
    included) must be in `_MONEY` or `_NOT_MONEY`, so a field added to a shape is classified on purpose."""
    import inspect
    import typing
    from decimal import Decimal

    import pydantic

    from meterstream.entities.priceable import _MONEY, _NOT_MONEY
    from meterstream.rating import price as shapes

    def numeric(annotation: object) -> bool:
        if annotation in (Decimal, int):
            return True
        return any(numeric(arg) for arg in typing.get_args(annotation))

    fields = {
        name
        for model in vars(shapes).values()
        if inspect.isclass(model) and issubclass(model, pydantic.BaseModel) and model.__module__ == shapes.__name__
        for name, info in model.model_fields.items()
        if numeric(info.annotation)
    }
    assert fields, "no numeric field found: the reading of rating/price.py is wrong"
    assert not _MONEY & _NOT_MONEY
    assert fields - _MONEY - _NOT_MONEY == set()


def test_a_subscription_override_cannot_put_money_on_a_meter_that_is_not_a_sum(sf) -> None:
    """The plan meters `peak` (a MAX meter) at 0, which is allowed; a customer's own price for it would bill the
    sum of its readings (3 x 10 = 30 where the meter says 10): refused, naming the override."""
    MeterRepository(sf).create(TENANT, meter("peak", "MAX"))
    publish_plan(sf, plan("pk", usage={"api_calls": UNIT_1, "peak": FREE}, fixed=[]))
    put_customer(sf, customer("c1"))
    with pytest.raises(Invalid) as err:
        create_subscription(sf, subscription(phases=[phase("pk", usage_overrides={"peak": UNIT_1})]))
    assert err.value.field == "phases[0].usage_overrides.peak"
    # an own price on a sum meter is fine
    made = create_subscription(sf, subscription(phases=[phase("pk", usage_overrides={"api_calls": FREE})]))
    assert made.phases[0].usage_overrides == {"api_calls": FREE}


def test_catalog_apply_refused_for_a_plan_it_prices_writes_nothing(sf) -> None:
    """A file whose second plan prices the tenant's MAX meter: refused before anything is written, the customer
    and the first plan included (they were written before the refused plan, a file half applied)."""
    MeterRepository(sf).create("t1", meter("peak", "MAX"))
    doc = {
        "tenant": "t1",
        "customers": [{"external_id": "acme", "name": "Acme"}],
        "plans": [
            {"code": "basic", "currency": "USD", "usage": {"calls": UNIT_1}},
            {"code": "peaky", "currency": "USD", "usage": {"peak": UNIT_1}},
        ],
    }
    with pytest.raises(CatalogApplyError) as err:
        apply_catalog(sf, doc)
    assert "plans[1]" in str(err.value) and "peak" in str(err.value) and "MAX" in str(err.value)
    with pytest.raises(NotFound):
        get_plan(sf, "t1", "basic")
    with pytest.raises(NotFound):
        get_customer_doc(sf, "t1", "acme")


def test_catalog_apply_refused_for_a_subscription_override_writes_nothing(sf) -> None:
    """The same for a subscription's own price on the MAX meter (its plan meters it at 0): refused at the
    subscription's override before the customer and the plan are written."""
    MeterRepository(sf).create("t1", meter("peak", "MAX"))
    doc = {
        "tenant": "t1",
        "customers": [{"external_id": "acme", "name": "Acme"}],
        "plans": [{"code": "pk", "currency": "USD", "usage": {"calls": UNIT_1, "peak": FREE}}],
        "subscriptions": [{"external_id": "s1", "customer": "acme", "plan": "pk", "usage_overrides": {"peak": UNIT_1}}],
    }
    with pytest.raises(CatalogApplyError) as err:
        apply_catalog(sf, doc)
    assert "subscriptions[0].usage_overrides.peak" in str(err.value) and "MAX" in str(err.value)
    with pytest.raises(NotFound):
        get_plan(sf, "t1", "pk")
    with pytest.raises(NotFound):
        get_customer_doc(sf, "t1", "acme")
    doc["subscriptions"][0]["usage_overrides"] = {"calls": FREE}  # an own price on a sum meter: applied
    apply_catalog(sf, doc)
    assert get_plan(sf, "t1", "pk").version == 1


def test_catalog_apply_of_the_same_file_again_is_unchanged_even_if_a_meter_changed_since(sf) -> None:
    """The override check is for subscriptions the file creates: applying the same file again after a meter the
    override prices was defined as MAX writes nothing and refuses nothing (the subscription is left as it is)."""
    doc = {
        "tenant": "t1",
        "customers": [{"external_id": "acme", "name": "Acme"}],
        "plans": [{"code": "pk", "currency": "USD", "usage": {"calls": UNIT_1, "peak": FREE}}],
        "subscriptions": [{"external_id": "s1", "customer": "acme", "plan": "pk", "usage_overrides": {"peak": UNIT_1}}],
    }
    apply_catalog(sf, doc)
    MeterRepository(sf).create("t1", meter("peak", "MAX"))
    again = apply_catalog(sf, doc)
    assert {c.outcome for c in again.changes} == {"unchanged"}
