"""The example prepaid plan of docs/authorization.md and an API app set up with it: the one set-up that
bench/authorize.py and the authorization tests (tests/api/test_authorize*.py, tests/api/test_plan_source.py,
tests/entities/test_holds_race.py, which load it by path: tests/by_path.py) share. It lives under bench/, not in
the runtime package: nothing at runtime uses it.

The plan (hand-computable): Berlin, peak Mon-Fri 08:00-18:00. National calls (49...) 0.10 EUR connect fee, 60/60,
0.06/min peak, 0.03/min off-peak; bundle FREE5 of 5 free minutes. Usage meters: `api_calls` 0.003 EUR per call,
`tokens` graduated (100 free, then 0.01 each). Every customer of tenant `t1` is on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from meterstream.rating.catalog import Plan, parse_catalog
from meterstream.schemas.settings import Settings

TENANT = "t1"
NAT = {"destination": "+4930123"}
TELECOM: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "rounding": {"decimals": 4, "method": "half_up"},
    "time_bands": {"default": "offpeak",
                   "periods": [{"band": "peak", "days": ["weekdays"], "start": "08:00", "end": "18:00"}]},
    "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
    "rates": {
        "R_PEAK": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.06", "per": 60}]},
        "R_OFF": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.03", "per": 60}]},
    },
    "meters": {"voice_seconds": {"kind": "voice",
                                 "rates": [{"destination": "NAT", "bands": {"peak": "R_PEAK", "offpeak": "R_OFF"}}]}},
    "bundles": [{"id": "FREE5", "meter": "voice_seconds", "amount": 5, "unit": "minutes"}],
}  # fmt: skip
CATALOG: dict[str, Any] = {
    "plans": [{
        "id": "prepaid", "currency": "EUR", "telecom": TELECOM,
        "meters": {"api_calls": {"model": "unit", "unit_amount": "0.003"},
                   "tokens": {"model": "graduated", "tiers": [{"up_to": "100", "unit_amount": "0"},
                                                              {"up_to": None, "unit_amount": "0.01"}]}},
    }],
    "assignments": [{"tenant": TENANT, "customer": "*", "plan": "prepaid"}],
}  # fmt: skip


class NoIngest:
    """The app's ingest service when nothing is produced (no Kafka)."""

    def close(self) -> None:
        pass


def write_catalog(directory: Path) -> Path:
    """The catalog as a file (`Settings.catalog`) in `directory`."""
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG))
    return path


def example_plan() -> Plan:
    """The plan itself (for the pure authorization, without the store)."""
    plan = parse_catalog(CATALOG).plan_for(TENANT, "any")
    assert plan is not None
    return plan


def example_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for an app on a SQLite store in `home` with the catalog, no Kafka (an unreachable bootstrap), the
    per-key rate limit off."""
    values: dict[str, Any] = {"home": home, "kafka_bootstrap": "127.0.0.1:9", "api_rate_limit_per_s": 0.0,
                              "database_url": None, "catalog": write_catalog(home)}  # fmt: skip
    return Settings(**{**values, **overrides})


def example_app(home: Path, *, clickhouse_client: Any = None, **overrides: Any) -> Any:
    """The API app (api/app.py) on `example_settings`, without ingest nor the entity relay."""
    from meterstream.api.app import create_app

    settings = example_settings(home, **overrides)
    return create_app(settings, ingest=NoIngest(), relay=False, clickhouse_client=clickhouse_client)  # type: ignore[arg-type]


def add_customer(app: Any, customer: str, *, balance: str | None = None, tenant: str = TENANT) -> None:
    """Store the customer (EUR); with `balance`, give it a snapshot in the app's balance feed, as the `balances`
    topic reader does (api/balance_feed.py)."""
    from meterstream.api.routes.authorize import feed_of
    from meterstream.entities.customers import put_customer
    from meterstream.schemas.entities import CustomerDoc
    from meterstream.schemas.provisioning import BalanceSnapshot

    put_customer(app.state.sessions, CustomerDoc(tenant=tenant, external_id=customer, name=customer, version=0,
                                                 currency="EUR"))  # fmt: skip
    if balance is not None:
        feed_of(app).put(BalanceSnapshot(tenant=tenant, customer=customer, currency="EUR", balance=balance,
                                         consumed="0", as_of="2026-12-01T10:00:00Z"))  # fmt: skip
