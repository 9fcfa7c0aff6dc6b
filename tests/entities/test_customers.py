"""Customers as billing documents (SQLite and PostgreSQL): versions, optimistic locking, bad input, OpenMeter."""

from __future__ import annotations

import threading

import pytest
from entity_docs import TENANT, customer, outbox_count, subscription
from entity_docs import plan as plan_doc

from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import (
    CustomerCreate,
    CustomerRepository,
    delete_customer,
    get_customer_doc,
    list_customer_docs,
    put_customer,
)
from meterstream.entities.outbox import read_outbox
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import create_subscription
from meterstream.schemas.entities import Address, CustomerDoc, decode_change


def test_create_then_update_bumps_the_version_and_keeps_every_field(sf) -> None:
    first = put_customer(sf, customer(email="billing@acme.example", currency="EUR", version=42))
    assert first.version == 1  # the given version is ignored
    full = customer(
        legal_name="Acme Anlagenbau GmbH", email="ap@acme.example", tax_id="DE123456789", country="DE",
        address=Address(line1="Hauptstr. 1", city="Berlin", postal_code="10115", country="DE"), currency="EUR",
        timezone="Europe/Berlin", invoice_grace_days=3, payment_terms_days=30, metadata={"crm": "hs-991"},
    )  # fmt: skip
    second = put_customer(sf, full)
    assert second.version == 2
    got = get_customer_doc(sf, TENANT, "c1")
    assert got == second
    assert (got.legal_name, got.tax_id, got.country, got.timezone) == (
        "Acme Anlagenbau GmbH", "DE123456789", "DE", "Europe/Berlin"
    )  # fmt: skip
    assert got.address == Address(line1="Hauptstr. 1", city="Berlin", postal_code="10115", country="DE")
    assert (got.invoice_grace_days, got.payment_terms_days, got.metadata) == (3, 30, {"crm": "hs-991"})


def test_an_identical_put_writes_nothing(sf) -> None:
    put_customer(sf, customer(currency="USD"))
    before = outbox_count(sf)
    again = put_customer(sf, customer(currency="USD"))
    assert again.version == 1
    assert outbox_count(sf) == before


def test_stale_expected_version_is_a_conflict_naming_version(sf) -> None:
    put_customer(sf, customer())
    put_customer(sf, customer(name="Acme 2"), expected_version=1)
    with pytest.raises(Conflict) as exc:
        put_customer(sf, customer(name="Acme 3"), expected_version=1)
    assert exc.value.field == "version" and "version 2" in str(exc.value)
    assert get_customer_doc(sf, TENANT, "c1").name == "Acme 2"
    with pytest.raises(Conflict):  # expected_version on a customer that does not exist
        put_customer(sf, customer("new"), expected_version=3)


def test_two_concurrent_edits_one_wins_the_other_gets_a_conflict(sf) -> None:
    put_customer(sf, customer())
    barrier = threading.Barrier(2)
    results: list[object] = []

    def edit(name: str) -> None:
        seen = get_customer_doc(sf, TENANT, "c1")
        barrier.wait()
        try:
            results.append(put_customer(sf, customer(name=name), expected_version=seen.version))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=edit, args=(n,)) for n in ("Left", "Right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [r for r in results if isinstance(r, CustomerDoc)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].field == "version"
    stored = get_customer_doc(sf, TENANT, "c1")
    assert stored.version == 2 and stored.name == won[0].name


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"external_id": "*"}, "external_id"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "usd"}, "currency"),
        ({"country": "Germany"}, "country"),
        ({"country": "XX"}, "country"),  # two capitals, but no country: invoicing would refuse it (billing/taxes)
        ({"country": "ZZ"}, "country"),
        ({"email": "not-an-address"}, "email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"invoice_grace_days": -1}, "invoice_grace_days"),
        ({"payment_terms_days": 400}, "payment_terms_days"),
        ({"address": Address(country="deu")}, "address.country"),
        ({"address": Address(country="QQ")}, "address.country"),
        ({"metadata": {"n": 1}}, "metadata.n"),
        ({"tenant": "a/b"}, "tenant"),
    ],
)
def test_bad_customer_names_the_field_and_writes_nothing(sf, changes, field) -> None:
    before = outbox_count(sf)
    with pytest.raises(Invalid) as exc:
        put_customer(sf, customer(**changes))
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")
    assert outbox_count(sf) == before
    assert list_customer_docs(sf, TENANT) == []


def test_list_pages_oldest_first(sf) -> None:
    for i in range(5):
        put_customer(sf, customer(f"c{i}"))
    put_customer(sf, customer("other", tenant="globex"))
    assert [c.external_id for c in list_customer_docs(sf, TENANT, limit=2, offset=1)] == ["c1", "c2"]
    assert len(list_customer_docs(sf, TENANT)) == 5
    with pytest.raises(NotFound):
        get_customer_doc(sf, TENANT, "other")  # another tenant's customer is invisible


