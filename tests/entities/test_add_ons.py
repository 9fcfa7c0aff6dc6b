"""The add-on store (entities/add_ons.py) on SQLite and PostgreSQL: create, read, list by pages, update (fields left
out stay), delete (hard: the code is free again), a taken code, tenants kept apart, the checks of the amount, the
currency and the tax codes; migration 0019 matches the model and goes down to 0018 and up again.
Expected values are written from the calls, by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import inspect

from meterstream.entities.add_ons import (
    AddOn,
    create_add_on,
    delete_add_on,
    get_add_on,
    list_add_ons,
    update_add_on,
)
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.tax_objects import TaxSpec, create_tax, delete_tax

A, B = "acme", "globex"


def _setup_fee(sf, tenant: str = A, **extra) -> AddOn:  # type: ignore[no-untyped-def]
    return create_add_on(sf, tenant, code="setup_fee", name="Setup fee", amount="150.00", currency="EUR", **extra)


def test_create_and_get(sf) -> None:  # type: ignore[no-untyped-def]
    made = _setup_fee(sf, invoice_display_name="Setup (one-time)", description="Onboarding")
    assert (made.code, made.name, made.invoice_display_name, made.description) == (
        "setup_fee", "Setup fee", "Setup (one-time)", "Onboarding")  # fmt: skip
    assert (made.currency, made.amount_minor, made.amount, made.tax_codes) == ("EUR", 15000, Decimal("150.00"), ())
    assert str(made.amount) == "150.00"  # the currency's two digits
    assert len(made.add_on_id) == 26 and made.created_at.tzinfo is not None
    assert get_add_on(sf, A, "setup_fee") == made
    yen = create_add_on(sf, A, code="day", name="Consulting day", amount=80000, currency="jpy")
    assert (yen.currency, yen.amount_minor, str(yen.amount)) == ("JPY", 80000, "80000")  # no minor digits
    dinar = create_add_on(sf, A, code="kwd", name="K", amount=Decimal("1.5"), currency="KWD")
    assert dinar.amount_minor == 1500  # three digits: 1.500


def test_list_by_pages_oldest_first(sf) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        create_add_on(sf, A, code=f"a{i}", name=f"A{i}", amount=i, currency="USD")
    create_add_on(sf, B, code="b0", name="B0", amount=1, currency="USD")
    first, total = list_add_ons(sf, A, page=1, per_page=2)
    assert ([a.code for a in first], total) == (["a0", "a1"], 5)
    assert [a.code for a in list_add_ons(sf, A, page=3, per_page=2)[0]] == ["a4"]
    assert list_add_ons(sf, A, page=4, per_page=2) == ([], 5)
    assert [a.code for a in list_add_ons(sf, A)[0]] == ["a0", "a1", "a2", "a3", "a4"]
    assert [a.amount_minor for a in list_add_ons(sf, A)[0]] == [0, 100, 200, 300, 400]
    with pytest.raises(Invalid) as bad:
        list_add_ons(sf, A, page=0)
    assert bad.value.field == "page"


def test_update_changes_what_is_passed(sf) -> None:  # type: ignore[no-untyped-def]
    made = _setup_fee(sf, description="Onboarding")
    renamed = update_add_on(sf, A, "setup_fee", name="Setup", amount="99.5")
    assert (renamed.name, renamed.amount_minor, renamed.description, renamed.currency) == (
        "Setup", 9950, "Onboarding", "EUR")  # fmt: skip
    assert (renamed.add_on_id, renamed.created_at) == (made.add_on_id, made.created_at)
    assert renamed.updated_at >= made.updated_at
    cleared = update_add_on(sf, A, "setup_fee", description=None, invoice_display_name="Setup!")
    assert (cleared.description, cleared.invoice_display_name) == (None, "Setup!")
    usd = update_add_on(sf, A, "setup_fee", currency="USD")  # the amount kept in major units: 99.50 USD
    assert (usd.currency, usd.amount_minor) == ("USD", 9950)
    with pytest.raises(Invalid) as fewer:  # 99.50 has no yen equivalent without rounding
        update_add_on(sf, A, "setup_fee", currency="JPY")
    assert fewer.value.field == "amount"
    jpy = update_add_on(sf, A, "setup_fee", currency="JPY", amount=12000)
    assert (jpy.currency, jpy.amount_minor) == ("JPY", 12000)
    moved = update_add_on(sf, A, "setup_fee", new_code="onboarding")
    assert moved.code == "onboarding" and moved.add_on_id == made.add_on_id
    with pytest.raises(NotFound, match="setup_fee"):
        get_add_on(sf, A, "setup_fee")
    assert get_add_on(sf, A, "onboarding").amount_minor == 12000
    with pytest.raises(NotFound, match="nope"):
        update_add_on(sf, A, "nope", name="X")


def test_delete_returns_it_and_frees_the_code(sf) -> None:  # type: ignore[no-untyped-def]
    made = _setup_fee(sf)
    gone = delete_add_on(sf, A, "setup_fee")
    assert gone == made
    assert list_add_ons(sf, A) == ([], 0)
    with pytest.raises(NotFound, match="setup_fee"):
        delete_add_on(sf, A, "setup_fee")
    again = _setup_fee(sf)
    assert again.add_on_id != made.add_on_id


def test_a_taken_code_is_a_conflict(sf) -> None:  # type: ignore[no-untyped-def]
    _setup_fee(sf)
    with pytest.raises(Conflict) as taken:
        _setup_fee(sf)
    assert taken.value.field == "code"
    create_add_on(sf, A, code="other", name="Other", amount="1", currency="EUR")
    with pytest.raises(Conflict) as renamed:
        update_add_on(sf, A, "other", new_code="setup_fee")
    assert renamed.value.field == "code"
    assert [a.code for a in list_add_ons(sf, A)[0]] == ["setup_fee", "other"]  # nothing changed


def test_tenants_are_kept_apart(sf) -> None:  # type: ignore[no-untyped-def]
    mine = _setup_fee(sf, A)
    with pytest.raises(NotFound):
        get_add_on(sf, B, "setup_fee")
    with pytest.raises(NotFound):
        update_add_on(sf, B, "setup_fee", name="Hijacked")
    with pytest.raises(NotFound):
        delete_add_on(sf, B, "setup_fee")
    assert list_add_ons(sf, B) == ([], 0)
    theirs = _setup_fee(sf, B)  # the same code in another tenant is no conflict
    assert theirs.add_on_id != mine.add_on_id
    assert get_add_on(sf, A, "setup_fee") == mine


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "150.001"}, "amount"),  # EUR has two decimals: never rounded
        ({"amount": "1.5", "currency": "JPY"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": 1.5}, "amount"),  # a float
        ({"amount": "abc"}, "amount"),
        ({"currency": "XXY"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"code": ""}, "code"),
        ({"code": " padded"}, "code"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"description": "x" * 1025}, "description"),
        ({"invoice_display_name": ""}, "invoice_display_name"),
        ({"tax_codes": "vat"}, "tax_codes"),
        ({"tax_codes": ["vat", 1]}, "tax_codes[1]"),
        ({"tax_codes": ["unknown"]}, "tax_codes"),
    ],
)
def test_bad_input_is_refused_naming_the_field(sf, changes: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    create_tax(sf, TaxSpec(tenant=A, code="vat", name="VAT", rate=Decimal(20)))
    args = {"code": "c", "name": "C", "amount": "10.00", "currency": "EUR", **changes}
    with pytest.raises(Invalid) as bad:
        create_add_on(sf, A, **args)
    assert bad.value.field == field
    assert list_add_ons(sf, A) == ([], 0)  # nothing written


def test_tax_codes_must_be_the_tenants_taxes(sf) -> None:  # type: ignore[no-untyped-def]
    create_tax(sf, TaxSpec(tenant=A, code="vat", name="VAT", rate=Decimal(20)))
    create_tax(sf, TaxSpec(tenant=A, code="eco", name="Eco", rate=Decimal("0.5")))
    create_tax(sf, TaxSpec(tenant=B, code="gst", name="GST", rate=Decimal(10)))
    made = _setup_fee(sf, tax_codes=["eco", "vat", "eco"])
    assert made.tax_codes == ("eco", "vat")  # once each, in the order given
    with pytest.raises(Invalid) as other:  # another tenant's tax is unknown here
        update_add_on(sf, A, "setup_fee", tax_codes=["gst"])
    assert other.value.field == "tax_codes"
    assert update_add_on(sf, A, "setup_fee", tax_codes=[]).tax_codes == ()
    assert update_add_on(sf, A, "setup_fee", name="S").tax_codes == ()
    assert update_add_on(sf, A, "setup_fee", tax_codes=("vat",)).tax_codes == ("vat",)
    delete_tax(sf, A, "vat")  # the add-on keeps the code it was given (readers show the taxes that exist)
    assert get_add_on(sf, A, "setup_fee").tax_codes == ("vat",)


def test_the_migration_matches_the_model(engine) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from meterstream.entities.db import Base

    assert "add_ons" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if "'add_ons'" in repr(d) or "table=add_ons" in repr(d) or "add_ons" in repr(d)] == []


def test_the_migration_goes_down_to_0018_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    _setup_fee(sf)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0018")
    names = set(inspect(engine).get_table_names())
    assert "add_ons" not in names and "coupons" in names
    migrate(engine=engine)
    assert _setup_fee(sf).amount_minor == 15000  # an empty table again: the code is free
    engine.dispose()


def test_a_code_taken_by_a_concurrent_write_is_a_conflict(sf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The unique index decides when two writers both saw the code free (the look-up is made to miss it)."""
    from meterstream.entities import add_ons

    _setup_fee(sf)
    create_add_on(sf, A, code="other", name="Other", amount="1", currency="EUR")
    real = add_ons._find

    def blind(s, tenant, code, *, lock=False):  # type: ignore[no-untyped-def]
        return None if code == "setup_fee" else real(s, tenant, code, lock=lock)

    monkeypatch.setattr(add_ons, "_find", blind)
    with pytest.raises(Conflict) as taken:
        _setup_fee(sf)
    assert taken.value.field == "code"
    with pytest.raises(Conflict) as renamed:
        update_add_on(sf, A, "other", new_code="setup_fee")
    assert renamed.value.field == "code"
    monkeypatch.undo()
    assert [(a.code, a.amount_minor) for a in list_add_ons(sf, A)[0]] == [("setup_fee", 15000), ("other", 100)]
