"""Migration 0007 on SQLite and PostgreSQL: its tables match the models; down to 0006 and up again."""

from __future__ import annotations

from sqlalchemy import inspect

MY_TABLES = ("webhook_endpoints", "webhook_outbox", "webhook_deliveries")
LAGO_TABLES = ("lago_webhook_keys", "lago_event_errors")  # migrations 0014 (Lago-format endpoints) and 0015


def test_the_migration_matches_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.lago_event_errors
    import meterstream.webhooks.deliveries
    import meterstream.webhooks.lago_keys  # noqa: F401
    from meterstream.entities.db import Base

    assert set(MY_TABLES + LAGO_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mine = MY_TABLES + LAGO_TABLES
    assert [d for d in diff if any(f"'{t}'" in repr(d) or f"table={t}" in repr(d) for t in mine)] == []


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
    assert not names & set(MY_TABLES + LAGO_TABLES) and "invoices" in names
    migrate(engine=engine)
    assert events(sf, TENANT) == []  # back, empty
    issued(sf, "inv-2")
    assert [e.type for e in events(sf, TENANT)] == ["invoice.created", "invoice.finalized"]
    engine.dispose()


def test_0014_keeps_the_endpoints_made_before_it(fresh_url: str) -> None:
    """An endpoint registered on revision 0013 is a standard one on 0014 (the format's default), and still gets
    every event but the opt-in ones; a Lago endpoint and the keys table exist only from 0014."""
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory
    from meterstream.webhooks import endpoints

    engine = make_engine(url=fresh_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0013")
    assert "format" not in {c["name"] for c in inspect(engine).get_columns("webhook_endpoints")}
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO webhook_endpoints (tenant, endpoint_id, url, secret, event_types, description, enabled, "
            "created_at, updated_at) VALUES ('acme', 'ep_1', 'https://hooks.example.com/m', "
            "'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=', '[]', '', true, "
            "'2026-11-30 10:00:00+00:00', '2026-11-30 10:00:00+00:00')"
        )
    migrate(engine=engine)
    sf = session_factory(engine)
    (ep,) = endpoints.list_endpoints(sf, "acme")
    assert (ep.endpoint_id, ep.format, ep.signature_algo) == ("ep_1", "standard", None)
    assert ep.wants("invoice.finalized") and ep.wants("payment.recorded") and not ep.wants("session.held")
    lago = endpoints.register_lago(sf, "acme", "https://hooks.example.com/l", issuer="https://billing.example.com")
    assert (lago.format, lago.signature_algo) == ("lago", "jwt")
    assert lago.wants("invoice.finalized") and not lago.wants("payment.recorded")  # Lago has no such webhook
    engine.dispose()
