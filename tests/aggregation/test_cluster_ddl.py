"""The ClickHouse cluster DDL (aggregation/cluster_ddl.py). No ClickHouse server runs here: every statement is parsed
and formatted by ClickHouse's own parser (chdb's `formatQuery`, the parser a server runs before it executes a
statement, ON CLUSTER included), and compared with the single-node DDL line by line: the only differences are the
ones the cluster needs, written out here by hand."""

from __future__ import annotations

import difflib
import re
import uuid

import pytest

from meterstream.aggregation import cluster_ddl, ddl
from meterstream.aggregation.ddl import create_schema
from meterstream.schemas.settings import Settings

DB, CLUSTER = "meterstream", "meterstream_cluster"
ON = f"ON CLUSTER {CLUSTER}"
TABLES = ("rated_usage", "dead_letters", "invoices", "invoice_lines", "period_closes", "revenue_monthly")
PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def _fmt(client, sql: str) -> str:
    """ClickHouse's parser: formats the statement, or raises on a syntax error."""
    return client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]


@pytest.fixture(scope="module")
def cluster_stmts() -> list[str]:
    return cluster_ddl.statements(DB, CLUSTER)


def _single(name: str) -> str:
    return next(s for s in ddl.statements(DB) if f"{DB}.{name}\n" in s or f"{DB}.{name} " in s.split("\n")[0] + " ")


