"""Create Meterstream's ClickHouse tables and views, and bring older ones up to date; safe to run again."""

from __future__ import annotations

from pathlib import Path

from clickhouse_connect.driver.client import Client

SCHEMA_SQL = Path(__file__).resolve().parent / "schema.sql"

# Changes to tables that `CREATE TABLE IF NOT EXISTS` leaves alone in stores made by older versions:
# (table, the column that marks the change, the ALTER that makes it). Applied in order, each once.
UPGRADES: tuple[tuple[str, str, str], ...] = (
    # the sink inserts the topic's records as they are: `id` / `key` feed `event_id` / `kafka_key`
    (
        "rated_usage",
        "id",
        "ALTER TABLE {db}.rated_usage ADD COLUMN IF NOT EXISTS id String EPHEMERAL '', "
        "MODIFY COLUMN event_id String DEFAULT id",
    ),
    (
        "dead_letters",
        "key",
        "ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS key Nullable(String) EPHEMERAL NULL, "
        "MODIFY COLUMN kafka_key String DEFAULT ifNull(key, '')",
    ),
    # the sink's dead letters: several records of one packed rated-usage message may be refused
    (
        "dead_letters",
        "record",
        "ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS record UInt32 AFTER offset, "
        "MODIFY ORDER BY (topic, partition, offset, record)",
    ),
)


# Table settings that `CREATE TABLE IF NOT EXISTS` leaves alone in older stores: (table, setting, value), set
# with ALTER ... MODIFY SETTING when the table's definition lacks them (schema.sql says why each is there).
SETTINGS_UPGRADES: tuple[tuple[str, str, str], ...] = (("rated_usage", "merge_selector_base", "10"),)


def statements(db: str) -> list[str]:
    """The DDL statements of schema.sql for database `db`, comments stripped, in order, then the analysts'
    views (`views.py`)."""
    from meterstream.aggregation.views import statements as view_statements

    text = "\n".join(line for line in SCHEMA_SQL.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace("{db}", db) for s in text.split(";") if s.strip()] + view_statements(db)


def create_schema(client: Client, db: str, cluster: str | None = None) -> int:
    """Create what is missing, then apply the upgrades an older store lacks; returns statements run. With a
    `cluster` (METERSTREAM_CLICKHOUSE_CLUSTER): the replicated + Distributed tables of `cluster_ddl` instead."""
    if cluster:
        from meterstream.aggregation.cluster_ddl import create_cluster_schema

        return create_cluster_schema(client, db, cluster)
    stmts = statements(db)
    for stmt in stmts:
        client.command(stmt)
    return len(stmts) + upgrade(client, db)


def upgrade(client: Client, db: str) -> int:
    """Apply the `UPGRADES` whose marker column is missing (a store created before the change), and the
    `SETTINGS_UPGRADES` the table's definition lacks."""
    applied = 0
    for table, column, alter in UPGRADES:
        present = client.command(
            "SELECT count() FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND name = {c:String}",
            parameters={"db": db, "t": table, "c": column},
        )
        if not int(present):
            client.command(alter.replace("{db}", db))
            applied += 1
    for table, setting, value in SETTINGS_UPGRADES:
        definition = client.command(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": db, "t": table},
        )
        if f"{setting} = {value}" not in str(definition):
            client.command(f"ALTER TABLE {db}.{table} MODIFY SETTING {setting} = {value}")
            applied += 1
    return applied
