"""`revenue_monthly` (aggregation/revenue_table.py): created with the schema, again and in an existing store, and
filled by `meterstream revenue --store` with the figures worked by hand in test_revenue_metrics.py (entity store:
c1 on basic 30/month from 2026-09-01, c2 on pro 110/month from 2026-09-01 to 2026-10-20)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from test_revenue_metrics import entity_store

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.revenue_table import TABLE

D = Decimal
FIGURES = ("SELECT month, currency, start_mrr, end_mrr, new_mrr, expansion_mrr, contraction_mrr, churned_mrr, arr, "
           "customers_start, customers_end, customers_churned, customer_churn_rate, net_revenue_retention, "
           "churned_customers FROM {db}.revenue_monthly FINAL WHERE tenant = 't' ORDER BY month, currency")  # fmt: skip


def _figures(client, db: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(r) for r in client.query(FIGURES.replace("{db}", db)).result_rows]


def test_the_table_is_created_again_and_in_an_existing_store_without_touching_its_rows(chdb_client, db: str) -> None:
    chdb_client.command(f"INSERT INTO {db}.{TABLE} (tenant, month, currency, start_mrr) VALUES ('t', '2026-10-01', "
                        "'USD', 5)")  # fmt: skip
    create_schema(chdb_client, db)  # again: the row stays
    assert chdb_client.command(f"SELECT count() FROM {db}.{TABLE}") == 1
    chdb_client.command(f"DROP TABLE {db}.{TABLE}")  # a store made before the table existed
    create_schema(chdb_client, db)
    columns = [r[0] for r in chdb_client.query(f"DESCRIBE TABLE {db}.{TABLE}").result_rows]
    assert columns[:3] == ["tenant", "month", "currency"] and columns[-1] == "computed_at"
    engine, key = chdb_client.query(
        "SELECT engine_full, sorting_key FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": db, "t": TABLE},
    ).result_rows[0]
    assert engine.startswith("ReplacingMergeTree(computed_at)") and key == "tenant, month, currency"


def test_revenue_store_writes_the_month_and_a_second_store_replaces_it(  # type: ignore[no-untyped-def]
    chdb_client, db: str, tmp_path, monkeypatch, capsys
) -> None:
    from meterstream.deploy import billing_run
    from meterstream.deploy.cli import main

    monkeypatch.setenv("METERSTREAM_DATABASE_URL", entity_store(tmp_path))
    monkeypatch.setenv("METERSTREAM_CLICKHOUSE_DATABASE", db)
    monkeypatch.setattr(billing_run, "store_client", lambda settings: chdb_client)
    # a EUR row stored earlier (a subscription since deleted): the next store writes it as zeros
    chdb_client.command(
        f"INSERT INTO {db}.{TABLE} (tenant, month, currency, start_mrr, end_mrr, arr, customers_end, computed_at) "
        "VALUES ('t', '2026-10-01', 'EUR', 9, 9, 108, 1, '2026-10-02 00:00:00')"
    )
    assert main(["revenue", "--tenant", "t", "--month", "2026-10", "--store"]) == 0
    assert "2 rows written" in capsys.readouterr().err
    oct1 = date(2026, 10, 1)
    # start c1 30 + c2 110 = 140; end c1 30; c2 churned 110; ARR 30 x 12 = 360; churn 1/2; NRR 30/140 = 0.2143
    usd = (oct1, "USD", D(140), D(30), D(0), D(0), D(0), D(110), D(360), 2, 1, 1, D("0.5"), D("0.2143"), ["c2"])
    eur = (oct1, "EUR", *[D(0)] * 7, 0, 0, 0, None, None, [])
    assert _figures(chdb_client, db) == [eur, usd]
    assert main(["revenue", "--tenant", "t", "--month", "2026-10", "--store"]) == 0  # again: replaced, not added
    assert _figures(chdb_client, db) == [eur, usd]
    assert chdb_client.command(f"SELECT count() FROM {db}.{TABLE} FINAL") == 2
    # November: c1 30 at both ends: nothing moves; churn 0/1, NRR 30/30
    assert main(["revenue", "--tenant", "t", "--month", "2026-11", "--store"]) == 0
    nov = _figures(chdb_client, db)[2]
    assert nov == (date(2026, 11, 1), "USD", D(30), D(30), D(0), D(0), D(0), D(0), D(360), 1, 1, 0, D(0), D(1), [])


def test_table_rows_leave_out_a_tenant_without_subscriptions() -> None:
    from meterstream.aggregation.revenue_table import table_rows

    at = datetime(2026, 11, 2, tzinfo=UTC)
    assert table_rows([{"currency": None}], at) == []