def test_openmeter_customers_are_the_same_customers(sf) -> None:
    om = CustomerRepository(sf).create(TENANT, CustomerCreate(name="Org One", key="org-1", currency="usd"))
    keyless = CustomerRepository(sf).create(TENANT, CustomerCreate(name="No Key"))
    doc = get_customer_doc(sf, TENANT, "org-1")
    assert (doc.name, doc.currency, doc.version) == ("Org One", "USD", 1)
    assert get_customer_doc(sf, TENANT, keyless.id).name == "No Key"  # no key: the external id is its id
    updated = put_customer(sf, customer("org-1", name="Org One Ltd", currency="USD"), expected_version=1)
    assert updated.version == 2
    assert CustomerRepository(sf).get(TENANT, om.id).name == "Org One Ltd"  # one row for both APIs
    changes = [decode_change(v) for _, _, v in read_outbox(sf, 0, 10)]
    assert [(c.external_id, c.version) for c in changes] == [("org-1", 1), (keyless.id, 1), ("org-1", 2)]


def test_delete_is_refused_while_a_subscription_runs(sf) -> None:
    put_customer(sf, customer())
    publish_plan(sf, plan_doc())
    create_subscription(sf, subscription())
    with pytest.raises(Conflict) as exc:
        delete_customer(sf, TENANT, "c1")
    assert exc.value.field == "external_id" and "s1" in str(exc.value)
    put_customer(sf, customer("c2"))
    gone = delete_customer(sf, TENANT, "c2", expected_version=1)
    assert gone.deleted and gone.version == 2
    with pytest.raises(NotFound):
        get_customer_doc(sf, TENANT, "c2")
    assert decode_change(read_outbox(sf, 0, 100)[-1][2]) == gone
    again = put_customer(sf, customer("c2"))  # the same external id again: versions go on past the deletion
    assert again.version == 3 and not again.deleted
    assert get_customer_doc(sf, TENANT, "c2").version == 3


def test_currency_cannot_change_under_a_running_subscription(sf) -> None:
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan_doc())  # USD
    create_subscription(sf, subscription())
    with pytest.raises(Conflict) as exc:
        put_customer(sf, customer(currency="EUR"))
    assert exc.value.field == "currency" and "basic@1" in str(exc.value)
    assert get_customer_doc(sf, TENANT, "c1").currency == "USD"
    put_customer(sf, customer(currency="USD", name="Renamed"))  # other changes are fine


def test_openmeter_replace_changes_its_fields_keeps_the_billing_details_and_bumps_the_version(sf) -> None:
    put_customer(sf, customer("org-1", legal_name="Org One GmbH", tax_id="DE1", invoice_grace_days=3,
                              description="old", email="a@org.example"))  # fmt: skip
    repo = CustomerRepository(sf)
    new = CustomerCreate(name="Org One", key="org-1", currency="eur", metadata={"tier": 2},
                         billing_address=Address(city="Berlin", country="DE", phone_number="+49 30 1"),
                         timezone="Europe/Berlin")  # fmt: skip
    replaced = repo.replace(TENANT, "org-1", new, subject_keys=["u1"], expected_version=1)
    assert (replaced.version, replaced.subject_keys, replaced.currency) == (2, ("u1",), "EUR")
    doc = get_customer_doc(sf, TENANT, "org-1")
    assert (doc.version, doc.name, doc.legal_name, doc.tax_id, doc.invoice_grace_days) == (
        2, "Org One", "Org One GmbH", "DE1", 3)  # fmt: skip
    assert (doc.description, doc.email, doc.timezone, doc.metadata) == (None, None, "Europe/Berlin", {"tier": "2"})
    assert doc.address == Address(city="Berlin", country="DE", phone_number="+49 30 1")
    assert decode_change(read_outbox(sf, 0, 10)[-1][2]) == doc  # on the outbox, in the same transaction
    before = outbox_count(sf)
    assert repo.replace(TENANT, replaced.id, new, subject_keys=None).version == 2  # identical: nothing written
    assert outbox_count(sf) == before
    with pytest.raises(Conflict) as exc:
        repo.replace(TENANT, "org-1", new, subject_keys=None, expected_version=1)
    assert exc.value.field == "version"
    with pytest.raises(Invalid) as exc:
        repo.replace(TENANT, "org-1", CustomerCreate(name="X", key="org-2"), subject_keys=None)
    assert exc.value.field == "key"
    with pytest.raises(Invalid) as exc:
        repo.replace(TENANT, "org-1", CustomerCreate(name="X", billing_address=Address(country="Germany")),
                     subject_keys=None)  # fmt: skip
    assert exc.value.field == "address.country"
    assert get_customer_doc(sf, TENANT, "org-1").version == 2 and outbox_count(sf) == before


def test_an_openmeter_and_a_v1_edit_at_once_one_wins(sf) -> None:
    """Optimistic locking holds across the APIs: both edit from version 1, one gets a Conflict on `version`."""
    put_customer(sf, customer("org-1"))
    barrier = threading.Barrier(2)
    results: list[object] = []

    def v1() -> None:
        barrier.wait()
        try:
            results.append(put_customer(sf, customer("org-1", name="From v1"), expected_version=1))
        except Conflict as exc:
            results.append(exc)

    def om() -> None:
        barrier.wait()
        try:
            results.append(CustomerRepository(sf).replace(TENANT, "org-1", CustomerCreate(name="From OpenMeter"),
                                                          subject_keys=None, expected_version=1))  # fmt: skip
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=v1), threading.Thread(target=om)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(results) == 2 and len(lost) == 1 and lost[0].field == "version", results
    stored = get_customer_doc(sf, TENANT, "org-1")
    assert stored.version == 2 and stored.name in ("From v1", "From OpenMeter")
