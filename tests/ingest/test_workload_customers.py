"""The workload's customer activity (ingest.workload, `WorkloadSpec.customers`): pareto, the default, makes each
tenant's first customer the busy one; uniform spreads events evenly (bench/e2e.py --customers uniform)."""

from collections import Counter

import orjson
import pytest

from meterstream.ingest.workload import Truth, WorkloadSpec, generate


def _customers(customers: str, events: int = 20_000) -> dict[str, Counter[str]]:
    by_tenant: dict[str, Counter[str]] = {}
    for _key, value in generate(WorkloadSpec(events=events, customers=customers), Truth()):
        try:
            e = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # the malformed share
        if isinstance(e, dict) and isinstance(e.get("customer"), str) and isinstance(e.get("tenant"), str):
            by_tenant.setdefault(e["tenant"], Counter())[e["customer"]] += 1
    return by_tenant


def test_pareto_first_customer_sends_over_half_of_its_tenants_events() -> None:
    # Pareto(alpha=1.2), customer = floor(X) - 1: P(X < 2) = 1 - 2^-1.2 = 0.5647 of a tenant's events go to customer 0
    for tenant, first in (("telco", "acct-000"), ("cloudco", "org-000")):
        counts = _customers("pareto")[tenant]
        assert counts[first] / sum(counts.values()) == pytest.approx(0.5647, abs=0.02), tenant


def test_uniform_spreads_customers_evenly() -> None:
    counts = _customers("uniform")["telco"]
    assert len(counts) == 40  # WorkloadSpec.telco_customers, every one of them seen
    share = max(counts.values()) / sum(counts.values())
    assert share < 0.04  # 1/40 = 0.025 each; ~250 events per customer, 0.04 is > 5 standard deviations above
