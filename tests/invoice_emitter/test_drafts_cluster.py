"""Drafts on a ClickHouse cluster (METERSTREAM_CLICKHOUSE_CLUSTER): `rated_usage` is a Distributed table there, its
parts are `rated_usage_local`'s on every replica; the refresh lists them with clusterAllReplicas and is always full
(invoice_emitter/drafts.py docstring). The queries are checked as built and parsed by ClickHouse's own parser
(chdb formatQuery); the refresh with fakes for the store and the close."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from meterstream.invoice_emitter import drafts
from meterstream.invoice_emitter.drafts import DraftState, parts_source, refresh_drafts, usage_marks


class Answer:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.result_rows = rows


class FakeClient:
    """Records each query; `system.parts` answers two partitions (a shard's block numbers may be lower)."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Answer:
        self.queries.append((sql, dict(parameters or {})))
        if "max(max_block_number)" in sql:
            return Answer([("202611", 7), ("202612", 12)])
        raise AssertionError(f"unexpected query: {sql}")


def test_the_parts_are_listed_where_the_rows_are() -> None:
    assert parts_source(None) == ("system.parts", "rated_usage")
    assert parts_source("meterstream_cluster") == (
        "clusterAllReplicas('meterstream_cluster', system.parts)",
        "rated_usage_local",
    )
    with pytest.raises(ValueError, match="clickhouse_cluster"):
        parts_source("x'); DROP TABLE t; --")

    single, cluster = FakeClient(), FakeClient()
    assert usage_marks(single, "ms") == usage_marks(cluster, "ms", "meterstream_cluster") == {"202611": 7, "202612": 12}
    ((sql, params),) = single.queries
    assert "FROM system.parts WHERE" in sql and params == {"db": "ms", "table": "rated_usage"}
    ((sql, params),) = cluster.queries
    assert "FROM clusterAllReplicas('meterstream_cluster', system.parts) WHERE" in sql
    assert params == {"db": "ms", "table": "rated_usage_local"}


def test_the_cluster_query_parses(chdb_client) -> None:  # type: ignore[no-untyped-def]
    client = FakeClient()
    usage_marks(client, "ms", "meterstream_cluster")
    ((sql, _),) = client.queries
    formatted = chdb_client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]
    assert "clusterAllReplicas('meterstream_cluster', system.parts)" in formatted
    assert "GROUP BY partition_id" in formatted


def test_a_refresh_on_a_cluster_is_full_even_when_nothing_else_changed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drafted: list[tuple[str, Any]] = []
    monkeypatch.setattr(drafts, "closed_periods", lambda client, db: ["2026-10"])
    monkeypatch.setattr(drafts, "entity_position", lambda store: 5)

    def draft_period(client, db, catalog, label, store, issuing, customers):  # type: ignore[no-untyped-def]
        drafted.append((label, customers))
        return SimpleNamespace(invoices=[{"customer": "c1"}], failed=[])

    monkeypatch.setattr(drafts, "draft_period", draft_period)
    monkeypatch.setattr(drafts, "changed_customers", lambda *a: pytest.fail("no per-part refresh on a cluster"))
    now = datetime(2026, 12, 5, tzinfo=UTC)
    # the state the previous refresh left: same closes, labels, entity position and marks
    state = DraftState(["2026-10"], ["2026-11", "2026-12"], 5, {"202611": 7, "202612": 12})
    done, new = refresh_drafts(FakeClient(), "ms", None, None, now, state,  # type: ignore[arg-type]
                               cluster="meterstream_cluster")  # fmt: skip
    assert (done.full, done.customers, done.labels, done.drafts) == (True, None, ["2026-11", "2026-12"], 2)
    assert drafted == [("2026-11", None), ("2026-12", None)]
    assert new.marks == {"202611": 7, "202612": 12}
