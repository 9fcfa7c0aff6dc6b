"""Migration 0004 on SQLite and PostgreSQL: matches the models, keeps existing customers, goes down and up."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from meterstream.entities.customers import get_customer_doc
from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

NEW_TABLES = {"plan_versions", "subscriptions", "subscription_phases", "entity_outbox", "entity_outbox_head",
              "relay_position"}  # fmt: skip
NEW_CUSTOMER_COLUMNS = {"legal_name", "tax_id", "country", "address", "timezone", "invoice_grace_days",
                        "payment_terms_days", "version"}  # fmt: skip


def test_migrated_tables_match_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.outbox
    import meterstream.entities.plans
    import meterstream.entities.subscriptions  # noqa: F401 - register the models
    from meterstream.entities.db import Base

    assert NEW_TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mine = [d for d in diff if _table(d) in (*NEW_TABLES, "customers")]
    assert mine == []


def _table(item: object) -> str | None:
    """The table an alembic comparison item is about (a list of column changes: the first one's)."""
    if isinstance(item, list):
        item = item[0]
    assert isinstance(item, tuple)
    target = item[1]
    if hasattr(target, "table"):  # index, constraint
        return target.table.name
    if hasattr(target, "name") and item[0] in ("add_table", "remove_table"):
        return target.name
    return item[2] if len(item) > 2 and isinstance(item[2], str) else None


def test_existing_customers_get_version_1_and_utc(fresh_url: str) -> None:
    from alembic import command

    engine = make_engine(url=fresh_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO customers (id, tenant, key, name, currency, created_at, updated_at) "
                 "VALUES ('01J0000000000000000000000A', 'acme', 'org-1', 'Org One', 'USD', :now, :now)"),
            {"now": now},
        )  # fmt: skip
    migrate(engine=engine)
    doc = get_customer_doc(session_factory(engine), "acme", "org-1")
    assert (doc.version, doc.timezone, doc.invoice_grace_days, doc.currency) == (1, "UTC", 0, "USD")
    engine.dispose()


def test_down_to_0003_and_up_again(fresh_url: str) -> None:
    from alembic import command

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    insp = inspect(engine)
    assert not NEW_TABLES & set(insp.get_table_names())
    assert not NEW_CUSTOMER_COLUMNS & {c["name"] for c in insp.get_columns("customers")}
    migrate(engine=engine)
    insp = inspect(engine)
    assert NEW_TABLES <= set(insp.get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, writes FROM entity_outbox_head")).all() == [(1, 0)]
    engine.dispose()
