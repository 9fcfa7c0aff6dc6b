"""Migration 0007 on SQLite and PostgreSQL: its tables match the models; down to 0006 and up again."""

from __future__ import annotations

from sqlalchemy import inspect

MY_TABLES = ("webhook_endpoints", "webhook_outbox", "webhook_deliveries")


def test_the_migration_matches_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.webhooks.deliveries  # noqa: F401 - registers the models
    from meterstream.entities.db import Base

    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if any(f"'{t}'" in repr(d) or f"table={t}" in repr(d) for t in MY_TABLES)] == []


def test_down_to_0006_and_up_again(fresh_url: str) -> None:
    from alembic import command
    from invoice_helpers import TENANT, issued

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory
    from meterstream.webhooks.outbox import events

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    issued(sf, "inv-1")
    assert len(events(sf, TENANT)) == 2
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    names = set(inspect(engine).get_table_names())
    assert not names & set(MY_TABLES) and "invoices" in names
    migrate(engine=engine)
    assert events(sf, TENANT) == []  # back, empty
    issued(sf, "inv-2")
    assert [e.type for e in events(sf, TENANT)] == ["invoice.created", "invoice.finalized"]
    engine.dispose()
