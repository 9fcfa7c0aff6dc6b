"""The SQL store of API keys and entities: engine and sessions from `Settings.database_url`, and migrations.

Default: SQLite at `<home>/meterstream.db` in WAL mode, so the CLI (`meterstream keys ...`) and a
running API share the file safely; PostgreSQL by URL (`postgresql+psycopg://...`). Keep SQL portable.
Migrations (Alembic, `entities/migrations`) run at API start and in `meterstream init`: `migrate(settings)`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from meterstream.schemas.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base of every entity model (one module per entity)."""


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'meterstream.db'}"


def make_engine(settings: Settings | None = None, url: str | None = None, **kwargs: Any) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout (other processes write too) and foreign keys."""
    url = url or database_url(settings or Settings())
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(settings: Settings | None = None, engine: Engine | None = None) -> None:
    """Bring the schema to the newest revision (safe to repeat; a fresh machine needs no manual step)."""
    from alembic import command

    engine = engine or make_engine(settings)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            return
        except DBAPIError:
            # two processes migrating a fresh store at once (the API starting while `meterstream keys` runs):
            # the loser's DDL fails; its next attempt reads the winner's version and has nothing left to do
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
