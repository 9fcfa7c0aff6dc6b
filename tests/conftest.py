"""Shared fixtures: a real Kafka broker for the session (started through `deploy.kafka_local`), a throwaway
PostgreSQL cluster for the session (tests/entities/pg_cluster.py; every test that runs on both databases
takes its databases from it), and a free port for every ClickHouse HTTP front a test's sink may serve (never
the fixed default 8123, which two runs at once would fight over)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterstream.deploy.ports import free_port, free_port_pair
from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "entities"))

from pg_cluster import PostgresCluster, pg_bin  # noqa: E402  (tests/entities/pg_cluster.py)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a real broker: METERSTREAM_KAFKA_BOOTSTRAP if given, else a fresh local one."""
    from meterstream.deploy import kafka_local

    home = tmp_path_factory.mktemp("meterstream-home")
    overrides = {"home": home, "kafka_port": free_port_pair(), "kafka_heap": "512m",
                 "clickhouse_http_port": free_port()}  # fmt: skip
    settings = Settings(**overrides)
    kafka_local.start(settings)
    yield settings
    kafka_local.stop(settings)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (a temp dir, a free port); tests create databases in it.
    Without PostgreSQL installed its tests are skipped, except in CI (CI=true), where they fail: .ci/run
    installs postgresql-15 when it is missing."""
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (initdb/pg_ctl): .ci/run installs postgresql-15")
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl)")
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own on each database (the migration tests move the schema up and down)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture(autouse=True)
def clickhouse_http_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """Every test: a sink it starts from this environment (in-process Settings, or a child process that
    inherits it) serves the ClickHouse HTTP front on a free port. A test that builds its child's
    environment from scratch sets METERSTREAM_CLICKHOUSE_HTTP_PORT itself (tests/e2e, tests/deploy do)."""
    port = free_port()
    monkeypatch.setenv("METERSTREAM_CLICKHOUSE_HTTP_PORT", str(port))
    return port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("METERSTREAM_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory):
    """One embedded ClickHouse for the session (chdb allows one store path per process); tests use own databases."""
    from meterstream.aggregation.client import connect

    return connect(dsn=f"chdb://{tmp_path_factory.mktemp('chdb')}")


@pytest.fixture
def db(chdb_client) -> str:  # type: ignore[no-untyped-def]
    """A fresh database with Meterstream's tables (aggregation/ddl.py) in the session's embedded ClickHouse; a test
    module that needs another scope or content defines its own `db`."""
    import uuid

    from meterstream.aggregation.ddl import create_schema

    name = f"t_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    return name
