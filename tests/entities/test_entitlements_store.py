"""The features / entitlements / grants / resets store on SQLite and PostgreSQL: keys unique while active, one active
entitlement per customer and feature, exact amounts back, grants voided once, resets only forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.entitlements import (
    EntitlementCreate,
    EntitlementExists,
    EntitlementRepository,
    GrantCreate,
    Reset,
)

T = datetime(2026, 11, 1, tzinfo=UTC)


def test_features_entitlements_grants_and_resets(sf):
    repo = EntitlementRepository(sf)
    f = repo.create_feature("t1", "api_calls", "API calls", "calls", {"region": "eu"})
    with pytest.raises(Conflict):
        repo.create_feature("t1", "api_calls", "again")
    assert repo.create_feature("t2", "api_calls", "another tenant's").id != f.id
    terms = EntitlementCreate(type="metered", usage_interval=(1, "month"), usage_anchor=T, measure_usage_from=T)
    grant = GrantCreate(amount=Decimal("1234.000000000001"), effective_at=T, priority=3, max_rollover=Decimal("10.5"))
    e = repo.create_entitlement("t1", "C1", terms, f, T, [grant])
    assert (e.feature_key, e.customer_id, e.usage_interval, e.measure_usage_from) == (
        "api_calls",
        "C1",
        (1, "month"),
        T,
    )
    with pytest.raises(EntitlementExists) as exists:
        repo.create_entitlement("t1", "C1", terms, f, T)
    assert exists.value.existing == e.id
    (stored,) = repo.grants("t1", (e.id,))
    assert (stored.grant.amount, stored.grant.max_rollover, stored.grant.min_rollover, stored.grant.priority) == (
        Decimal("1234.000000000001"), Decimal("10.5"), Decimal(0), 3)  # fmt: skip
    voided = repo.void_grant("t1", stored.grant.id, T + timedelta(hours=1))
    assert voided.grant.voided_at == T + timedelta(hours=1)
    with pytest.raises(Invalid):
        repo.void_grant("t1", stored.grant.id, T + timedelta(hours=2))
    repo.add_reset("t1", e.id, Reset(T + timedelta(days=3), T + timedelta(days=3), True))
    with pytest.raises(Invalid):
        repo.add_reset("t1", e.id, Reset(T + timedelta(days=2), T, False))  # not after the last one
    assert e.timeline(repo.resets("t1", e.id)).period_at(T + timedelta(days=5)) == (
        T + timedelta(days=3), datetime(2026, 12, 4, tzinfo=UTC))  # fmt: skip
    repo.archive_feature("t1", "api_calls")
    with pytest.raises(NotFound):
        repo.feature("t1", "api_calls")
    assert repo.feature("t1", f.id, archived=True).archived_at is not None
    repo.delete_entitlement("t1", "C1", "api_calls")
    assert repo.entitlements("t1", ("C1",)) == []
    assert [x.id for x in repo.entitlements("t1", ("C1",), include_deleted=True)] == [e.id]
