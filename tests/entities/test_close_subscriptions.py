"""The period close invoices store subscriptions (issue #14 item 4): embedded ClickHouse (chdb) and the entity
store on SQLite and PostgreSQL. Every expected amount is worked by hand in the comments (the rules are in
docs/billing.md: day-based proration, the day of a change belongs to the new phase, usage tiers counted per
phase part, one invoice per customer and close label).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities.customers import put_customer
from meterstream.entities.finalization import finalized_until
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import change_plan, create_subscription
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.invoice_emitter.subscription_invoice import draft_usage
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.entities import (
    CustomerDoc,
    FixedCharge,
    InstallmentCharge,
    OneTimeCharge,
    Phase,
    PlanVersionDoc,
    SubscriptionDoc,
)

T = "acme"
CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")  # tenant t1, plan basic
FREE_100_THEN = [{"up_to": "100", "unit_amount": "0"}]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def graduated(after_free: str) -> dict[str, Any]:
    """100 units free, then `after_free` each."""
    return {"model": "graduated", "tiers": [*FREE_100_THEN, {"up_to": None, "unit_amount": after_free}]}


def plan(sf, code: str, *, usage: dict | None = None, fee: str | None = None, timing: str = "advance", **kw) -> None:
    """Version 1 of plan `code` (USD; default usage price 0.10 per api call), with a monthly base fee if given."""
    fixed = [FixedCharge(code="base", name="Base fee", amount=Decimal(fee), timing=timing)] if fee else []
    publish_plan(
        sf,
        PlanVersionDoc(tenant=T, code=code, version=0, name=code, currency="USD",
                       usage=usage or {"api_calls": {"model": "unit", "unit_amount": "0.10"}}, fixed=fixed, **kw),
    )  # fmt: skip


def subscribe(sf, sub_id: str, customer: str, code: str, start: datetime, timezone: str = "UTC") -> None:
    put_customer(sf, CustomerDoc(tenant=T, external_id=customer, name=customer, version=0, timezone=timezone))
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id=sub_id, customer=customer, version=0,
                                            phases=[Phase(plan_code=code, plan_version=1, start=start)]))  # fmt: skip


def usage(client, db: str, customer: str, at: datetime, quantity: str, plan_id: str, tenant: str = T,
          meter: str = "api_calls", dimensions: dict | None = None, period: str | None = None) -> None:  # fmt: skip
    """One rated row as the sink lands it (`period` by default the UTC month, `plan` what the stream rated it with)."""
    row = [tenant, uuid.uuid4().hex, customer, "", meter, at, period or f"{at:%Y-%m}", Decimal(quantity), Decimal(0),
           Decimal(0), "USD", plan_id, meter, dimensions or {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def close(client, db: str, sf, label: str, out: Path, catalog=CATALOG):
    return close_period(client, db, catalog, label, out, progress=False, store=StoreView(sf))


def doc_of(result, customer: str) -> dict[str, Any]:
    (doc,) = [d for d in result.invoices if d["customer"] == customer]
    assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])  # lines add up
    return doc


def amounts(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(kind, plan, amount, start) of each line, in document order."""
    return [(line["kind"], line["plan"], line["amount"], line["start"]) for line in doc["lines"]]