def _local(stmts: list[str], table: str) -> str:
    return next(s for s in stmts if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.{table}_local "))


def test_every_statement_parses_with_clickhouses_parser_and_runs_on_the_cluster(chdb_client, cluster_stmts) -> None:
    assert len(cluster_stmts) == len(ddl.statements(DB)) + len(TABLES)  # one Distributed table more per table
    for stmt in cluster_stmts:
        formatted = _fmt(chdb_client, stmt)
        assert f" {ON}" in formatted, formatted[:200]
        chdb_client.query(f"EXPLAIN AST {stmt}")  # parsed again as a statement of its own
    # the check can fail: a statement ClickHouse cannot parse raises
    with pytest.raises(Exception, match="Syntax error"):
        _fmt(chdb_client, cluster_stmts[-1].replace(" AS SELECT", " AS SELEC"))


def _changed_lines(client, single: str, clustered: str) -> list[tuple[str, str]]:
    a, b = _fmt(client, single).splitlines(), _fmt(client, clustered).splitlines()
    pairs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            pairs.append(("\n".join(a[i1:i2]), "\n".join(b[j1:j2])))
    return pairs


def test_local_tables_are_the_single_node_tables_replicated(chdb_client, cluster_stmts) -> None:
    rated = _changed_lines(chdb_client, _single("rated_usage"), _local(cluster_stmts, "rated_usage"))
    assert rated == [
        (f"CREATE TABLE IF NOT EXISTS {DB}.rated_usage", f"CREATE TABLE IF NOT EXISTS {DB}.rated_usage_local {ON}"),
        ("ENGINE = ReplacingMergeTree", f"ENGINE = ReplicatedReplacingMergeTree({PATH})"),
        (  # the merge setting carried over
            "SETTINGS non_replicated_deduplication_window = 1000, merge_selector_base = 10",
            "SETTINGS replicated_deduplication_window = 1000, merge_selector_base = 10",
        ),
    ], rated
    invoices = _changed_lines(chdb_client, _single("invoices"), _local(cluster_stmts, "invoices"))
    assert invoices == [
        (f"CREATE TABLE IF NOT EXISTS {DB}.invoices", f"CREATE TABLE IF NOT EXISTS {DB}.invoices_local {ON}"),
        ("ENGINE = ReplacingMergeTree(closed_at)", f"ENGINE = ReplicatedReplacingMergeTree({PATH}, closed_at)"),
    ], invoices
    for table in TABLES:  # every table: the name, the engine, the dedup window's name; columns and keys the same
        changed = _changed_lines(chdb_client, _single(table), _local(cluster_stmts, table))
        assert 2 <= len(changed) <= 3, (table, changed)
        assert all(old.split(" ")[0] in {"CREATE", "ENGINE", "SETTINGS"} for old, _ in changed), changed
        assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in \
            _local(cluster_stmts, table)  # fmt: skip
    # the single-node window (insert dedup of the non-replicated table) has its replicated twin, same size
    assert "non_replicated_deduplication_window" not in " ".join(cluster_stmts)
    assert "replicated_deduplication_window = 1000" in _local(cluster_stmts, "rated_usage")


def test_alters_go_to_the_local_tables_on_the_cluster(cluster_stmts) -> None:
    alters = [s for s in cluster_stmts if s.startswith("ALTER")]
    single = [s for s in ddl.statements(DB) if s.startswith("ALTER")]
    assert len(alters) == len(single) == 6
    assert alters[0] == (f"ALTER TABLE {DB}.rated_usage_local {ON} ADD CONSTRAINT IF NOT EXISTS quantity_not_negative "
                         "CHECK quantity >= 0")  # fmt: skip
    assert all(a.startswith(f"ALTER TABLE {DB}.") and f"_local {ON} " in a for a in alters)


def test_distributed_tables_shard_by_tenant_and_customer(chdb_client, cluster_stmts) -> None:
    dist = {s.split()[5].split(".")[1]: s for s in cluster_stmts if "ENGINE = Distributed(" in s}
    assert sorted(dist) == sorted(TABLES)
    assert dist["rated_usage"] == (
        f"CREATE TABLE IF NOT EXISTS {DB}.rated_usage {ON} AS {DB}.rated_usage_local "
        f"ENGINE = Distributed({CLUSTER}, {DB}, rated_usage_local, cityHash64(tenant, customer))"
    )
    for table in ("invoices", "invoice_lines"):  # co-sharded with rated_usage: the views' joins stay on a shard
        assert dist[table].endswith(f"Distributed({CLUSTER}, {DB}, {table}_local, cityHash64(tenant, customer))")
    # every key's columns exist, and are the row's identity (sort key) or, for the usage and invoice tables,
    # tenant + customer: checked against the single-node tables as ClickHouse creates them
    db = f"cl_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    for table, stmt in dist.items():
        key = stmt.rsplit("cityHash64(", 1)[1].rstrip(")")
        cols = [c.strip() for c in key.split(",")]
        where = {"d": db, "t": table}
        sorting = chdb_client.query("SELECT sorting_key FROM system.tables WHERE database = {d:String} AND "
                                    "name = {t:String}", parameters=where).result_rows[0][0]  # fmt: skip
        names = {r[0] for r in chdb_client.query("SELECT name FROM system.columns WHERE database = {d:String} AND "
                                                 "table = {t:String}", parameters=where).result_rows}  # fmt: skip
        assert set(cols) <= names, (table, cols)
        assert cols == ["tenant", "customer"] or set(cols) <= {c.strip() for c in sorting.split(",")}, (table, cols)
    # each Distributed table is made after the last statement of its local table (so it copies every column
    # and the CHECK constraints the sink's refusal probe relies on)
    for table in TABLES:
        last_local = max(i for i, s in enumerate(cluster_stmts) if f"{DB}.{table}_local " in s.split(" AS ")[0])
        assert cluster_stmts.index(dist[table]) > last_local


def test_views_are_the_single_node_views_over_the_distributed_tables(chdb_client, cluster_stmts) -> None:
    views = [s for s in cluster_stmts if " VIEW " in s.split("\n")[0]]
    single = [s for s in ddl.statements(DB) if " VIEW " in s.split("\n")[0]]
    assert len(views) == len(single) == 13
    assert all("_local" not in v for v in views)  # reads go through the Distributed tables
    with_settings = []
    for one, clustered in zip(single, views, strict=True):
        changed = _changed_lines(chdb_client, one, clustered)
        head = re.split(r"\s+AS\s", one, maxsplit=1)[0]
        assert changed[0] == (head, f"{head} {ON}"), changed
        if len(changed) > 1:
            assert changed[1:] == [("", "SETTINGS distributed_product_mode = 'local'")], changed
            with_settings.append(head.split(".")[-1])
        assert len(changed) <= 2
    assert with_settings == ["invoiced_revenue", "usage_reconciliation"]  # the two views with a JOIN


def test_statement_order(cluster_stmts) -> None:
    kinds = ["db" if s.startswith("CREATE DATABASE") else "dist" if "ENGINE = Distributed(" in s else
             "view" if " VIEW " in s.split("\n")[0] else "local" for s in cluster_stmts]  # fmt: skip
    assert kinds[0] == "db"
    assert kinds == sorted(kinds, key=["db", "local", "dist", "view"].index)


def test_what_it_cannot_carry_over_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ddl.statements(DB)
    monkeypatch.setattr(ddl, "statements", lambda db: [*base, f"CREATE TABLE IF NOT EXISTS {db}.new (a UInt8) "
                                                              "ENGINE = ReplacingMergeTree ORDER BY a"])  # fmt: skip
    with pytest.raises(ValueError, match="table new: no sharding key"):
        cluster_ddl.statements(DB, CLUSTER)
    monkeypatch.setattr(ddl, "statements", lambda db: [*base, f"DROP TABLE {db}.x"])
    with pytest.raises(ValueError, match="no cluster form for: DROP TABLE"):
        cluster_ddl.statements(DB, CLUSTER)
    with pytest.raises(ValueError, match="not a plain identifier"):
        cluster_ddl.statements(DB, "a; DROP")


class _Recorder:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, sql: str, parameters: dict | None = None) -> int:
        self.commands.append(sql)
        return 1  # the upgrade probe: every marker column present


def test_the_configuration_selects_the_cluster_ddl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_CLICKHOUSE_CLUSTER", "analytics")
    assert Settings().clickhouse_cluster == "analytics"
    clustered, single = _Recorder(), _Recorder()
    assert create_schema(clustered, DB, Settings().clickhouse_cluster) == len(ddl.statements(DB)) + len(TABLES)
    assert clustered.commands[0] == f"CREATE DATABASE IF NOT EXISTS {DB} ON CLUSTER analytics"
    monkeypatch.delenv("METERSTREAM_CLICKHOUSE_CLUSTER")
    create_schema(single, DB, Settings().clickhouse_cluster)
    assert single.commands[0] == f"CREATE DATABASE IF NOT EXISTS {DB}" and "ON CLUSTER" not in " ".join(single.commands)
