"""The customer list's filters (entities/customers.py `CustomerFilter`, Lago's `customers.find_all`) on SQLite and
PostgreSQL: search text (name, external id, email, legal name; case aside, LIKE's own characters literal), external
id, countries, states, zip codes, currencies, tax id set or not, tax id, metadata, and `nothing`. Expected ids are
read off the customers stored here, by hand."""

from __future__ import annotations

import pytest

from meterstream.entities.customers import CustomerFilter, customer_page, delete_customer, put_customer
from meterstream.schemas.entities import Address, CustomerDoc

T = "t1"


@pytest.fixture
def store(sf):  # type: ignore[no-untyped-def]
    def put(external_id: str, name: str, **fields) -> None:  # type: ignore[no-untyped-def]
        put_customer(sf, CustomerDoc(tenant=T, external_id=external_id, name=name, version=0, **fields))

    put("acme", "Acme Corp", email="ap@acme.example", legal_name="Acme SAS", country="FR", currency="EUR",
        tax_id="FR123", address=Address(city="Paris", postal_code="75002", state="IDF"),
        metadata={"crm": "42", "tier": "gold", "région": "Île"})  # fmt: skip
    put("globex_us", "Globex 100%", email="billing@globex.example", country="US", currency="USD",
        address=Address(postal_code="94107", state="CA"), metadata={"crm": "7"})  # fmt: skip
    put("kerry", "Kerry Brew", legal_name="Kerry Brewing Ltd", country="IE", currency="EUR", tax_id="IE9S",
        address=Address(state="Munster"))  # fmt: skip
    put("bare", "Bare")  # nothing but a name
    put("gone", "Acme Gone", country="FR")
    delete_customer(sf, T, "gone")  # deleted: never listed
    put_customer(sf, CustomerDoc(tenant="other", external_id="acme-other", name="Acme", version=0, country="FR"))
    return sf


def _ids(sf, where: CustomerFilter, page: int = 1, per_page: int = 100) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    found, total = customer_page(sf, T, page, per_page, where)
    return [doc.external_id for doc, _, _ in found], total


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        (CustomerFilter(), ["acme", "globex_us", "kerry", "bare"]),
        (CustomerFilter(search="ACME"), ["acme"]),  # the name (not the deleted one, not the other tenant's)
        (CustomerFilter(search="brewing"), ["kerry"]),  # the legal name only
        (CustomerFilter(search="@globex"), ["globex_us"]),  # the email
        (CustomerFilter(search="x_u"), ["globex_us"]),  # the external id
        (CustomerFilter(search="_"), ["globex_us"]),  # `_` literal, not any one character
        (CustomerFilter(search="0%"), ["globex_us"]),  # `%` literal: "Globex 100%"
        (CustomerFilter(search="%"), ["globex_us"]),
        (CustomerFilter(search="\\"), []),  # `\` literal: in no field
        (CustomerFilter(search="re"), ["kerry", "bare"]),  # "Kerry Brew", "Bare"
        (CustomerFilter(external_id="kerry"), ["kerry"]),
        (CustomerFilter(external_id="KERRY"), []),  # exact
        (CustomerFilter(countries=("FR", "US")), ["acme", "globex_us"]),
        (CustomerFilter(countries=("DE",)), []),
        (CustomerFilter(states=("CA", "Munster")), ["globex_us", "kerry"]),
        (CustomerFilter(states=("ca",)), []),  # exact, as Lago
        (CustomerFilter(zipcodes=("75002",)), ["acme"]),
        (CustomerFilter(currencies=("EUR",)), ["acme", "kerry"]),
        (CustomerFilter(has_tax_id=True), ["acme", "kerry"]),
        (CustomerFilter(has_tax_id=False), ["globex_us", "bare"]),
        (CustomerFilter(tax_id="IE9S"), ["kerry"]),
        (CustomerFilter(metadata=(("crm", "42"),)), ["acme"]),
        (CustomerFilter(metadata=(("crm", "7"), ("tier", ""))), ["globex_us"]),  # crm 7 and no tier
        (CustomerFilter(metadata=(("crm", ""),)), ["kerry", "bare"]),  # no crm key
        (CustomerFilter(metadata=(("crm", "42"), ("tier", "silver"))), []),
        (CustomerFilter(metadata=(("région", "Île"),)), ["acme"]),  # a key that JSON text stores escaped
        (CustomerFilter(metadata=(("région", ""),)), ["globex_us", "kerry", "bare"]),
        (CustomerFilter(currencies=("EUR",), has_tax_id=True, search="kerry"), ["kerry"]),  # all of them
        (CustomerFilter(currencies=("EUR",), countries=("US",)), []),
        (CustomerFilter(nothing=True), []),
        (CustomerFilter(nothing=True, search="acme"), []),
    ],
)
def test_each_filter(store, where: CustomerFilter, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert _ids(store, where) == (ids, len(ids))


def test_pages_count_the_filtered_rows(store) -> None:  # type: ignore[no-untyped-def]
    where = CustomerFilter(countries=("FR", "US", "IE"))
    assert _ids(store, where, 1, 2) == (["acme", "globex_us"], 3)
    assert _ids(store, where, 2, 2) == (["kerry"], 3)
    assert _ids(store, where, 3, 2) == ([], 3)
