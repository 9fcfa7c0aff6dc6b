"""`meterstream catalog apply` and finalized periods (SQLite and PostgreSQL): a subscription the file starts in
an invoiced period is refused naming the file's field; one without a start (today's assignments) starts where
the invoiced periods end; a plan change never takes effect inside them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterstream.entities.catalog_apply import CatalogApplyError, apply_catalog
from meterstream.entities.finalization import record_finalized
from meterstream.entities.subscriptions import get_subscription, list_subscriptions

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
TODAY = {
    "plans": [{"id": "basic", "currency": "USD", "meters": {"api_calls": {"model": "unit", "unit_amount": "0.001"}}}],
    "assignments": [{"tenant": "t1", "customer": "org-1", "plan": "basic"}],
}


def _extended(start: str) -> dict:
    return {
        "tenant": "t1",
        "customers": [{"external_id": "org-2", "name": "Org Two", "currency": "USD"}],
        "plans": [{"code": "pro", "name": "Pro", "currency": "USD", "usage": {"api_calls": {"model": "unit",
                                                                                          "unit_amount": "0.002"}}}],
        "subscriptions": [{"external_id": "sub-2", "customer": "org-2", "plan": "pro", "start": start}],
    }  # fmt: skip


def test_an_assignment_starts_where_the_invoiced_periods_end(sf) -> None:
    record_finalized(sf, "t1", "org-1", DEC_1)  # invoiced (e.g. under the file catalog) up to Dec 1
    result = apply_catalog(sf, TODAY, now=NOW)
    sub = get_subscription(sf, "t1", "catalog-org-1")
    assert [(p.plan_code, p.start) for p in sub.phases] == [("basic", DEC_1)]
    assert any("2026-12-01T00:00:00+00:00" in w and "finalized" in w for w in result.warnings)
    again = apply_catalog(sf, TODAY, now=NOW)  # idempotent, and no warning that the start differs
    assert again.summary() == "3 unchanged"  # customer, plan, subscription
    assert not any("differ from the file" in w for w in again.warnings)


def test_an_explicit_start_in_an_invoiced_period_is_refused_naming_the_files_field(sf) -> None:
    apply_catalog(sf, _extended("2026-12-01T00:00:00Z"), now=NOW)  # creates org-2 and sub-2 from Dec 1
    record_finalized(sf, "t1", "org-3", DEC_1)
    bad = _extended("2026-11-15T00:00:00Z")
    bad["customers"].append({"external_id": "org-3", "name": "Org Three", "currency": "USD"})
    bad["subscriptions"] = [{"external_id": "sub-3", "customer": "org-3", "plan": "pro",
                             "start": "2026-11-15T00:00:00Z"}]  # fmt: skip
    with pytest.raises(CatalogApplyError) as exc:
        apply_catalog(sf, bad, now=NOW)
    assert str(exc.value).startswith("subscriptions[0].start:") and "finalized" in str(exc.value)
    assert [s.external_id for s in list_subscriptions(sf, "t1")] == ["sub-2"]  # sub-3 not written


def test_a_changed_plan_moves_subscriptions_from_now_never_inside_an_invoiced_period(sf) -> None:
    apply_catalog(sf, TODAY, now=datetime(2026, 11, 1, tzinfo=UTC))
    record_finalized(sf, "t1", "org-1", datetime(2027, 1, 1, tzinfo=UTC))  # December already closed (early)
    changed = {**TODAY, "plans": [{"id": "basic", "currency": "USD",
                                   "meters": {"api_calls": {"model": "unit", "unit_amount": "0.0015"}}}]}  # fmt: skip
    with pytest.raises(CatalogApplyError) as exc:
        apply_catalog(sf, changed, now=NOW)  # the move would start at NOW, inside the closed December
    assert str(exc.value).startswith("assignments[0].plan:") and "finalized" in str(exc.value)
    assert [(p.plan_code, p.plan_version) for p in get_subscription(sf, "t1", "catalog-org-1").phases] == [("basic", 1)]


# A month closed for every customer (ClickHouse `period_closes`, read by the CLI and handed to the apply as
# `newest_closed`) bounds a customer the close invoiced nothing (no per-customer boundary in the store): before
# this, catalog apply created such a subscription inside the closed month, which the next close then billed as
# late-usage adjustments of a month already closed. Boundaries by hand: October 2026 closed, so the month ends at
# 2026-11-01 00:00 local time: UTC 2026-11-01T00:00Z; Pacific/Auckland (NZDT, UTC+13 since 27 September)
# 2026-10-31T11:00Z; the default subscription `*` takes UTC-12: 2026-11-01T12:00Z.
NOV_15 = datetime(2026, 11, 15, 9, 30, tzinfo=UTC)


def _new_customer(start: str | None, customer: str = "org-9", timezone: str = "UTC") -> dict:
    sub = {"external_id": "sub-9", "customer": customer, "plan": "pro"}
    if start is not None:
        sub["start"] = start
    return {
        "tenant": "t1",
        "customers": [{"external_id": "org-9", "name": "Org Nine", "currency": "USD", "timezone": timezone}],
        "plans": [{"code": "pro", "name": "Pro", "currency": "USD", "usage": {"api_calls": {"model": "unit",
                                                                                          "unit_amount": "0.002"}}}],
        "subscriptions": [sub],
    }  # fmt: skip


def test_a_month_closed_for_every_customer_refuses_a_start_inside_it_for_a_customer_never_invoiced(sf) -> None:
    reads = []

    def october() -> str:
        reads.append(1)
        return "2026-10"

    with pytest.raises(CatalogApplyError) as exc:
        apply_catalog(sf, _new_customer("2026-10-20T00:00:00Z"), now=NOV_15, newest_closed=october)
    assert str(exc.value).startswith("subscriptions[0].start:") and "finalized" in str(exc.value)
    assert list_subscriptions(sf, "t1") == []
    # the same file without that rule (nothing closed) writes it: the refusal came from the closed month
    apply_catalog(sf, _new_customer("2026-10-20T00:00:00Z"), now=NOV_15, newest_closed=lambda: None)
    assert get_subscription(sf, "t1", "sub-9").phases[0].start == datetime(2026, 10, 20, tzinfo=UTC)
    assert len(reads) == 1  # read once, and only for a start before the customer's current month


def test_without_a_start_the_subscription_begins_where_the_closed_month_ends_in_the_customers_zone(sf) -> None:
    result = apply_catalog(sf, _new_customer(None, timezone="Pacific/Auckland"), now=NOV_15,
                           newest_closed=lambda: "2026-10")  # fmt: skip
    assert get_subscription(sf, "t1", "sub-9").phases[0].start == datetime(2026, 10, 31, 11, 0, tzinfo=UTC)
    assert any("2026-10-31T11:00:00+00:00" in w for w in result.warnings)
    again = apply_catalog(sf, _new_customer(None, timezone="Pacific/Auckland"), now=NOV_15,
                          newest_closed=lambda: "2026-10")  # fmt: skip
    assert not any("differ from the file" in w for w in again.warnings)  # the shifted start is not a difference


def test_the_default_subscription_is_bounded_by_the_westernmost_end_of_the_closed_month(sf) -> None:
    doc = {"tenant": "t1", "plans": _new_customer(None)["plans"],
           "subscriptions": [{"external_id": "default", "customer": "*", "plan": "pro"}]}  # fmt: skip
    apply_catalog(sf, doc, now=NOV_15, newest_closed=lambda: "2026-10")
    assert get_subscription(sf, "t1", "default").phases[0].start == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_start_in_the_current_month_reads_no_closed_month(sf) -> None:
    def unreadable() -> str:
        raise AssertionError("ClickHouse read for a start in the current month")

    apply_catalog(sf, _new_customer("2026-11-02T00:00:00Z"), now=NOV_15, newest_closed=unreadable)
    assert get_subscription(sf, "t1", "sub-9").phases[0].start == datetime(2026, 11, 2, tzinfo=UTC)