def test_calendar_periods_in_the_customer_time_zone(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # New York: September local = [2026-09-01T04:00Z, 2026-10-01T04:00Z), October = [.., 2026-11-01T04:00Z)
    # (summer time until Nov 1 02:00 local). 0.10 per call, base fee 30.00 in arrears.
    plan(sf, "ny", fee="30.00", timing="arrears")
    subscribe(sf, "s-ny", "org-ny", "ny", utc(2026, 9, 1, 4), "America/New_York")
    usage(chdb_client, db, "org-ny", utc(2026, 10, 1, 3, 59, 59), "1", "ny@1")  # Sep 30 23:59:59 local
    usage(chdb_client, db, "org-ny", utc(2026, 10, 1, 4), "10", "ny@1")  # Oct 1 00:00 local
    usage(chdb_client, db, "org-ny", utc(2026, 11, 1, 3, 59, 59), "100", "ny@1")  # Oct 31 23:59:59 local
    usage(chdb_client, db, "org-ny", utc(2026, 11, 1, 4), "1000", "ny@1")  # Nov 1 00:00 local: November
    out = tmp_path / "inv"
    sep = doc_of(close(chdb_client, db, sf, "2026-09", out), "org-ny")
    assert amounts(sep) == [("usage", "ny@1", "0.10", "2026-09-01T04:00:00Z"),  # 1 x 0.10
                            ("fixed", "ny@1", "30.00", "2026-09-01T04:00:00Z")]  # 30 of 30 days  # fmt: skip
    assert Decimal(sep["total"]) == Decimal("30.10")
    oct_ = doc_of(close(chdb_client, db, sf, "2026-10", out), "org-ny")
    assert amounts(oct_) == [("usage", "ny@1", "11.00", "2026-10-01T04:00:00Z"),  # (10 + 100) x 0.10
                             ("fixed", "ny@1", "30.00", "2026-10-01T04:00:00Z")]  # fmt: skip
    assert oct_["lines"][0]["quantity"] == "110" and oct_["lines"][0]["end"] == "2026-11-01T04:00:00Z"
    assert (oct_["period_start"], oct_["period_end"]) == ("2026-10-01T04:00:00Z", "2026-11-01T04:00:00Z")
    assert Decimal(oct_["total"]) == Decimal("41.00")
    assert (out / "2026-10" / T / "org-ny.json").exists()
    # the close recorded how far the customer is invoiced (the store then refuses back-dated changes)
    assert finalized_until(sf, T, "org-ny") == utc(2026, 11, 1, 4)


def test_mid_cycle_upgrade_advance_and_arrears(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # basic: 100 calls free then 0.10; pro: 100 free then 0.05 (tiers count per phase part). Upgrade on
    # Oct 16 12:00 UTC: basic is charged Oct 1-15 (15 of 31 days), pro Oct 16-31 (16 days).
    for suffix, timing in (("adv", "advance"), ("arr", "arrears")):
        plan(sf, f"basic-{suffix}", usage={"api_calls": graduated("0.10")}, fee="31.00", timing=timing)
        plan(sf, f"pro-{suffix}", usage={"api_calls": graduated("0.05")}, fee="62.00", timing=timing)
        subscribe(sf, f"s-{suffix}", f"org-{suffix}", f"basic-{suffix}", utc(2026, 10, 1))
        change_plan(sf, T, f"s-{suffix}", f"pro-{suffix}", utc(2026, 10, 16, 12))
        # rated before the change was made: the stream recorded basic for the late-October rows too
        usage(chdb_client, db, f"org-{suffix}", utc(2026, 10, 10), "150", f"basic-{suffix}@1")
        usage(chdb_client, db, f"org-{suffix}", utc(2026, 10, 16, 11, 59), "0", f"basic-{suffix}@1")
        usage(chdb_client, db, f"org-{suffix}", utc(2026, 10, 20), "300", f"basic-{suffix}@1")
    out = tmp_path / "inv"
    result = close(chdb_client, db, sf, "2026-10", out)
    assert result.failed == []
    adv, arr = doc_of(result, "org-adv"), doc_of(result, "org-arr")
    # usage: basic side 150 -> 50 x 0.10 = 5.00; pro side 300 -> 200 x 0.05 = 10.00 (its own 100 free)
    # fees, the opening period (not billed in advance): basic 31 x 15/31 = 15.00, pro 62 - 62 x 15/31 = 32.00;
    # in advance also November in full on pro: 62.00
    assert amounts(adv) == [
        ("usage", "basic-adv@1", "5.00", "2026-10-01T00:00:00Z"),
        ("usage", "pro-adv@1", "10.00", "2026-10-16T12:00:00Z"),
        ("fixed", "basic-adv@1", "15.00", "2026-10-01T00:00:00Z"),
        ("fixed", "pro-adv@1", "32.00", "2026-10-16T00:00:00Z"),
        ("fixed", "pro-adv@1", "62.00", "2026-11-01T00:00:00Z"),
    ]
    assert Decimal(adv["total"]) == Decimal("124.00")
    assert [(ln["quantity"], ln["end"]) for ln in adv["lines"][:2]] == [
        ("150", "2026-10-16T12:00:00Z"), ("300", "2026-11-01T00:00:00Z")]  # fmt: skip
    # arrears: the same usage and October days, nothing for November yet
    assert [a[2] for a in amounts(arr)] == ["5.00", "10.00", "15.00", "32.00"]
    assert Decimal(arr["total"]) == Decimal("62.00")

    # November: advance was billed for it on pro (no correction), December in advance; arrears: November's pro
    nov = close(chdb_client, db, sf, "2026-11", out)
    assert amounts(doc_of(nov, "org-adv")) == [("fixed", "pro-adv@1", "62.00", "2026-12-01T00:00:00Z")]
    assert amounts(doc_of(nov, "org-arr")) == [("fixed", "pro-arr@1", "62.00", "2026-11-01T00:00:00Z")]

    # closing October again re-issues the same documents, byte for byte
    again = close(chdb_client, db, sf, "2026-10", out)
    assert again.reissued and again.invoices == result.invoices


def test_one_time_installments_and_minimum_true_up(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # 0.10 per call; onboarding 99.00 once; a device 100.00 in 3 payments (33.33, 33.33, 33.34); minimum
    # commitment 50.00 per month, trued up against the usage lines (no fixed fee here)
    plan(sf, "kit", one_time=[OneTimeCharge(code="onboarding", name="Onboarding", amount=Decimal("99.00"))],
         installments=[InstallmentCharge(code="device", name="Device", total=Decimal("100.00"), count=3)],
         minimum_commitment=Decimal("50.00"))  # fmt: skip
    subscribe(sf, "s-kit", "org-kit", "kit", utc(2026, 10, 1))
    usage(chdb_client, db, "org-kit", utc(2026, 10, 5), "100", "kit@1")  # 10.00
    usage(chdb_client, db, "org-kit", utc(2026, 11, 5), "600", "kit@1")  # 60.00
    out = tmp_path / "inv"
    oct_ = doc_of(close(chdb_client, db, sf, "2026-10", out), "org-kit")
    # 10.00 usage + 99.00 + 33.33 + true-up 50.00 - 10.00 = 40.00 -> 182.33
    assert [(ln["kind"], ln["amount"]) for ln in oct_["lines"]] == [
        ("usage", "10.00"),
        ("one_time", "99.00"),
        ("installment", "33.33"),
        ("minimum", "40.00"),
    ]
    assert Decimal(oct_["total"]) == Decimal("182.33")
    nov = doc_of(close(chdb_client, db, sf, "2026-11", out), "org-kit")
    assert [(ln["kind"], ln["amount"]) for ln in nov["lines"]] == [("usage", "60.00"), ("installment", "33.33")]
    dec = doc_of(close(chdb_client, db, sf, "2026-12", out), "org-kit")
    # no usage: the whole minimum is due; the last payment takes the remainder
    assert [(ln["kind"], ln["amount"]) for ln in dec["lines"]] == [("installment", "33.34"),
                                                                  ("minimum", "50.00")]  # fmt: skip
    assert Decimal(dec["total"]) == Decimal("83.34")


def test_a_customer_that_cannot_be_invoiced_fails_alone(chdb_client, db: str, sf, tmp_path: Path) -> None:
    plan(sf, "solo")
    subscribe(sf, "s-ok", "org-ok", "solo", utc(2026, 10, 1))
    subscribe(sf, "s-bad", "org-bad", "solo", utc(2026, 10, 1))
    usage(chdb_client, db, "org-ok", utc(2026, 10, 3), "20", "solo@1")  # 2.00
    usage(chdb_client, db, "org-bad", utc(2026, 10, 3), "7", "solo@1", meter="storage_gb_hours")  # solo has no price
    usage(chdb_client, db, "org-bad", utc(2026, 10, 4), "30", "basic")  # a file plan's usage: not invoiced either
    usage(chdb_client, db, "org-ghost", utc(2026, 10, 3), "5", "ghost@3")  # a store plan, but no subscription
    # the same, totalled by the stream per an anniversary period of a tenant default subscription
    usage(chdb_client, db, "org-ghost2", utc(2026, 10, 20), "5", "ghost@3", period="2026-10-15")
    usage(chdb_client, db, "c1", utc(2026, 10, 3), "30", "basic", tenant="t1")  # file catalog: 20 x 0.50 = 10.00
    result = close(chdb_client, db, sf, "2026-10", tmp_path / "inv")
    assert {(d["tenant"], d["customer"]): d["total"] for d in result.invoices} == {
        (T, "org-ok"): "2.00", ("t1", "c1"): "10.00"}  # fmt: skip
    reasons = {c: r for _, c, r in result.failed}
    assert set(reasons) == {"org-bad", "org-ghost", "org-ghost2"}
    assert reasons["org-bad"].startswith("usage: 7 of meter storage_gb_hours between 2026-10-01T00:00:00Z")
    assert "priced by no subscription phase" in reasons["org-bad"]
    assert reasons["org-ghost"].startswith("plan: ") and "'ghost@3'" in reasons["org-ghost"]

    # fixed (version 2 of solo prices storage at 1.00, from the subscription's start): the next close bills
    # org-bad's October as late usage: storage 7 x 1.00 = 7.00 and the file plan's 30 calls (30 - 10) x 0.50
    publish_plan(sf, PlanVersionDoc(tenant=T, code="solo", version=0, name="solo", currency="USD", usage={
        "api_calls": {"model": "unit", "unit_amount": "0.10"},
        "storage_gb_hours": {"model": "unit", "unit_amount": "1.00"}}))  # fmt: skip
    change_plan(sf, T, "s-bad", "solo", utc(2026, 10, 1), plan_version=2)
    nov = close(chdb_client, db, sf, "2026-11", tmp_path / "inv")
    # their October usage is late usage still not invoiceable: both are reported again
    assert [c for _, c, _ in nov.failed] == ["org-ghost", "org-ghost2"]
    bad = doc_of(nov, "org-bad")
    assert sorted((ln["kind"], ln["applies_to"], ln["code"], ln["amount"]) for ln in bad["lines"]) == [
        ("adjustment", "2026-10", "api_calls", "10.00"),
        ("adjustment", "2026-10", "storage_gb_hours", "7.00"),
    ]
    assert bad["total"] == "17.00"


def test_the_tenant_default_subscription_bills_usage_of_customers_without_their_own(
    chdb_client, db: str, sf, tmp_path: Path
) -> None:
    # `catalog apply` turns a file catalog's `customer: "*"` into the tenant's default subscription: it prices
    # every customer without a subscription of its own (the live catalog's rule), so the close bills their
    # usage by it. Usage lines only: its base fee (20.00) is for customers subscribed in their own name.
    # walk-in: 30 calls x 0.10 = 3.00 in October, in its own time zone's month (Tokyo, UTC+9: a call at
    # 2026-10-31T16:00Z is November 1st there, so November's). org-own: its own plan, 0.50 per call.
    plan(sf, "std", fee="20.00")
    plan(sf, "own", usage={"api_calls": {"model": "unit", "unit_amount": "0.50"}})
    create_subscription(
        sf,
        SubscriptionDoc(
            tenant=T,
            external_id="default",
            customer="*",
            version=0,
            phases=[Phase(plan_code="std", plan_version=1, start=utc(2026, 1, 1))],
        ),
    )
    put_customer(sf, CustomerDoc(tenant=T, external_id="walk-in", name="Walk-in", version=0, timezone="Asia/Tokyo"))
    subscribe(sf, "s-own", "org-own", "own", utc(2026, 10, 1))
    usage(chdb_client, db, "walk-in", utc(2026, 10, 5), "30", "std@1")
    usage(chdb_client, db, "walk-in", utc(2026, 10, 31, 16), "4", "std@1")  # Nov 1, 01:00 in Tokyo
    usage(chdb_client, db, "org-own", utc(2026, 10, 5), "6", "own@1")  # 6 x 0.50 = 3.00
    result = close(chdb_client, db, sf, "2026-10", tmp_path / "inv")
    assert result.failed == []
    walk_in = doc_of(result, "walk-in")
    assert [(line["kind"], line["plan"], line["quantity"], line["amount"]) for line in walk_in["lines"]] == [
        ("usage", "std@1", "30", "3.00")]  # fmt: skip
    assert walk_in["lines"][0]["start"] == "2026-09-30T15:00:00Z"  # October 1st, 00:00 in Tokyo
    assert doc_of(result, "org-own")["total"] == "3.00"
    # walk-in is invoiced up to November 1st in Tokyo; the default subscription's boundary is the newest of
    # any customer's (org-own's October ends 2026-11-01T00:00Z): a back-dated change into October is refused
    assert finalized_until(sf, T, "walk-in") == utc(2026, 10, 31, 15)
    assert finalized_until(sf, T, "*") == utc(2026, 11, 1)
    nov = close(chdb_client, db, sf, "2026-11", tmp_path / "inv")
    assert [(line["quantity"], line["amount"]) for line in doc_of(nov, "walk-in")["lines"]] == [("4", "0.40")]


def test_file_catalog_customers_are_unchanged_by_the_store(chdb_client, db: str, sf, tmp_path: Path) -> None:
    usage(chdb_client, db, "c1", utc(2026, 10, 3), "30", "basic", tenant="t1")
    usage(chdb_client, db, "c2", utc(2026, 10, 4), "130", "basic", tenant="t1")  # 45.00 + 30 x 0.25 = 52.50
    without = close_period(chdb_client, db, CATALOG, "2026-10", tmp_path / "a", progress=False)
    other = f"s_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, other)
    usage(chdb_client, other, "c1", utc(2026, 10, 3), "30", "basic", tenant="t1")
    usage(chdb_client, other, "c2", utc(2026, 10, 4), "130", "basic", tenant="t1")
    plan(sf, "solo")
    subscribe(sf, "s-ok", "org-ok", "solo", utc(2026, 10, 1))
    with_store = close(chdb_client, other, sf, "2026-10", tmp_path / "b")
    file_docs = [d for d in with_store.invoices if d["tenant"] == "t1"]
    assert file_docs == without.invoices and [d["total"] for d in file_docs] == ["10.00", "52.50"]
    for customer in ("c1", "c2"):
        assert (tmp_path / "a" / "2026-10" / "t1" / f"{customer}.json").read_bytes() == (
            tmp_path / "b" / "2026-10" / "t1" / f"{customer}.json").read_bytes()  # fmt: skip


def test_late_usage_of_a_closed_subscription_period_is_adjusted_on_the_next_close(
    chdb_client, db: str, sf, tmp_path: Path
) -> None:
    plan(sf, "tiered", usage={"api_calls": graduated("0.10")})
    subscribe(sf, "s-late", "org-late", "tiered", utc(2026, 10, 1))
    usage(chdb_client, db, "org-late", utc(2026, 10, 5), "120", "tiered@1")  # 20 x 0.10 = 2.00
    out = tmp_path / "inv"
    assert doc_of(close(chdb_client, db, sf, "2026-10", out), "org-late")["total"] == "2.00"
    usage(chdb_client, db, "org-late", utc(2026, 10, 30), "50", "tiered@1")  # late: October 170 -> 7.00, +5.00
    usage(chdb_client, db, "org-late", utc(2026, 11, 2), "130", "tiered@1")  # November: 3.00
    nov = doc_of(close(chdb_client, db, sf, "2026-11", out), "org-late")
    assert [(ln["kind"], ln.get("applies_to"), ln["quantity"], ln["amount"]) for ln in nov["lines"]] == [
        ("usage", None, "130", "3.00"), ("adjustment", "2026-10", "50", "5.00")]  # fmt: skip
    assert nov["total"] == "8.00"
    # December: nothing new for October, no second adjustment; the subscription is active, no usage: an
    # invoice of 0.00 with no lines
    dec = doc_of(close(chdb_client, db, sf, "2026-12", out), "org-late")
    assert (dec["lines"], dec["total"]) == ([], "0.00")


def test_draft_usage_is_the_document_the_close_writes(chdb_client, db: str, sf, tmp_path: Path) -> None:
    plan(sf, "basic-d", usage={"api_calls": graduated("0.10")}, fee="31.00")
    plan(sf, "pro-d", usage={"api_calls": graduated("0.05")}, fee="62.00")
    subscribe(sf, "s-d", "org-d", "basic-d", utc(2026, 10, 1))
    change_plan(sf, T, "s-d", "pro-d", utc(2026, 10, 16, 12))
    usage(chdb_client, db, "org-d", utc(2026, 10, 10), "150", "basic-d@1")
    usage(chdb_client, db, "org-d", utc(2026, 10, 20), "300", "pro-d@1")
    draft = draft_usage(chdb_client, db, sf, T, "s-d", utc(2026, 10, 25))
    assert draft["status"] == "draft" and draft["period"] == "2026-10"
    assert (draft["period_start"], draft["period_end"]) == ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    assert draft["total"] == "124.00"  # as in the upgrade test: 5 + 10 + 15 + 32 + 62
    final = doc_of(close(chdb_client, db, sf, "2026-10", tmp_path / "inv"), "org-d")
    # the close's document (version 2, finalized) has the draft's lines and amounts
    assert (final["status"], final["period_start"], final["period_end"]) == (
        "finalized",
        draft["period_start"],
        draft["period_end"],
    )
    got = [(ln["line_no"], ln["code"], ln["quantity"], ln["amount"], ln["start"], ln["end"]) for ln in final["lines"]]
    assert got == [(ln["line_no"], ln.get("code") or ln["meter"], ln["quantity"], ln["amount"], ln["start"], ln["end"])
                   for ln in draft["lines"]]  # fmt: skip
    assert final["total"] == final["subtotal"] == draft["total"]  # org-d has no country: no tax


def test_an_anniversary_period_is_closed_by_the_month_it_ends_in(chdb_client, db: str, sf, tmp_path: Path) -> None:
    # anniversary from Oct 15: periods [Oct 15, Nov 15), [Nov 15, Dec 15); the first ends in November
    plan(sf, "ann", fee="30.00", timing="arrears")
    put_customer(sf, CustomerDoc(tenant=T, external_id="org-ann", name="A", version=0))
    create_subscription(
        sf,
        SubscriptionDoc(
            tenant=T,
            external_id="s-ann",
            customer="org-ann",
            version=0,
            billing_anchor="anniversary",
            phases=[Phase(plan_code="ann", plan_version=1, start=utc(2026, 10, 15))],
        ),
    )
    usage(chdb_client, db, "org-ann", utc(2026, 10, 20), "10", "ann@1")  # 1.00
    usage(chdb_client, db, "org-ann", utc(2026, 11, 14, 23, 59), "10", "ann@1")  # 1.00
    usage(chdb_client, db, "org-ann", utc(2026, 11, 15), "100", "ann@1")  # the next period
    out = tmp_path / "inv"
    assert close(chdb_client, db, sf, "2026-10", out).invoices == []  # no period of it ends in October
    nov = doc_of(close(chdb_client, db, sf, "2026-11", out), "org-ann")
    # usage 20 x 0.10 = 2.00; the fee in arrears for all 31 days of the period: 30.00
    assert amounts(nov) == [("usage", "ann@1", "2.00", "2026-10-15T00:00:00Z"),
                            ("fixed", "ann@1", "30.00", "2026-10-15T00:00:00Z")]  # fmt: skip
    assert (nov["period_start"], nov["period_end"], nov["total"]) == (
        "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z", "32.00")  # fmt: skip


def test_telecom_and_add_on_lines(chdb_client, db: str, sf, tmp_path: Path) -> None:
    from meterstream.rating.cli import load_price_text

    root = Path(__file__).resolve().parents[2]
    telecom = load_price_text((root / "rating/telecom/examples/telecom_plan.yaml").read_text())
    publish_plan(sf, PlanVersionDoc(tenant=T, code="mobile", version=0, name="Mobile", currency="EUR",
                                    telecom=telecom))  # fmt: skip
    publish_plan(
        sf,
        PlanVersionDoc(
            tenant=T,
            code="extras",
            version=0,
            name="Extras",
            currency="EUR",
            addon=True,
            usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}},
            fixed=[FixedCharge(code="extras", name="Extras fee", amount=Decimal("5.00"), timing="arrears")],
        ),
    )
    put_customer(sf, CustomerDoc(tenant=T, external_id="org-m", name="M", version=0, timezone="Europe/Berlin"))
    start = datetime(2026, 10, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s-m", customer="org-m", version=0, phases=[
        Phase(plan_code="mobile", plan_version=1, start=start, addons=["extras"])]))  # fmt: skip
    to_mobile = {"destination": "4915112345678"}
    usage(chdb_client, db, "org-m", utc(2026, 10, 14, 8), "1", "mobile@1", meter="sms", dimensions=to_mobile)
    usage(chdb_client, db, "org-m", utc(2026, 10, 14, 9), "1", "mobile@1", meter="sms", dimensions=to_mobile)
    usage(chdb_client, db, "org-m", utc(2026, 10, 14, 9), "10", "mobile@1")  # api_calls: priced by the add-on
    doc = doc_of(close(chdb_client, db, sf, "2026-10", tmp_path / "inv"), "org-m")
    # 2 SMS to a German mobile at 0.09 = 0.18 (telecom re-rating); 10 calls x 0.10 = 1.00 on the add-on;
    # the add-on's fee in arrears, the whole of October (Berlin): 5.00
    assert [(ln["kind"], ln["plan"], ln["code"], ln["amount"]) for ln in doc["lines"]] == [
        ("usage", "mobile@1", "sms", "0.18"), ("usage", "extras@1", "api_calls", "1.00"),
        ("fixed", "extras@1", "extras", "5.00")]  # fmt: skip
    assert doc["lines"][0]["start"] == "2026-09-30T22:00:00Z" and doc["total"] == "6.18"


