"""Fixtures of the entity tests: every test taking `sf` runs on SQLite AND on PostgreSQL.

PostgreSQL is a throwaway cluster for the session (tests/entities/pg_cluster.py), one fresh database
per test. Without PostgreSQL installed the PostgreSQL cases are skipped, except in CI (CI=true), where
they fail: .ci/run installs postgresql-15 when it is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_cluster import PostgresCluster, pg_bin  # noqa: E402

from meterstream.entities.db import make_engine, migrate, session_factory  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (initdb/pg_ctl): .ci/run installs postgresql-15")
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl)")
    cluster = PostgresCluster(tmp_path_factory.mktemp("pg"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'entities.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(url=db_url)
    migrate(engine=engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sf(engine):
    """A session factory on a migrated store (SQLite or PostgreSQL)."""
    return session_factory(engine)
