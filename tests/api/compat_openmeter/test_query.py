"""OpenMeter meter queries on embedded ClickHouse (chdb): SQL from api/compat/openmeter/query.py over
`rated_usage FINAL`, expected values worked out by hand from the rows below."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.api.compat.openmeter.query import MeterQuery, plan, rows, to_csv
from meterstream.api.queries import QueryError, UsageQueries
from meterstream.schemas.settings import Settings


def row(tenant, eid, meter, q, time, subject, customer, dims=None):
    return {
        "tenant": tenant, "id": eid, "customer": customer, "subject": subject, "meter": meter, "time": time,
        "period": time[:7], "quantity": q, "amount": "0", "cumulative": "0", "currency": "USD", "plan": "p",
        "line": meter, "dimensions": dims or {}, "source": "s", "src_partition": 0, "src_offset": 0,
    }  # fmt: skip


ROWS = [
    row("t1", "r1", "tokens", "10", "2026-11-02T10:05:00.000Z", "u1", "acme", {"model": "a"}),
    row("t1", "r2", "tokens", "5", "2026-11-02T10:50:00.000Z", "u2", "acme", {"model": "b"}),
    row("t1", "r3", "tokens", "2.5", "2026-11-02T23:30:00.000Z", "u1", "acme", {"model": "a"}),
    row("t1", "r4", "tokens", "7", "2026-11-03T01:00:00.000Z", "u3", "u3", {"model": "a"}),
    row("t2", "r1", "tokens", "1000", "2026-11-02T10:05:00.000Z", "u1", "acme", {"model": "a"}),  # other tenant
    row("t1", "r9", "calls", "99", "2026-11-02T10:05:00.000Z", "u1", "acme"),  # other meter
    row("t1", "k1", "users", "1", "2026-11-02T10:00:00.000Z", "u1", "acme", {"$unique": "x"}),
    row("t1", "k2", "users", "1", "2026-11-02T11:00:00.000Z", "u2", "acme", {"$unique": "y"}),
    row("t1", "k3", "users", "1", "2026-11-02T12:00:00.000Z", "u1", "acme", {"$unique": "x"}),
]


@pytest.fixture(scope="module")
def run(chdb_client):
    db = f"om_query_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    fields = list(ROWS[0])
    for block in (ROWS, ROWS[:1]):  # r1 again in its own insert: FINAL must collapse it (same tenant + event_id)
        body = b"\n".join(orjson.dumps(r) for r in block)
        chdb_client.raw_insert(f"{db}.rated_usage", fields, body, fmt="JSONEachRow")
    queries = UsageQueries(Settings(clickhouse_database=db), chdb_client)

    def _run(**kw):
        kw.setdefault("tenant", "t1")
        kw.setdefault("meter", "tokens")
        kw.setdefault("aggregation", "SUM")
        kw.setdefault("meter_group_by", ("model",))
        q = MeterQuery(**kw)
        sql, params, names = plan(q, db)
        return rows(q, names, queries.query(sql, params)), names

    return _run


def values(data):
    return [(r["windowStart"], r["windowEnd"], r["subject"], r["customerId"], r["groupBy"], r["value"]) for r in data]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("SUM", Decimal("24.5")),  # 10 + 5 + 2.5 + 7 (r1 counted once though inserted twice)
        ("COUNT", Decimal(4)),
        ("AVG", Decimal("6.125")),  # 24.5 / 4
        ("MIN", Decimal("2.5")),
        ("MAX", Decimal(10)),
        ("LATEST", Decimal(7)),  # r4 is the latest event (2026-11-03T01:00Z)
    ],
)
def test_aggregations_over_per_event_rows(run, aggregation, expected):
    data, _ = run(aggregation=aggregation)
    assert len(data) == 1
    assert data[0]["value"] == expected
    # no window, no from/to: the window is the first and last event time
    assert (data[0]["windowStart"], data[0]["windowEnd"]) == ("2026-11-02T10:05:00Z", "2026-11-03T01:00:00Z")


def test_unique_count(run):
    data, _ = run(meter="users", aggregation="UNIQUE_COUNT", meter_group_by=())
    assert [r["value"] for r in data] == [Decimal(2)]  # x, y, x


def test_day_windows_in_utc_and_in_berlin(run):
    data, _ = run(window_size="DAY")
    assert values(data) == [
        ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z", None, None, {}, Decimal("17.5")),
        ("2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z", None, None, {}, Decimal(7)),
    ]
    # Berlin is UTC+1 in November: r3 (23:30Z) is 00:30 on the 3rd there
    data, _ = run(window_size="DAY", tz="Europe/Berlin")
    assert values(data) == [
        ("2026-11-01T23:00:00Z", "2026-11-02T23:00:00Z", None, None, {}, Decimal(15)),
        ("2026-11-02T23:00:00Z", "2026-11-03T23:00:00Z", None, None, {}, Decimal("9.5")),
    ]


def test_hour_minute_and_month_windows(run):
    data, _ = run(window_size="HOUR")
    assert [(r["windowStart"], r["value"]) for r in data] == [
        ("2026-11-02T10:00:00Z", Decimal(15)),
        ("2026-11-02T23:00:00Z", Decimal("2.5")),
        ("2026-11-03T01:00:00Z", Decimal(7)),
    ]
    data, _ = run(window_size="MINUTE")
    assert (data[0]["windowStart"], data[0]["windowEnd"]) == ("2026-11-02T10:05:00Z", "2026-11-02T10:06:00Z")
    assert len(data) == 4
    data, _ = run(window_size="MONTH", tz="Europe/Berlin")
    assert values(data) == [("2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z", None, None, {}, Decimal("24.5"))]


def test_group_by_and_filters(run):
    data, _ = run(group_by=("model",))
    assert [(r["groupBy"], r["value"]) for r in data] == [({"model": "a"}, Decimal("19.5")), ({"model": "b"}, 5)]
    data, _ = run(subjects=("u1",))  # a subject filter groups by subject
    assert [(r["subject"], r["value"]) for r in data] == [("u1", Decimal("12.5"))]
    data, _ = run(filter_group_by={"model": "b"})
    assert [r["value"] for r in data] == [Decimal(5)]
    data, _ = run(customers=("acme",))
    assert [(r["customerId"], r["value"]) for r in data] == [("acme", Decimal("17.5"))]
    data, _ = run(group_by=("customer_id", "subject"))
    assert [(r["customerId"], r["subject"], r["value"]) for r in data] == [
        ("acme", "u1", Decimal("12.5")),
        ("acme", "u2", Decimal(5)),
        ("u3", "u3", Decimal(7)),
    ]


def test_from_to_is_half_open_and_becomes_the_window(run):
    start, end = datetime(2026, 11, 2, 10, 50, tzinfo=UTC), datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
    data, _ = run(start=start, end=end)  # r2 (at from, included) + r3; r4 at `to` is excluded
    assert values(data) == [("2026-11-02T10:50:00Z", "2026-11-03T01:00:00Z", None, None, {}, Decimal("7.5"))]


def test_no_rows_no_data(run):
    data, _ = run(tenant="nobody")
    assert data == []


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"window_size": "WEEK"}, "windowSize"),
        ({"tz": "Mars/Olympus"}, "windowTimeZone"),
        ({"group_by": ("region",)}, "groupBy"),
        ({"filter_group_by": {"region": "x"}}, "filterGroupBy.region"),
        ({"start": datetime(2026, 11, 3, tzinfo=UTC), "end": datetime(2026, 11, 2, tzinfo=UTC)}, "to"),
    ],
)
def test_bad_queries_name_the_parameter(kw, field):
    with pytest.raises(QueryError) as exc:
        plan(MeterQuery(tenant="t", meter="m", aggregation="SUM", meter_group_by=("model",), **kw), "db")
    assert exc.value.field == field


def test_user_values_are_parameters_not_sql():
    q = MeterQuery(
        tenant="t'; DROP TABLE x; --", meter="m", aggregation="SUM", meter_group_by=("model",),
        subjects=("a'b",), filter_group_by={"model": "'"}, group_by=("model",),
    )  # fmt: skip
    sql, params, _ = plan(q, "db")
    assert "DROP" not in sql and "a'b" not in sql and "model" not in sql
    assert params["tenant"] == "t'; DROP TABLE x; --"


def test_csv_has_exact_values():
    data = [{"windowStart": "a", "windowEnd": "b", "subject": "u,1", "customerId": None, "groupBy": {"model": "x"},
             "value": Decimal("0.100000000000")}]  # fmt: skip
    assert to_csv(["subject", "model"], data) == (
        'window_start,window_end,subject,customer_id,model,value\r\na,b,"u,1",,x,0.1\r\n'
    )
