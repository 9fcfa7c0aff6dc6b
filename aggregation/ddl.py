"""Create Meterstream's ClickHouse tables and views; safe to run again."""

from __future__ import annotations

from pathlib import Path

from clickhouse_connect.driver.client import Client

SCHEMA_SQL = Path(__file__).resolve().parent / "schema.sql"


def statements(db: str) -> list[str]:
    """The DDL statements of schema.sql for database `db`, comments stripped, in order."""
    text = "\n".join(line for line in SCHEMA_SQL.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace("{db}", db) for s in text.split(";") if s.strip()]


def create_schema(client: Client, db: str) -> int:
    stmts = statements(db)
    for stmt in stmts:
        client.command(stmt)
    return len(stmts)
