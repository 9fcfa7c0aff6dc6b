"""Meterstream's tables and views on a ClickHouse server cluster (`METERSTREAM_CLICKHOUSE_CLUSTER=<name>`).

Made from the single-node DDL (schema.sql + views.py, `ddl.statements`), so both stay one definition:

- each table `T` becomes a local table `T_local` on every host, `ON CLUSTER <name>`, with the same columns,
  partitioning, sort key, constraints and added columns, engine `ReplicatedReplacingMergeTree` at
  `/clickhouse/tables/{shard}/{database}/{table}` with replica `{replica}` (macros from each server's config;
  `deploy/clickhouse-cluster/`), and `non_replicated_deduplication_window` becomes
  `replicated_deduplication_window` (same size: replicated tables keep insert block ids in Keeper);
- `T` itself becomes a `Distributed(<name>, db, T_local, <sharding key>)` table over them, made `AS T_local` after
  its last ALTER (so it has the same columns, EPHEMERAL inputs and CHECK constraints: the sink's refusal probe
  copies `T`'s structure and must see the constraints). Every reader (views, the close, the API, analysts) and
  the sink keep using `T`;
- the sharding key of the usage and invoice tables is `cityHash64(tenant, customer)`: a customer's rows are on
  one shard, so `FINAL` (evaluated per shard) collapses a replayed event, and the joins of `invoiced_revenue`
  and `usage_reconciliation` match rows on the same shard. The views are created `ON CLUSTER` over the
  Distributed tables; those that join a subquery get `SETTINGS distributed_product_mode = 'local'`: where the
  left side is a Distributed table (`invoiced_revenue`) the co-sharded join runs on each shard against the
  local table (the default, `deny`, refuses such a query); where both sides are subqueries it changes nothing.

Inserts (aggregation/sink.py, unchanged) go to the Distributed table. They must be synchronous: the sink
commits Kafka offsets once the insert is acknowledged, and a background (default) Distributed insert is
acknowledged when spooled on the receiving server's disk, not when in the replicated tables. The cluster's
user profile sets `distributed_foreground_insert = 1` (deploy/clickhouse-cluster/users.xml;
`INSERT_PROFILE` here): the insert returns once each shard's block is in one replica, which replicates it
through Keeper. A repeated batch carries the same `insert_deduplication_token`; it is split by the same
deterministic key into the same per-shard blocks, each inserted with the query's settings, so each shard's
replicated table drops the repeat; and whatever slips through is still collapsed by `FINAL`. See
docs/scale-out.md for how this was checked (parsing, not a live server) and what is not done.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

LOCAL_SUFFIX = "_local"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"

# per table: the Distributed sharding key, a function of the row's identity (its sort key or what determines it)
SHARDING: dict[str, str] = {
    "rated_usage": "cityHash64(tenant, customer)",  # identity (tenant, event_id); an event has one customer
    "invoices": "cityHash64(tenant, customer)",
    "invoice_lines": "cityHash64(tenant, customer)",
    "dead_letters": "cityHash64(topic, partition)",  # identity (topic, partition, offset, record)
    "period_closes": "cityHash64(period)",
    "revenue_monthly": "cityHash64(tenant)",  # identity (tenant, month, currency)
}

# what the sink's inserts need on a cluster (set in the cluster's user profile, deploy/clickhouse-cluster/)
INSERT_PROFILE: dict[str, str] = {"distributed_foreground_insert": "1"}
# the co-sharded joins of the views (added to the views that need it)
JOIN_SETTINGS = "SETTINGS distributed_product_mode = 'local'"

_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$")
_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)(\s*\()", re.S)
_ENGINE = re.compile(r"ENGINE = ReplacingMergeTree(?:\((\w*)\))?")
_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+) ")
_VIEW = re.compile(r"^CREATE (VIEW IF NOT EXISTS|OR REPLACE VIEW) (\w+)\.(\w+) AS", re.S)
_JOIN = re.compile(r"(?<!ARRAY )\bJOIN \(")  # a join of a subquery (not ARRAY JOIN)


def local_table(table: str) -> str:
    return f"{table}{LOCAL_SUFFIX}"


def _engine(match: re.Match[str]) -> str:
    version = match.group(1)
    args = [f"'{REPLICA_PATH}'", f"'{REPLICA_NAME}'", *([version] if version else [])]
    return f"ENGINE = ReplicatedReplacingMergeTree({', '.join(args)})"


def statements(db: str, cluster: str) -> list[str]:
    """The DDL for `cluster`, in order: the database, the local replicated tables and their ALTERs, the
    Distributed tables, the views. Raises ValueError on a statement of schema.sql it does not know how to
    carry over (a new kind of statement must be looked at, not passed through)."""
    from meterstream.aggregation.ddl import statements as single_node

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ValueError(f"clickhouse_cluster: {cluster!r} is not a plain identifier")
    on = f"ON CLUSTER {cluster}"
    head: list[str] = []
    views: list[str] = []
    tables: list[str] = []
    for stmt in single_node(db):
        if m := _DATABASE.match(stmt):
            head.append(f"{stmt} {on}")
        elif m := _TABLE.match(stmt):
            table = m.group(2)
            if table not in SHARDING:
                raise ValueError(f"table {table}: no sharding key in cluster_ddl.SHARDING")
            if not _ENGINE.search(stmt):
                raise ValueError(f"table {table}: only ReplacingMergeTree tables are carried over to a cluster")
            local = _TABLE.sub(lambda t: f"CREATE TABLE IF NOT EXISTS {t.group(1)}.{local_table(t.group(2))} {on}"
                               f"{t.group(3)}", stmt, count=1)  # fmt: skip
            local = _ENGINE.sub(_engine, local, count=1)
            local = local.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
            head.append(local)
            tables.append(table)
        elif m := _ALTER.match(stmt):
            if m.group(2) not in tables:
                raise ValueError(f"ALTER of {m.group(2)} before its CREATE: {stmt[:80]}")
            head.append(_ALTER.sub(f"ALTER TABLE {m.group(1)}.{local_table(m.group(2))} {on} ", stmt, count=1))
        elif m := _VIEW.match(stmt):
            view = _VIEW.sub(f"CREATE {m.group(1)} {m.group(2)}.{m.group(3)} {on} AS", stmt, count=1)
            if _JOIN.search(view):
                view = f"{view}\n{JOIN_SETTINGS}"
            views.append(view)
        else:
            raise ValueError(f"no cluster form for: {stmt[:120]}")
    distributed = [
        f"CREATE TABLE IF NOT EXISTS {db}.{t} {on} AS {db}.{local_table(t)} "
        f"ENGINE = Distributed({cluster}, {db}, {local_table(t)}, {SHARDING[t]})"
        for t in tables
    ]
    return head + distributed + views


def create_cluster_schema(client: Client, db: str, cluster: str) -> int:
    """Run the cluster DDL (each statement waits for every host: `distributed_ddl_task_timeout`); safe to run
    again. The single-node `ddl.UPGRADES` do not apply: a cluster schema is created with every column."""
    stmts = statements(db, cluster)
    for stmt in stmts:
        client.command(stmt)
    return len(stmts)
