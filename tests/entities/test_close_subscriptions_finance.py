"""Issue #15, "Done when": a month closed for a German business with a valid VAT number (reverse charge, 0 %),
a French consumer (20 % VAT) and a US customer (flat sales tax) with a minimum commitment, each invoice compared
to a hand calculation; a late event after finalization becomes the documented adjustment; re-running the
close changes nothing. Embedded ClickHouse (chdb) and the entity store on SQLite and PostgreSQL.

Issuer: ACME SAS, France, VAT-registered, invoice prefix ACME; tax table: the EU standard rates (FR 20 %)
plus a flat US sales tax of 7.25 % (docs/taxes.md). No coupons: the close applies none (docs/billing.md).
Subscriptions start at the local start of October 2026, monthly calendar periods, fees in arrears (each
close bills its own month's fee).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import func, select

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.billing.taxes import REVERSE_CHARGE_MENTION, Seller, TaxTable
from meterstream.entities import invoices
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import create_subscription
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.issue import Issuing
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import Catalog
from meterstream.schemas.entities import Address, CustomerDoc, FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.invoice import Address as PartyAddress
from meterstream.schemas.invoice import Party, decode, validate

T = "acme"
EMPTY_CATALOG = Catalog(plans={})
ISSUING = Issuing(
    issuer=Party(name="ACME SAS", address=PartyAddress(line1="1 rue de la Paix", city="Paris", postal_code="75002",
                                                       country="FR"), tax_id="FR40303265045"),
    seller=Seller("FR"),
    prefix="ACME",
    table=TaxTable({"US": {"standard": "0.0725"}}),
)  # fmt: skip


@pytest.fixture
def db(chdb_client) -> str:
    name = f"f_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    return name


def customer_with_plan(sf, customer: CustomerDoc, currency: str, unit: str, fee: str, minimum: str | None = None):
    code = f"plan-{customer.external_id}"
    publish_plan(sf, PlanVersionDoc(
        tenant=T, code=code, version=0, name=code, currency=currency,
        usage={"api_calls": {"model": "unit", "unit_amount": unit}},
        fixed=[FixedCharge(code="base", name="Base fee", amount=Decimal(fee), timing="arrears")],
        minimum_commitment=Decimal(minimum) if minimum else None,
    ))  # fmt: skip
    put_customer(sf, customer)
    start = datetime(2026, 10, 1, tzinfo=ZoneInfo(customer.timezone))
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id=f"s-{customer.external_id}",
                                            customer=customer.external_id, version=0,
                                            phases=[Phase(plan_code=code, plan_version=1, start=start)]))  # fmt: skip


def usage(client, db: str, customer: str, at: datetime, quantity: str, currency: str) -> None:
    row = [T, uuid.uuid4().hex, customer, "", "api_calls", at, f"{at:%Y-%m}", Decimal(quantity), Decimal(0),
           Decimal(0), currency, f"plan-{customer}@1", "api_calls", {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def setup(sf, client, db: str) -> None:
    customer_with_plan(sf, CustomerDoc(
        tenant=T, external_id="de-gmbh", name="Muster", legal_name="Muster GmbH", version=0, country="DE",
        tax_id="DE136695976", timezone="Europe/Berlin", payment_terms_days=30,
        address=Address(line1="Hauptstr. 5", city="Berlin", postal_code="10115", country="DE"),
    ), "EUR", unit="0.125", fee="99.00")  # fmt: skip
    customer_with_plan(sf, CustomerDoc(
        tenant=T, external_id="fr-consumer", name="Marie Curie", version=0, country="FR", timezone="Europe/Paris",
    ), "EUR", unit="0.01", fee="19.99")  # fmt: skip
    customer_with_plan(sf, CustomerDoc(
        tenant=T, external_id="us-inc", name="Example Inc.", version=0, country="US", timezone="America/New_York",
        payment_terms_days=15, address=Address(city="Austin", state="TX", country="US"),
    ), "USD", unit="0.18", fee="50.00", minimum="300.00")  # fmt: skip
    usage(client, db, "de-gmbh", datetime(2026, 10, 10, tzinfo=UTC), "10000", "EUR")  # 10,000 x 0.125 = 1,250.00
    usage(client, db, "fr-consumer", datetime(2026, 10, 10, tzinfo=UTC), "4237", "EUR")  # 4,237 x 0.01 = 42.37
    usage(client, db, "us-inc", datetime(2026, 10, 10, tzinfo=UTC), "1000", "USD")  # 1,000 x 0.18 = 180.00


def close(client, db: str, sf, label: str, out: Path):
    return close_period(client, db, EMPTY_CATALOG, label, out, progress=False, store=StoreView(sf), issuing=ISSUING)


def by_customer(result) -> dict[str, dict[str, Any]]:
    return {d["customer"]: d for d in result.invoices}


def lines(doc: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(kind, amount, tax rate, tax amount, tax category) of each line."""
    return [(ln["kind"], ln["amount"], ln["tax_rate"], ln["tax_amount"], ln["tax_category"]) for ln in doc["lines"]]