def test_a_change_committed_while_the_close_builds_is_billed(
    chdb_client, db: str, sf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The close reads the subscriptions, then (before it records the finalization) an upgrade back-dated to
    # Oct 16 commits: the close reads them again after recording and builds the invoice from the new version.
    plan(sf, "basic-r", usage={"api_calls": graduated("0.10")})
    plan(sf, "pro-r", usage={"api_calls": graduated("0.05")})
    subscribe(sf, "s-r", "org-r", "basic-r", utc(2026, 10, 1))
    usage(chdb_client, db, "org-r", utc(2026, 10, 20), "300", "basic-r@1")
    read = StoreView.subscriptions

    def read_then_change(self):
        found = read(self)
        change_plan(sf, T, "s-r", "pro-r", utc(2026, 10, 16))
        return found

    monkeypatch.setattr(StoreView, "subscriptions", read_then_change)
    doc = doc_of(close(chdb_client, db, sf, "2026-10", tmp_path / "inv"), "org-r")
    # the Oct 20 usage is on pro's side: 200 x 0.05 = 10.00 (on basic it would have been 20.00)
    assert amounts(doc) == [("usage", "pro-r@1", "10.00", "2026-10-16T00:00:00Z")]
    assert finalized_until(sf, T, "org-r") == utc(2026, 11, 1)


def test_a_weekly_subscription_has_every_week_ending_in_the_month_on_one_document(
    chdb_client, db: str, sf, tmp_path: Path
) -> None:
    # calendar weeks start on Monday; from Mon Oct 5: weeks ending Oct 12, 19, 26 are October's, the week
    # Oct 26 - Nov 2 is November's (with Nov 9, 16, 23, 30). 7.00 a week in arrears, 0.10 a call.
    publish_plan(
        sf,
        PlanVersionDoc(
            tenant=T,
            code="wk",
            version=0,
            name="Weekly",
            currency="USD",
            interval="weekly",
            usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}},
            fixed=[
                FixedCharge(code="base", name="Base fee", amount=Decimal("7.00"), interval="weekly", timing="arrears")
            ],
        ),
    )
    subscribe(sf, "s-wk", "org-wk", "wk", utc(2026, 10, 5))
    usage(chdb_client, db, "org-wk", utc(2026, 10, 6), "10", "wk@1")  # 1.00, week of Oct 5
    usage(chdb_client, db, "org-wk", utc(2026, 10, 27), "20", "wk@1")  # 2.00, week of Oct 26 (November's close)
    out = tmp_path / "inv"
    oct_ = doc_of(close(chdb_client, db, sf, "2026-10", out), "org-wk")
    assert [b["end"] for b in oct_["billing_periods"]] == [
        "2026-10-12T00:00:00Z", "2026-10-19T00:00:00Z", "2026-10-26T00:00:00Z"]  # fmt: skip
    assert amounts(oct_) == [("usage", "wk@1", "1.00", "2026-10-05T00:00:00Z"),
                             ("fixed", "wk@1", "7.00", "2026-10-05T00:00:00Z"),
                             ("fixed", "wk@1", "7.00", "2026-10-12T00:00:00Z"),
                             ("fixed", "wk@1", "7.00", "2026-10-19T00:00:00Z")]  # fmt: skip
    assert oct_["total"] == "22.00"
    nov = doc_of(close(chdb_client, db, sf, "2026-11", out), "org-wk")
    assert len(nov["billing_periods"]) == 5 and nov["total"] == "37.00"  # 5 x 7.00 + 2.00
    assert len({line["line_key"] for line in nov["lines"]}) == len(nov["lines"])
