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
