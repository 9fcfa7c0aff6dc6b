"""Fixtures of the API tests: an app on the session broker with its own topics, SQLite store and keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from api_helpers import offline_app, role_key
from fastapi.testclient import TestClient

from meterstream.api.app import create_app
from meterstream.ingest.topics import ensure_topics
from meterstream.invoice_emitter.dunning_run import KafkaSink, run_dunning
from meterstream.schemas.settings import Settings


@pytest.fixture
def api_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """Fresh topics (own prefix) and a fresh SQL store per test, on the session broker."""
    s = kafka_settings.model_copy(
        update={
            "home": tmp_path,
            "topic_prefix": f"api-{uuid.uuid4().hex[:10]}.",
            "api_produce_timeout_s": 5.0,
            "api_rate_limit_per_s": 0.0,
            "database_url": None,
            "clickhouse_http_port": 0,  # no ClickHouse unless a test injects one
        }
    )
    ensure_topics(s)
    return s


@pytest.fixture
def make_client(api_settings: Settings) -> Iterator:
    clients: list[TestClient] = []

    def _make(settings: Settings | None = None, **kwargs: Any) -> TestClient:
        app = create_app(settings or api_settings, **kwargs)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:  # type: ignore[no-untyped-def]
    return make_client()


@pytest.fixture
def offline_client(fresh_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """An app without Kafka (api_helpers.offline_app) on an empty store of each kind: SQLite, then PostgreSQL
    (tests/conftest.py fresh_url)."""
    app = offline_app(tmp_path, fresh_url)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


@pytest.fixture
def suspend_c1_c2() -> Callable[..., dict[str, str]]:
    """The start of the tests of reactivation at once: customers c1 and c2 (in `currency`) suspended by dunning
    through `client`'s API. Tenant policy "one reminder 3 days after the due date, then suspend the day after it";
    invoices inv-1 (c1) and inv-2 (c2) stored by `invoice(sessions, invoice_id, customer)`, due 2026-10-15, both
    marked overdue on 2026-10-19; the collections run of 10-19 (`now` as run_dunning's) sends 2 reminders and 2
    suspensions to `settings`' topics. Returns the headers of an admin key of acme."""

    def _suspend(client: TestClient, settings: Settings, currency: str, invoice: Callable[[Any, str, str], object],
                 now: datetime | None = None) -> dict[str, str]:  # fmt: skip
        admin = role_key(client)
        for c in ("c1", "c2"):
            customer = {"name": c, "currency": currency}
            assert client.put(f"/v1/customers/{c}", json=customer, headers=admin).status_code in (200, 201)
        policy = {"reminder_days": [3], "suspend_after_last": True}
        assert client.put("/v1/dunning_policies/default", json=policy, headers=admin).status_code == 201
        sf = client.app.state.sessions
        for invoice_id, customer_id in (("inv-1", "c1"), ("inv-2", "c2")):
            invoice(sf, invoice_id, customer_id)
        overdue = client.post("/v1/invoices/mark_overdue", json={"today": "2026-10-19"}, headers=admin).json()["items"]
        assert sorted(i["invoice_id"] for i in overdue) == ["inv-1", "inv-2"]
        run = run_dunning(sf, date(2026, 10, 19), KafkaSink(settings), now=now)
        assert (run.reminders, run.suspended, run.reactivated) == (2, 2, 0)
        return admin

    return _suspend
