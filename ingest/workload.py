"""A realistic mixed workload for demos, tests and benchmarks, with the truth needed to check the results.

Telecom operator `telco` (voice seconds by destination, SMS, data bytes per line) and cloud provider
`cloudco` (API calls and storage GB-hours per user); skewed customer activity, out-of-order times,
exact duplicates (some much later), malformed events and events nobody can rate (unknown tenant).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from meterstream.schemas.event import event_key, format_time

DESTINATIONS = ["+4930", "+4940", "+49151", "+49170", "+33", "+44", "+1", "+86"]


@dataclass
class Truth:
    """What the pipeline must end up with, computed from the generated input (not from the pipeline)."""

    produced: int = 0
    duplicates: int = 0
    malformed: int = 0
    unratable: int = 0
    quantities: dict[tuple[str, str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    events: Counter = field(default_factory=Counter)
    # per (period, tenant, customer, meter): quantity and event count of accepted events
    by_period: dict[tuple[str, str, str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    events_by_period: Counter = field(default_factory=Counter)
    refused: list[bytes] = field(default_factory=list)  # every malformed or unratable value, as produced
    accepted_events: list[dict] = field(default_factory=list)  # in production order, when spec.keep_events

    @property
    def accepted(self) -> int:
        return self.produced - self.duplicates - self.malformed - self.unratable


@dataclass(frozen=True)
class WorkloadSpec:
    events: int = 100_000
    period: str = "2026-10"
    duplicate_rate: float = 0.03
    malformed_rate: float = 0.005
    unratable_rate: float = 0.001
    telco_customers: int = 40
    cloud_customers: int = 200
    seed: int = 7
    run_id: str = "demo"
    late_period: str | None = None  # events for this (closed) period, mixed in at `late_rate`
    late_rate: float = 0.0
    extra_tenants: tuple[str, ...] = ()  # more cloud-style tenants besides `cloudco`
    keep_events: bool = False
    # "pareto": a few customers make most of the traffic (each tenant's first customer ~56% of its events: with few
    # partitions the two busiest partitions carry most events); "uniform": every customer as likely
    customers: str = "pareto"


def _period_bounds(period: str) -> tuple[datetime, int]:
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return start, int((nxt - start).total_seconds() * 1000)


def _customer(rng: random.Random, spec: WorkloadSpec, n: int) -> int:
    if spec.customers == "uniform":
        return rng.randrange(n)
    return min(int(rng.paretovariate(1.2)) - 1, n - 1)  # a few customers make most of the traffic


def _event(rng: random.Random, spec: WorkloadSpec, i: int, start: datetime, span_ms: int) -> dict:
    when = format_time(start + timedelta(milliseconds=rng.randrange(span_ms)))
    eid = f"{spec.run_id}-{i:09d}"
    if rng.random() < 0.5:
        c = _customer(rng, spec, spec.telco_customers)
        line = f"+4917{c:04d}{rng.randrange(5)}"
        kind = rng.random()
        if kind < 0.55:
            meter, q = "voice_seconds", str(max(1, int(rng.expovariate(1 / 150))))
            dims = {"destination": rng.choice(DESTINATIONS) + str(rng.randrange(10**6, 10**7))}
        elif kind < 0.85:
            meter, q, dims = (
                "sms",
                "1",
                {"destination": rng.choice(DESTINATIONS[:4]) + str(rng.randrange(10**6))},
            )
        else:
            meter, q, dims = "data_bytes", str(rng.randrange(10_000, 50_000_000)), {"apn": "internet"}
        return {
            "id": eid,
            "tenant": "telco",
            "customer": f"acct-{c:03d}",
            "subject": line,
            "meter": meter,
            "quantity": q,
            "time": when,
            "dimensions": dims,
            "source": "mediation-1",
        }
    c = _customer(rng, spec, spec.cloud_customers)
    tenant = rng.choice(("cloudco", *spec.extra_tenants)) if spec.extra_tenants else "cloudco"
    user = f"user-{rng.randrange(20):02d}"
    if rng.random() < 0.8:
        meter, q = "api_calls", str(rng.randrange(1, 500))
        dims = {"region": rng.choice(["eu-west-1", "us-east-1"]), "endpoint": rng.choice(["/v1/a", "/v1/b"])}
    else:
        meter, q = "storage_gb_hours", f"{rng.randrange(1, 5_000_000) / 1000:.3f}"
        dims = {"region": rng.choice(["eu-west-1", "us-east-1"])}
    return {
        "id": eid,
        "tenant": tenant,
        "customer": f"org-{c:03d}",
        "subject": user,
        "meter": meter,
        "quantity": q,
        "time": when,
        "dimensions": dims,
        "source": "api-gateway",
    }


MALFORMED = [
    lambda e: b"{not json" + e["id"].encode(),
    lambda e: orjson.dumps({k: v for k, v in e.items() if k != "customer"}),
    lambda e: orjson.dumps({**e, "quantity": "-5"}),
    lambda e: orjson.dumps({**e, "time": "yesterday"}),
    lambda e: orjson.dumps({**e, "quantity": "abc"}),
    lambda e: orjson.dumps({**e, "qty": 1}),
]


def generate(spec: WorkloadSpec, truth: Truth | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) messages; fills `truth` as it goes."""
    rng = random.Random(spec.seed)
    truth = truth if truth is not None else Truth()
    start, span_ms = _period_bounds(spec.period)
    late = _period_bounds(spec.late_period) if spec.late_period else None
    recent: list[tuple[bytes, bytes]] = []
    early: list[tuple[bytes, bytes]] = []  # a reservoir over the whole run: re-sent much later
    seen = 0
    for i in range(spec.events):
        r = rng.random()
        if r < spec.duplicate_rate and recent:
            # an exact re-send: usually soon after the original, sometimes much later
            pick = rng.random()
            if pick < 0.6:
                key, value = recent[-rng.randrange(1, min(len(recent), 50) + 1)]
            elif pick < 0.8:
                key, value = rng.choice(recent)
            else:
                key, value = rng.choice(early)
            truth.duplicates += 1
        else:
            is_late = late is not None and rng.random() < spec.late_rate
            period = spec.late_period if is_late else spec.period
            e = _event(rng, spec, i, *(late if is_late else (start, span_ms)))
            key = event_key(e["tenant"], e["customer"])
            r2 = rng.random()
            if r2 < spec.malformed_rate:
                value = rng.choice(MALFORMED)(e)
                truth.malformed += 1
                truth.refused.append(value)
            elif r2 < spec.malformed_rate + spec.unratable_rate:
                e["tenant"] = "unknown-tenant"
                key, value = event_key(e["tenant"], e["customer"]), orjson.dumps(e)
                truth.unratable += 1
                truth.refused.append(value)
            else:
                value = orjson.dumps(e)
                q = Decimal(e["quantity"])
                truth.quantities[(e["tenant"], e["customer"], e["meter"])] += q
                truth.events[(e["tenant"], e["customer"], e["meter"])] += 1
                truth.by_period[(period, e["tenant"], e["customer"], e["meter"])] += q
                truth.events_by_period[(period, e["tenant"], e["customer"], e["meter"])] += 1
                if spec.keep_events:
                    truth.accepted_events.append({**e, "period": period})
                recent.append((key, value))
                if len(recent) > 20_000:
                    recent = recent[-10_000:]
                seen += 1
                if len(early) < 10_000:
                    early.append((key, value))
                elif rng.random() < 10_000 / seen:
                    early[rng.randrange(10_000)] = (key, value)
        truth.produced += 1
        yield key, value
