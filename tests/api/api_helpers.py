"""Helpers of the API tests (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from meterstream.api.app import create_app
from meterstream.ingest.dlq import read_topic
from meterstream.ingest.topics import Topics
from meterstream.schemas.settings import Settings


def recent(minutes: int = 5) -> str:
    """An event time inside the processor's window (it refuses events far in the past)."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def event(i: str | int, customer: str = "c1", meter: str = "api_calls", quantity: Any = "2", **extra: Any) -> dict:
    return {"id": str(i), "customer": customer, "meter": meter, "quantity": quantity, "time": recent(), **extra}


def topic_messages(settings: Settings, which: str) -> list[tuple[bytes | None, dict]]:
    """(key, decoded value) of every message in one of the test's topics."""
    topic = getattr(Topics.from_settings(settings), which)
    return [(m.key(), orjson.loads(m.value())) for m in read_topic(settings, topic, timeout=30)]


def bearer(client: TestClient, tenant: str = "acme", role: str = "ingest") -> dict[str, str]:
    _info, token = client.app.state.keys.create(tenant, role, "test")
    return {"Authorization": f"Bearer {token}"}


def role_key(client: TestClient, role: str = "admin", tenant: str = "acme") -> dict[str, str]:
    """The Authorization header of a new key (role first: the entity API tests vary the role)."""
    return bearer(client, tenant, role)


def error(response: Any) -> tuple[int, str, str | None]:
    """(status, error code, field) of an error response in the API's shape."""
    body = response.json()["error"]
    return response.status_code, body["code"], body.get("field")


class NoIngest:
    """Stands in for the API's IngestService where a test sends no events (no Kafka)."""

    def close(self, timeout: float = 0) -> None:
        pass

    def submit(self, tenant: str, events: list[Any]) -> list[Any]:
        assert not events, "this test sends no events"
        return []


def offline_settings(home: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Settings of an app without Kafka (an unreachable bootstrap) nor the per-key rate limit, its store at
    `database_url` (None: SQLite in `home`), and no ClickHouse endpoint unless a test injects a client (reads that
    need one answer 503; a sink serving :8123 on this machine is never read by a test)."""
    overrides = {"clickhouse_http_port": 0, **overrides}
    return Settings(home=home, database_url=database_url, kafka_bootstrap="127.0.0.1:9", api_rate_limit_per_s=0.0,
                    **overrides)  # fmt: skip


def offline_app(home: Path, database_url: str | None = None, **kwargs: Any) -> Any:
    """The API app on `offline_settings` with `NoIngest`; `kwargs` go to create_app (relay=False, ...)."""
    return create_app(offline_settings(home, database_url), ingest=NoIngest(), **kwargs)  # type: ignore[arg-type]
