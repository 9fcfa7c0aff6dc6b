"""Fixtures of the API tests: an app on the session broker with its own topics, SQLite store and keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import offline_app
from fastapi.testclient import TestClient

from meterstream.api.app import create_app
from meterstream.ingest.topics import ensure_topics
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
