"""Issue #15, "Done when": a month closed for a German business with a valid VAT number (reverse charge, 0 %),
a French consumer (20 % VAT) and a US customer (flat sales tax) with a coupon and a minimum commitment, each
invoice compared to a hand calculation; a late event after finalization becomes the documented adjustment;
re-running the close changes nothing; a repeating coupon over 2 periods, then no more; a fixed coupon used once
whose rest carries over to the next invoice. Embedded ClickHouse (chdb) and the entity store on SQLite and
PostgreSQL.

Issuer: ACME SAS, France, VAT-registered, invoice prefix ACME; tax table: the EU standard rates (FR 20 %)
plus a flat US sales tax of 7.25 % (docs/taxes.md). Coupons (docs/coupons.md) come off before tax: each
coupon's amount is shared among the lines it applies to in proportion to their amounts (largest remainder in
cents), and each line is taxed on its amount less its share.
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
from sqlalchemy import func, select

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.billing.taxes import REVERSE_CHARGE_MENTION, Seller, TaxTable
from meterstream.entities import invoices
from meterstream.entities.coupons import CouponSpec, apply_coupon, create_coupon, list_applied
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import create_subscription
from meterstream.entities.tax_objects import TaxSpec, create_tax, set_customer_tax_codes
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


def setup(sf, client, db: str, *, us_coupon: bool = False) -> None:
    """The three customers and their October usage; `us_coupon`: the US customer holds coupon WELCOME10 (the
    issue's "with a coupon"; tests/api/test_invoices_after_close.py closes them without it)."""
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
    if us_coupon:  # 10 % off the whole invoice, once
        create_coupon(sf, CouponSpec(tenant=T, code="WELCOME10", name="Welcome 10 %", kind="percentage",
                                     percent_off=Decimal("10"), duration="once"))  # fmt: skip
        apply_coupon(sf, T, "us-inc", "WELCOME10")


def close(client, db: str, sf, label: str, out: Path):
    return close_period(client, db, EMPTY_CATALOG, label, out, progress=False, store=StoreView(sf), issuing=ISSUING)


def by_customer(result) -> dict[str, dict[str, Any]]:
    return {d["customer"]: d for d in result.invoices}


def lines(doc: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(kind, amount, tax rate, tax amount, tax category) of each line."""
    return [(ln["kind"], ln["amount"], ln["tax_rate"], ln["tax_amount"], ln["tax_category"]) for ln in doc["lines"]]


def test_the_issues_three_customers_by_hand(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db, us_coupon=True)
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

    # US customer, flat sales tax 7.25 %, coupon WELCOME10 (10 % off the whole invoice, once): usage
    # 1,000 x 0.18 = 180.00, base fee 50.00, minimum commitment 300.00 less usage and fees (docs/billing.md):
    # true-up 300.00 - 180.00 - 50.00 = 70.00; subtotal 300.00. The minimum true-up is a line like the others:
    # a whole-invoice coupon discounts it too (a coupon limited to line codes would only if it named it).
    # Coupon before tax: 10 % x 300.00 = 30.00, shared by amount: 18.00 / 5.00 / 7.00 (exact).
    # Taxable 162.00 + 45.00 + 63.00 = 270.00; tax 270.00 x 0.0725 = 19.575 -> 19.58 (half away from zero),
    # shared among the lines by largest remainder: 162 x 0.0725 = 11.745, 45 x 0.0725 = 3.2625, 63 x 0.0725 =
    # 4.5675 -> floors 11.74 + 3.26 + 4.56 = 19.56, the 2 cents left to the largest remainders (0.75: 4.57,
    # then 0.5: 11.75). Total 300.00 - 30.00 + 19.58 = 289.58 USD. Issued Nov 1 (New York), due 15 days later.
    us = docs["us-inc"]
    assert lines(us) == [("usage", "180.00", "0.0725", "11.75", "S"), ("fixed", "50.00", "0.0725", "3.26", "S"),
                         ("minimum", "70.00", "0.0725", "4.57", "S")]  # fmt: skip
    assert [ln["discount_amount"] for ln in us["lines"]] == ["18.00", "5.00", "7.00"]
    assert us["discounts"] == [{"code": "WELCOME10", "description": "Welcome 10 %", "kind": "percentage",
                                "percentage": "0.1", "amount": "30.00", "periods_remaining": 0}]  # fmt: skip
    assert (us["subtotal"], us["discount_total"], us["tax_total"], us["total"], us["currency"]) == (
        "300.00", "30.00", "19.58", "289.58", "USD")  # fmt: skip
    assert [(t["taxable_amount"], t["tax_amount"]) for t in us["taxes"]] == [("270.00", "19.58")]
    assert (us["issue_date"], us["due_date"]) == ("2026-11-01", "2026-11-16")

    # finalized, numbered without gaps in the order closed (customer order), recorded in the store
    assert [(d["status"], d["number"]) for d in result.invoices] == [
        ("finalized", "ACME-2026-000001"),
        ("finalized", "ACME-2026-000002"),
        ("finalized", "ACME-2026-000003"),
    ]
    for d in result.invoices:
        record = invoices.get(sf, T, d["id"])
        assert (record.status, record.number, record.total) == ("finalized", d["number"], Decimal(d["total"]))
        assert decode(record.document) == decode(orjson.dumps(d))  # the store holds the document written
        file_doc = validate(decode((out / "2026-10" / T / f"{d['customer']}.json").read_bytes()))
        assert file_doc.number == d["number"]  # the file carries the numbered document
    stored = chdb_client.query(f"SELECT customer, total, document FROM {db}.invoices FINAL ORDER BY customer")
    assert [(c, t) for c, t, _ in stored.result_rows] == [
        ("de-gmbh", Decimal("1349")), ("fr-consumer", Decimal("74.83")), ("us-inc", Decimal("289.58"))]  # fmt: skip
    assert orjson.loads(stored.result_rows[0][2])["number"] == "ACME-2026-000001"


def test_rerun_changes_nothing_and_late_usage_is_adjusted_on_the_next_invoice(
    chdb_client, db: str, sf, tmp_path: Path
) -> None:
    setup(sf, chdb_client, db, us_coupon=True)
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
        ("fixed", None, "30", "19.99"),
        ("adjustment", "2026-10", "100", "1.00"),
    ]  # the fee's quantity: 30 days
    assert (fr["subtotal"], fr["tax_total"], fr["total"]) == ("20.99", "4.20", "25.19")
    assert (fr["issue_date"], fr["number"]) == ("2026-12-01", "ACME-2026-000005")  # numbers go on: 4, 5, 6
    assert sorted(d["number"] for d in nov.values()) == ["ACME-2026-000004", "ACME-2026-000005", "ACME-2026-000006"]
    # the October invoice stays as it was
    assert invoices.get(sf, T, first.invoices[1]["id"]).total == Decimal("74.83")
    # the US customer's once coupon was used by October's invoice (counted once, though October was closed
    # twice): November has no discount. Fee 50.00, no usage, true-up 300.00 - 50.00 = 250.00; subtotal 300.00,
    # tax 300.00 x 0.0725 = 21.75, total 321.75.
    us = nov["us-inc"]
    assert (us["discounts"], us["discount_total"], us["subtotal"], us["total"]) == ([], "0.00", "300.00", "321.75")
    ((applied),) = list_applied(sf, T, "us-inc")
    assert (applied.periods_used, applied.status) == (1, "terminated")  # used up: derived from the invoices


def test_an_invalid_vat_number_fails_that_customer_alone(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    put_customer(sf, CustomerDoc(tenant=T, external_id="de-gmbh", name="Muster", version=1, country="DE",
                                 tax_id="DE136695977", timezone="Europe/Berlin"))  # fmt: skip  # bad check digit
    result = close(chdb_client, db, sf, "2026-10", tmp_path / "inv")
    assert [(c, r.split(":")[0]) for _, c, r in result.failed] == [("de-gmbh", "buyer.tax_id")]
    # the others are finalized, and the failed one used no number
    assert [(d["customer"], d["number"]) for d in result.invoices] == [
        ("fr-consumer", "ACME-2026-000001"),
        ("us-inc", "ACME-2026-000002"),
    ]


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


def coupon(sf, code: str, **terms: Any) -> None:
    create_coupon(sf, CouponSpec(tenant=T, code=code, name=code.title(), **terms))
    apply_coupon(sf, T, "fr-consumer", code)


def test_a_repeating_coupon_applies_to_two_periods_then_no_more(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    coupon(sf, "loyal", kind="percentage", percent_off=Decimal("20"), duration="repeating", duration_periods=2)
    out = tmp_path / "inv"
    october = by_customer(close(chdb_client, db, sf, "2026-10", out))["fr-consumer"]
    # October: 42.37 + 19.99 = 62.36; 20 % = 12.472 -> 12.47, shared by amount: 12.47 x 42.37 / 62.36 = 8.4727..,
    # 12.47 x 19.99 / 62.36 = 3.9972.. -> floors 8.47 + 3.99 = 12.46, the cent to the larger remainder: 4.00.
    # Taxable 33.90 + 15.99 = 49.89, VAT 20 % = 9.978 -> 9.98: 33.90 x 0.2 = 6.78, 15.99 x 0.2 = 3.198 -> 3.20.
    # Total 62.36 - 12.47 + 9.98 = 59.87.
    assert [(ln["discount_amount"], ln["tax_amount"]) for ln in october["lines"]] == [("8.47", "6.78"),
                                                                                       ("4.00", "3.20")]  # fmt: skip
    assert october["discounts"] == [{"code": "loyal", "description": "Loyal", "kind": "percentage",
                                     "percentage": "0.2", "amount": "12.47", "periods_remaining": 1}]  # fmt: skip
    assert (october["discount_total"], october["tax_total"], october["total"]) == ("12.47", "9.98", "59.87")

    # November: the fee 19.99; 20 % = 3.998 -> 4.00; taxable 15.99, VAT 3.198 -> 3.20; total 19.99 - 4.00 + 3.20
    # = 19.19; the coupon's last period.
    november = by_customer(close(chdb_client, db, sf, "2026-11", out))["fr-consumer"]
    assert [(d["amount"], d["periods_remaining"]) for d in november["discounts"]] == [("4.00", 0)]
    assert (november["discount_total"], november["tax_total"], november["total"]) == ("4.00", "3.20", "19.19")

    # December: no coupon any more: 19.99 + VAT 3.998 -> 4.00 = 23.99
    december = by_customer(close(chdb_client, db, sf, "2026-12", out))["fr-consumer"]
    assert (december["discounts"], december["discount_total"], december["total"]) == ([], "0.00", "23.99")
    ((applied),) = list_applied(sf, T, "fr-consumer")
    assert (applied.periods_used, applied.periods_remaining, applied.status) == (2, 0, "terminated")


def test_a_fixed_once_coupon_carries_its_rest_over(chdb_client, db: str, sf, tmp_path: Path) -> None:
    setup(sf, chdb_client, db)
    coupon(sf, "credit80", kind="fixed", amount_off=Decimal("80.00"), currency="EUR", duration="once")
    out = tmp_path / "inv"
    # October: 62.36 of lines, the coupon offers 80.00 and takes all 62.36 (never more than the subtotal):
    # every line fully discounted, no VAT, total 0.00; 80.00 - 62.36 = 17.64 is left.
    october = by_customer(close(chdb_client, db, sf, "2026-10", out))["fr-consumer"]
    assert [(ln["discount_amount"], ln["tax_amount"]) for ln in october["lines"]] == [("42.37", "0.00"),
                                                                                       ("19.99", "0.00")]  # fmt: skip
    assert (october["discount_total"], october["tax_total"], october["total"]) == ("62.36", "0.00", "0.00")
    ((applied),) = list_applied(sf, T, "fr-consumer")
    assert (applied.periods_used, applied.amount_remaining, applied.status) == (1, Decimal("17.64"), "active")

    # November: the fee 19.99 less the rest 17.64 = 2.35 taxable, VAT 0.47; total 19.99 - 17.64 + 0.47 = 2.82
    november = by_customer(close(chdb_client, db, sf, "2026-11", out))["fr-consumer"]
    assert [d["amount"] for d in november["discounts"]] == ["17.64"]
    assert (november["discount_total"], november["tax_total"], november["total"]) == ("17.64", "0.47", "2.82")

    # December: used up: 19.99 + VAT 4.00 = 23.99
    december = by_customer(close(chdb_client, db, sf, "2026-12", out))["fr-consumer"]
    assert (december["discounts"], december["total"]) == ([], "23.99")
    ((applied),) = list_applied(sf, T, "fr-consumer")
    assert (applied.amount_remaining, applied.status) == (Decimal("0.00"), "terminated")


def test_explicit_taxes_replace_the_automatic_rules_at_the_close(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # Lago's taxes (docs/taxes.md): the German business gets its own tax code (19 %) instead of the reverse
    # charge; a tenant default tax of 5 % (applied_to_organization) taxes everyone without their own codes.
    setup(sf, chdb_client, db, us_coupon=True)
    create_tax(sf, TaxSpec(tenant=T, code="de_vat", name="USt", rate=Decimal("19")))
    create_tax(sf, TaxSpec(tenant=T, code="flat5", name="Flat", rate=Decimal("5"), applied_to_organization=True))
    set_customer_tax_codes(sf, T, "de-gmbh", ["de_vat"])
    docs = by_customer(close(chdb_client, db, sf, "2026-10", tmp_path / "inv"))

    # DE: 1,250.00 x 0.19 = 237.50, 99.00 x 0.19 = 18.81; 1,349.00 x 0.19 = 256.31; total 1,605.31
    de = docs["de-gmbh"]
    assert lines(de) == [("usage", "1250.00", "0.19", "237.50", "S"), ("fixed", "99.00", "0.19", "18.81", "S")]
    assert (de["tax_total"], de["total"], de["legal_mentions"]) == ("256.31", "1605.31", ["USt (de_vat) 19 %"])
    # FR: 62.36 x 0.05 = 3.118 -> 3.12; 42.37 x 0.05 = 2.1185, 19.99 x 0.05 = 0.9995 -> floors 2.11 + 0.99 = 3.10,
    # the 2 cents to the two remainders (0.95, then 0.85): 2.12 and 1.00; total 62.36 + 3.12 = 65.48
    fr = docs["fr-consumer"]
    assert lines(fr) == [("usage", "42.37", "0.05", "2.12", "S"), ("fixed", "19.99", "0.05", "1.00", "S")]
    assert (fr["tax_total"], fr["total"]) == ("3.12", "65.48")
    # US (its 10 % coupon first): taxable 162.00 + 45.00 + 63.00 = 270.00 x 0.05 = 13.50 (8.10 + 2.25 + 3.15);
    # total 300.00 - 30.00 + 13.50 = 283.50
    us = docs["us-inc"]
    assert [ln["tax_amount"] for ln in us["lines"]] == ["8.10", "2.25", "3.15"]
    assert (us["tax_total"], us["total"]) == ("13.50", "283.50")


def test_a_customer_without_a_country_gets_its_coupon_and_no_tax(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # no country: no tax is calculated (the note says so), but the coupon still comes off: fee 19.99 less a
    # 5.00 once coupon = 14.99, tax 0.00, total 14.99
    customer_with_plan(sf, CustomerDoc(tenant=T, external_id="nowhere", name="Nowhere Ltd", version=0), "EUR",
                       unit="0.01", fee="19.99")  # fmt: skip
    create_coupon(sf, CouponSpec(tenant=T, code="five", name="Five off", kind="fixed", amount_off=Decimal("5.00"),
                                 currency="EUR"))  # fmt: skip
    apply_coupon(sf, T, "nowhere", "five")
    (doc,) = close(chdb_client, db, sf, "2026-10", tmp_path / "inv").invoices
    assert [(ln["amount"], ln["discount_amount"]) for ln in doc["lines"]] == [("19.99", "5.00")]
    assert (doc["subtotal"], doc["discount_total"], doc["tax_total"], doc["total"], doc["amount_due"]) == (
        "19.99", "5.00", "0.00", "14.99", "14.99")  # fmt: skip
    assert [(d["code"], d["amount"]) for d in doc["discounts"]] == [("five", "5.00")]
    assert "No tax calculated" in doc["notes"][-1]