def test_the_issues_three_customers_by_hand(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    out = tmp_path / "inv"
    result = close(chdb_client, db, sf, "2026-10", out)
    assert result.failed == []
    docs = by_customer(result)
    assert sorted(docs) == ["de-gmbh", "fr-consumer", "us-inc"]

    # German business, valid VAT number, French seller: reverse charge, 0 %, with the Art. 196 mention.
    # 1,250.00 + 99.00 = 1,349.00 EUR, no tax. Issued on Nov 1 (Berlin), due 30 days later.
    de = docs["de-gmbh"]
    assert lines(de) == [("usage", "1250.00", "0", "0.00", "AE"), ("fixed", "99.00", "0", "0.00", "AE")]
    assert (de["subtotal"], de["tax_total"], de["total"], de["amount_due"]) == ("1349.00", "0.00", "1349.00", "1349.00")
    assert de["taxes"] == [{"rate": "0", "taxable_amount": "1349.00", "tax_amount": "0.00", "tax_code": "standard",
                            "category": "AE", "reverse_charge": True, "mention": REVERSE_CHARGE_MENTION}]  # fmt: skip
    assert de["legal_mentions"] == [REVERSE_CHARGE_MENTION]
    assert (de["issue_date"], de["due_date"], de["timezone"]) == ("2026-11-01", "2026-12-01", "Europe/Berlin")
    assert de["buyer"]["name"] == "Muster GmbH" and de["buyer"]["tax_id"] == "DE136695976"
    assert de["issuer"]["name"] == "ACME SAS"

    # French consumer: 20 % French VAT. 42.37 + 19.99 = 62.36; 62.36 x 0.20 = 12.472 -> 12.47 for the group,
    # shared by largest remainder: 42.37 x 0.2 = 8.474 -> 8.47, 19.99 x 0.2 = 3.998 -> 4.00 (8.47 + 4.00 = 12.47).
    fr = docs["fr-consumer"]
    assert lines(fr) == [("usage", "42.37", "0.20", "8.47", "S"), ("fixed", "19.99", "0.20", "4.00", "S")]
    assert (fr["subtotal"], fr["tax_total"], fr["total"]) == ("62.36", "12.47", "74.83")
    assert [(t["rate"], t["taxable_amount"], t["tax_amount"]) for t in fr["taxes"]] == [("0.20", "62.36", "12.47")]
    assert (fr["issue_date"], fr["due_date"]) == ("2026-11-01", "2026-11-01")  # no payment terms: due on issue

    # US customer, flat sales tax 7.25 %: usage 1,000 x 0.18 = 180.00, base fee 50.00, minimum commitment
    # 300.00 less usage and fees (docs/billing.md): true-up 300.00 - 180.00 - 50.00 = 70.00; subtotal 300.00;
    # tax 300.00 x 0.0725 = 21.75 exactly, shared among the lines by largest remainder: 180 x 0.0725 = 13.05,
    # 50 x 0.0725 = 3.625, 70 x 0.0725 = 5.075 -> floors 13.05 + 3.62 + 5.07 = 21.74, the cent left goes to the
    # first of the equal remainders (0.5 each): 3.63; total 321.75 USD. Issued Nov 1 (New York), due 15 days later.
    us = docs["us-inc"]
    assert lines(us) == [("usage", "180.00", "0.0725", "13.05", "S"), ("fixed", "50.00", "0.0725", "3.63", "S"),
                         ("minimum", "70.00", "0.0725", "5.07", "S")]  # fmt: skip
    assert (us["subtotal"], us["tax_total"], us["total"], us["currency"]) == ("300.00", "21.75", "321.75", "USD")
    assert (us["issue_date"], us["due_date"]) == ("2026-11-01", "2026-11-16")

    # finalized, numbered without gaps in the order closed (customer order), recorded in the store
    assert [(d["status"], d["number"]) for d in result.invoices] == [
        ("finalized", "ACME-2026-000001"), ("finalized", "ACME-2026-000002"), ("finalized", "ACME-2026-000003")]
    for d in result.invoices:
        record = invoices.get(sf, T, d["id"])
        assert (record.status, record.number, record.total) == ("finalized", d["number"], Decimal(d["total"]))
        assert decode(record.document) == decode(orjson.dumps(d))  # the store holds the document written
        file_doc = validate(decode((out / "2026-10" / T / f"{d['customer']}.json").read_bytes()))
        assert file_doc.number == d["number"]  # the file carries the numbered document
    stored = chdb_client.query(f"SELECT customer, total, document FROM {db}.invoices FINAL ORDER BY customer")
    assert [(c, t) for c, t, _ in stored.result_rows] == [
        ("de-gmbh", Decimal("1349")), ("fr-consumer", Decimal("74.83")), ("us-inc", Decimal("321.75"))]  # fmt: skip
    assert orjson.loads(stored.result_rows[0][2])["number"] == "ACME-2026-000001"


def test_rerun_changes_nothing_and_late_usage_is_adjusted_on_the_next_invoice(
    chdb_client, db: str, sf, tmp_path: Path
) -> None:
    setup(sf, chdb_client, db)
    out = tmp_path / "inv"
    first = close(chdb_client, db, sf, "2026-10", out)
    files = {p: p.read_bytes() for p in (out / "2026-10").rglob("*.json")}

    # a late event for October after its invoice was finalized: 100 calls x 0.01 = 1.00 EUR
    usage(chdb_client, db, "fr-consumer", datetime(2026, 10, 20, tzinfo=UTC), "100", "EUR")
    again = close(chdb_client, db, sf, "2026-10", out)
    assert again.reissued and again.invoices == first.invoices  # the finalized invoices never change
    assert {p: p.read_bytes() for p in (out / "2026-10").rglob("*.json")} == files
    with sf() as s:
        assert s.scalar(select(func.count()).select_from(invoices.InvoiceRow)) == 3  # no new record, no new number

    # the next close bills it as an adjustment line (docs/billing.md): November's fee 19.99 (arrears) plus
    # late usage for 2026-10: 100 calls, 1.00; subtotal 20.99, VAT 20 %: 4.198 -> 4.20; total 25.19
    nov = by_customer(close(chdb_client, db, sf, "2026-11", out))
    fr = nov["fr-consumer"]
    assert [(ln["kind"], ln["applies_to"], ln["quantity"], ln["amount"]) for ln in fr["lines"]] == [
        ("fixed", None, "30", "19.99"), ("adjustment", "2026-10", "100", "1.00")]  # the fee's quantity: 30 days
    assert (fr["subtotal"], fr["tax_total"], fr["total"]) == ("20.99", "4.20", "25.19")
    assert (fr["issue_date"], fr["number"]) == ("2026-12-01", "ACME-2026-000005")  # numbers go on: 4, 5, 6
    assert sorted(d["number"] for d in nov.values()) == ["ACME-2026-000004", "ACME-2026-000005", "ACME-2026-000006"]
    # the October invoice stays as it was
    assert invoices.get(sf, T, first.invoices[1]["id"]).total == Decimal("74.83")


def test_an_invalid_vat_number_fails_that_customer_alone(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    put_customer(sf, CustomerDoc(tenant=T, external_id="de-gmbh", name="Muster", version=1, country="DE",
                                 tax_id="DE136695977", timezone="Europe/Berlin"))  # fmt: skip  # bad check digit
    result = close(chdb_client, db, sf, "2026-10", tmp_path / "inv")
    assert [(c, r.split(":")[0]) for _, c, r in result.failed] == [("de-gmbh", "buyer.tax_id")]
    # the others are finalized, and the failed one used no number
    assert [(d["customer"], d["number"]) for d in result.invoices] == [
        ("fr-consumer", "ACME-2026-000001"), ("us-inc", "ACME-2026-000002")]


def test_the_issue_date_can_be_given(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    issuing = Issuing(ISSUING.issuer, ISSUING.seller, ISSUING.prefix, ISSUING.table, issue_date=date(2026, 11, 3))
    result = close_period(chdb_client, db, EMPTY_CATALOG, "2026-10", tmp_path / "inv", progress=False,
                          store=StoreView(sf), issuing=issuing)  # fmt: skip
    docs = by_customer(result)
    assert (docs["de-gmbh"]["issue_date"], docs["de-gmbh"]["due_date"]) == ("2026-11-03", "2026-12-03")


def test_per_user_shares_of_a_volume_priced_subscription_line(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # volume pricing: up to 100 calls at 0.10, above 100 every call at 0.05. October: u1 60 + u2 90 = 150 calls
    # -> 150 x 0.05 = 7.50 (per-event deltas would go negative when the total crosses 100: shares do not).
    # Shares by quantity: u1 60/150 x 7.50 = 3.00, u2 90/150 x 7.50 = 4.50. The November call is outside.
    volume = {"model": "volume", "tiers": [{"up_to": "100", "unit_amount": "0.10"},
                                           {"up_to": None, "unit_amount": "0.05"}]}  # fmt: skip
    publish_plan(sf, PlanVersionDoc(tenant=T, code="vol", version=0, name="vol", currency="USD",
                                    usage={"api_calls": volume}))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant=T, external_id="team", name="Team", version=0))
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s-team", customer="team", version=0,
                                            phases=[Phase(plan_code="vol", plan_version=1,
                                                          start=datetime(2026, 10, 1, tzinfo=UTC))]))  # fmt: skip
    for subject, quantity, day in (("u1", "60", 3), ("u2", "40", 5), ("u2", "50", 31)):
        row = [T, uuid.uuid4().hex, "team", subject, "api_calls", datetime(2026, 10, day, 12, tzinfo=UTC), "2026-10",
               Decimal(quantity), Decimal(0), Decimal(0), "USD", "vol@1", "api_calls", {}, "", 0, 0]  # fmt: skip
        chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))
    row = [T, uuid.uuid4().hex, "team", "u1", "api_calls", datetime(2026, 11, 1, tzinfo=UTC), "2026-11",
           Decimal("7"), Decimal(0), Decimal(0), "USD", "vol@1", "api_calls", {}, "", 0, 0]  # fmt: skip
    chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))
    (doc,) = close(chdb_client, db, sf, "2026-10", tmp_path / "inv").invoices
    (line,) = doc["lines"]
    assert (line["quantity"], line["amount"]) == ("150", "7.50")
    assert line["subjects"] == [{"subject": "u1", "quantity": "60", "amount": "3.00"},
                                {"subject": "u2", "quantity": "90", "amount": "4.50"}]  # fmt: skip
