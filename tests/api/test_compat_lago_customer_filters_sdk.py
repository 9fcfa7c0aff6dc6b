"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQLite store): `customers.find_all`
with Lago's filters (search_term, external_id, countries[], states[], zipcodes[], currencies[],
has_tax_identification_number, tax_identification_number, metadata[key]; account_type[], billing_entity_codes[],
customer_type and has_customer_type on what Meterstream's customers never are) and a 422 naming a bad one. The
customers are created through the SDK; the expected ids are read off them, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer
from lago_python_client.models.customer import Metadata, MetadataList
from served_app import serve

T = "t1"
CRM_42 = MetadataList(__root__=[Metadata(key="crm", value="42", display_in_invoice=False)])


@pytest.fixture
def sdk(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            sdk = Client(api_key=key, api_url=f"{base}/compat/lago/")
            sdk.customers.create(Customer(
                external_id="acme", name="Acme Corp", email="ap@acme.example", legal_name="Acme SAS", country="fr",
                currency="EUR", tax_identification_number="FR123", zipcode="75002", state="IDF",
                metadata=CRM_42))  # fmt: skip
            sdk.customers.create(Customer(external_id="globex_us", name="Globex 100%", country="US", currency="USD",
                                          zipcode="94107", state="CA"))  # fmt: skip
            sdk.customers.create(Customer(external_id="kerry", firstname="Kerry", lastname="Brew", country="IE",
                                          currency="EUR", tax_identification_number="IE9S",
                                          legal_name="Kerry Brewing Ltd"))  # fmt: skip
            sdk.customers.create(Customer(external_id="bare"))
            yield sdk


def _ids(sdk: Client, options: dict) -> tuple[list[str], int]:
    found = sdk.customers.find_all(options)
    return [c.external_id for c in found["customers"]], found["meta"]["total_count"]


@pytest.mark.parametrize(
    ("options", "ids"),
    [
        ({}, ["acme", "globex_us", "kerry", "bare"]),
        ({"search_term": "acme"}, ["acme"]),
        ({"search_term": "BREWING"}, ["kerry"]),  # the legal name, case aside
        ({"search_term": "ap@"}, ["acme"]),  # the email
        ({"search_term": "_"}, ["globex_us"]),  # `_` taken literally: only the external id globex_us has one
        ({"search_term": "0%"}, ["globex_us"]),
        ({"search_term": "kerry brew"}, ["kerry"]),  # firstname + lastname are the name
        ({"external_id": "bare"}, ["bare"]),
        ({"countries[]": ["FR", "us"]}, ["acme", "globex_us"]),
        ({"states[]": ["CA"]}, ["globex_us"]),
        ({"zipcodes[]": ["75002", "94107"]}, ["acme", "globex_us"]),
        ({"currencies[]": ["EUR"]}, ["acme", "kerry"]),
        ({"currencies[]": ["EUR"], "countries[]": ["IE"]}, ["kerry"]),
        ({"has_tax_identification_number": "true"}, ["acme", "kerry"]),
        ({"has_tax_identification_number": "false"}, ["globex_us", "bare"]),
        ({"tax_identification_number": "FR123"}, ["acme"]),
        ({"metadata[crm]": "42"}, ["acme"]),
        ({"metadata[crm]": ""}, ["globex_us", "kerry", "bare"]),  # empty: no such key
        ({"account_type[]": ["customer"]}, ["acme", "globex_us", "kerry", "bare"]),  # every customer here
        ({"account_type[]": ["partner"]}, []),  # no partners here
        ({"account_type[]": ["customer", "partner"]}, ["acme", "globex_us", "kerry", "bare"]),
        ({"billing_entity_codes[]": ["default"]}, []),  # no billing entities here
        ({"customer_type": "company"}, []),  # customer_type is always null here
        ({"has_customer_type": "true"}, []),
        ({"has_customer_type": "false"}, ["acme", "globex_us", "kerry", "bare"]),
    ],
)
def test_find_all_filters(sdk: Client, options: dict, ids: list[str]) -> None:
    assert _ids(sdk, options) == (ids, len(ids))


def test_filters_and_pages(sdk: Client) -> None:
    assert _ids(sdk, {"currencies[]": ["EUR", "USD"], "per_page": 2, "page": 2}) == (["kerry"], 3)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"countries[]": ["FRA"]}, "countries[]"),
        ({"currencies[]": ["EU"]}, "currencies[]"),
        ({"has_tax_identification_number": "yes"}, "has_tax_identification_number"),
        ({"account_type[]": ["reseller"]}, "account_type[]"),
        ({"customer_type": "robot"}, "customer_type"),
        ({"has_customer_type": "1"}, "has_customer_type"),
        ({'metadata[a"b]': "x"}, 'metadata[a"b]'),
    ],
)
def test_a_bad_value_is_named(sdk: Client, options: dict, field: str) -> None:
    with pytest.raises(LagoApiError) as refused:
        sdk.customers.find_all(options)
    assert refused.value.status_code == 422 and list(refused.value.response["error_details"]) == [field]
