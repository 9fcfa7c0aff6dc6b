"""Usage reads from rated_usage FINAL (embedded ClickHouse through clickhouse-connect); expected values by hand."""

from __future__ import annotations

import uuid

import orjson
import pytest
from api_helpers import bearer

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS

pytestmark = pytest.mark.kafka


def _rec(tenant, eid, customer, meter, time, quantity, amount, currency="USD", subject="", dims=None):  # type: ignore[no-untyped-def]
    return {
        "tenant": tenant, "id": eid, "customer": customer, "subject": subject, "meter": meter, "time": time,
        "period": time[:7], "quantity": quantity, "amount": amount, "cumulative": quantity, "currency": currency,
        "plan": "p", "line": meter, "dimensions": dims or {}, "source": "", "src_partition": 0, "src_offset": 1,
    }  # fmt: skip


ROWS = [
    _rec("acme", "e1", "c1", "api_calls", "2026-10-12T23:30:00.000Z", "3", "0.5", "USD", "u1", {"region": "eu"}),
    _rec("acme", "e2", "c1", "api_calls", "2026-10-13T08:00:00.000Z", "4.25", "0.7", "USD", "u2", {"region": "us"}),
    _rec("acme", "e3", "c2", "storage", "2026-10-31T23:00:00.000Z", "10", "1.005", currency="EUR"),
    _rec("acme", "e4", "c3", "api_calls", "2026-10-25T12:00:00.000Z", "1", "0.1"),  # Berlin's 25-hour day
    _rec("other", "o1", "c1", "api_calls", "2026-10-13T08:00:00.000Z", "100", "9"),  # same customer name, B's row
]


@pytest.fixture
def reader(make_client, api_settings, chdb_client):  # type: ignore[no-untyped-def]
    db = f"api_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    for rows in (ROWS, ROWS[:1]):  # e1 twice: a replayed row, collapsed by FINAL
        chdb_client.raw_insert(f"{db}.rated_usage", RATED_FIELDS, b"\n".join(orjson.dumps(r) for r in rows),
                               fmt="JSONEachRow")  # fmt: skip
    client = make_client(api_settings.model_copy(update={"clickhouse_database": db}), clickhouse_client=chdb_client)
    return client, bearer(client, tenant="acme", role="read"), bearer(client, tenant="other", role="read")


def _get(client, auth, path="/v1/usage", **params):  # type: ignore[no-untyped-def]
    r = client.get(path, params=params, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_totals_per_customer_and_meter_are_the_tenants_own(reader) -> None:
    client, acme, other = reader
    rows = _get(client, acme)["rows"]
    assert [(r["customer"], r["meter"], r["currency"], r["quantity"], r["amount"], r["events"]) for r in rows] == [
        ("c1", "api_calls", "USD", "7.25", "1.2", 2),  # 3 + 4.25; 0.5 + 0.7; e1 counted once
        ("c2", "storage", "EUR", "10", "1.005", 1),
        ("c3", "api_calls", "USD", "1", "0.1", 1),
    ]
    assert [(r["customer"], r["quantity"]) for r in _get(client, other)["rows"]] == [("c1", "100")]


def test_day_windows_in_a_time_zone(reader) -> None:
    client, acme, _ = reader
    rows = _get(client, acme, window="day", tz="Europe/Berlin", group_by="customer")["rows"]
    got = [(r["window_start"], r["window_end"], r["customer"], r["quantity"]) for r in rows]
    assert got == [
        # e1 at 01:30 and e2 at 10:00 Berlin time (CEST, +02:00) on the 13th
        ("2026-10-13T00:00:00+02:00", "2026-10-14T00:00:00+02:00", "c1", "7.25"),
        # 25 October 2026: clocks go back, the day lasts 25 hours
        ("2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", "c3", "1"),
        # 23:00Z on the 31st is midnight of 1 November in Berlin (CET, +01:00)
        ("2026-11-01T00:00:00+01:00", "2026-11-02T00:00:00+01:00", "c2", "10"),
    ]


def test_month_windows_depend_on_the_zone(reader) -> None:
    client, acme, _ = reader
    utc = _get(client, acme, window="month", customer="c2")["rows"]
    berlin = _get(client, acme, window="month", customer="c2", tz="Europe/Berlin")["rows"]
    assert [(r["window_start"], r["window_end"]) for r in utc] == [
        ("2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    ]
    assert [(r["window_start"], r["window_end"]) for r in berlin] == [
        ("2026-11-01T00:00:00+01:00", "2026-12-01T00:00:00+01:00")
    ]


def test_group_by_subject_and_dimension_and_filters(reader) -> None:
    client, acme, _ = reader
    rows = _get(client, acme, group_by=["subject", "dimensions.region"], meter="api_calls", customer="c1")["rows"]
    assert [(r["subject"], r["dimensions"], r["quantity"]) for r in rows] == [
        ("u1", {"region": "eu"}, "3"), ("u2", {"region": "us"}, "4.25"),
    ]  # fmt: skip
    rows = _get(client, acme, **{"from": "2026-10-13T00:00:00Z", "to": "2026-10-31T23:00:00Z"})["rows"]
    assert [(r["customer"], r["quantity"]) for r in rows] == [("c1", "4.25"), ("c3", "1")]  # `to` is exclusive


def test_running_amount_of_a_customer(reader) -> None:
    client, acme, other = reader
    body = _get(client, acme, "/v1/customers/c2/running-amount", period="2026-10")
    assert body["meters"] == [{"meter": "storage", "currency": "EUR", "quantity": "10", "amount": "1.005", "events": 1}]
    assert body["totals"] == [{"currency": "EUR", "amount": "1.005", "amount_rounded": "1.01"}]  # half away from 0
    c1 = _get(client, acme, "/v1/customers/c1/running-amount", period="2026-10")
    assert c1["totals"] == [{"currency": "USD", "amount": "1.2", "amount_rounded": "1.20"}]
    assert _get(client, other, "/v1/customers/c2/running-amount", period="2026-10")["meters"] == []
    assert _get(client, acme, "/v1/customers/c1/running-amount", period="2026-09")["totals"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"group_by": "price"}, "group_by"),
        ({"window": "week"}, "window"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-10-02T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, "to"),
    ],
)
def test_bad_parameters_are_400_naming_them(reader, params, field) -> None:
    client, acme, _ = reader
    r = client.get("/v1/usage", params=params, headers=acme)
    assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text


def test_a_bad_period_is_400(reader) -> None:
    client, acme, _ = reader
    r = client.get("/v1/customers/c1/running-amount", params={"period": "2026-13"}, headers=acme)
    assert r.status_code == 400 and r.json()["error"]["field"] == "period"


def test_reads_without_clickhouse_are_503(client) -> None:
    r = client.get("/v1/usage", headers=bearer(client, role="read"))
    assert r.status_code == 503 and "Retry-After" in r.headers
