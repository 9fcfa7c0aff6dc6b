"""Fixtures of the entity tests: every test taking `sf` runs on SQLite AND on PostgreSQL.

PostgreSQL is a throwaway cluster for the session (tests/entities/pg_cluster.py) with one migrated
database, emptied before each test; tests of the migrations themselves create their own databases.
Without PostgreSQL installed the PostgreSQL cases are skipped, except in CI (CI=true), where they
fail: .ci/run installs postgresql-15 when it is missing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_cluster import PostgresCluster

from meterstream.entities.db import make_engine, migrate, session_factory


@pytest.fixture(scope="session")
def pg_store_url(pg_cluster: PostgresCluster) -> str:
    """One migrated PostgreSQL database for the session (emptied before each test that uses it)."""
    url = pg_cluster.create_database()
    engine = make_engine(url=url)
    migrate(engine=engine)
    engine.dispose()
    return url


def _empty_postgres(url: str) -> None:
    """Every table emptied and renumbered, as right after the migrations (CREATE DATABASE per test costs ~2 s)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE TABLE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO entity_outbox_head (id, writes) VALUES (1, 0)"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store's URL on each backend (SQLite: a fresh file; PostgreSQL: the session database, emptied)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'entities.db'}"
        return
    url = request.getfixturevalue("pg_store_url")
    _empty_postgres(url)
    yield url


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
