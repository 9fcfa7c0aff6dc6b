"""aggregation/client.insert_arrow: the sink's Arrow insert on the embedded store, the file written straight to disk
instead of clickhouse-connect's two copies in memory; it must land the same rows, repeat nothing under the same
deduplication token, and be refused exactly as `client.insert_arrow` is."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from meterstream.aggregation.client import insert_arrow, is_embedded
from meterstream.aggregation.refusals import is_data_error
from meterstream.schemas.rated_arrow import pack_arrow, read_arrow


def row(i: int, quantity: str = "1.5", amount: str = "0.75") -> tuple:
    return ("acme", f"e{i}", "c1", "alice", "api_calls", "2026-11-03T10:00:00.000Z", "2026-11", quantity, amount,
            "3", "EUR", "pro", "api_calls", {"region": "eu"}, "sdk", 2, 100 + i)  # fmt: skip


def table(*rows: tuple) -> pa.Table:
    return pa.concat_tables(read_arrow(v) for v in pack_arrow(list(rows)))


SELECT = (
    "SELECT event_id, quantity, amount, toString(time), dimensions['region'], src_partition, src_offset "
    "FROM {db}.rated_usage FINAL ORDER BY event_id"
)


def test_the_embedded_insert_lands_the_rows_once_per_token(chdb_client, db: str) -> None:
    assert is_embedded(chdb_client)
    data = table(row(1), row(2, "2", "1.00"))
    insert_arrow(chdb_client, f"{db}.rated_usage", data, {"insert_deduplication_token": "t1:arrow"})
    insert_arrow(chdb_client, f"{db}.rated_usage", data, {"insert_deduplication_token": "t1:arrow"})  # a repeat
    rows = chdb_client.query(SELECT.format(db=db)).result_rows
    assert [(r[0], r[1], r[2], *map(str, r[3:])) for r in rows] == [
        ("e1", Decimal("1.5"), Decimal("0.75"), "2026-11-03 10:00:00.000", "eu", "2", "101"),
        ("e2", Decimal(2), Decimal(1), "2026-11-03 10:00:00.000", "eu", "2", "102"),
    ]
    assert chdb_client.query(f"SELECT count() FROM {db}.rated_usage").result_rows == [(2,)]  # not 4: one insert


def test_it_lands_what_clickhouse_connect_lands(chdb_client, db: str) -> None:
    data = table(row(1, "0.000000000001", "12345678901234.123456789012"), row(2, "7", "0"))
    insert_arrow(chdb_client, f"{db}.rated_usage", data, {"insert_deduplication_token": "a"})
    ours = chdb_client.query(SELECT.format(db=db)).result_rows
    chdb_client.command(f"TRUNCATE TABLE {db}.rated_usage")
    chdb_client.insert_arrow(f"{db}.rated_usage", data, settings={"insert_deduplication_token": "b"})
    assert ours == chdb_client.query(SELECT.format(db=db)).result_rows
    assert ours[0][1:3] == (Decimal("1E-12"), Decimal("12345678901234.123456789012"))


def test_a_refused_row_is_refused_as_clickhouse_connect_refuses_it(chdb_client, db: str) -> None:
    data = table(row(1, quantity="-1"))  # rated_usage's CHECK: quantities are never negative
    with pytest.raises(Exception) as ours:
        insert_arrow(chdb_client, f"{db}.rated_usage", data, {"insert_deduplication_token": "x"})
    with pytest.raises(Exception) as theirs:
        chdb_client.insert_arrow(f"{db}.rated_usage", data, settings={"insert_deduplication_token": "y"})
    assert is_data_error(ours.value) and is_data_error(theirs.value)
    assert type(ours.value) is type(theirs.value)
    assert "quantity" in str(ours.value) and "Code: 469" in str(ours.value)  # VIOLATED_CONSTRAINT
    assert chdb_client.query(f"SELECT count() FROM {db}.rated_usage").result_rows == [(0,)]


def test_settings_and_paths_are_quoted() -> None:
    from meterstream.aggregation.client import _literal

    assert _literal(0) == "0"
    assert _literal("a'b\\c") == "'a\\'b\\\\c'"
