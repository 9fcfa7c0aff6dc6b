"""The analysts' views (aggregation/views.py, docs/analytics.md) on known data, every figure summed by hand.

Tenant t1 (USD): customer c1 (api_calls, subjects u1/u2, dimension region), c2 (storage_gb_hours, August and
October, not September), c3 (calls: 10 a day for seven days, then 70). Event e6 is late usage: its time is in
September, it reached ClickHouse after September's invoice, and October's invoice carries it as an adjustment.
Tenant t2's row must never count in t1's figures. Event e1 is inserted twice (a replay): views read FINAL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.views import view_names

D = Decimal
COLUMNS = ["tenant", "event_id", "customer", "subject", "meter", "time", "period", "quantity", "amount", "cumulative",
           "currency", "plan", "line", "dimensions"]  # fmt: skip


def _row(tenant, event_id, customer, subject, meter, when, quantity, amount, dims=None, plan="basic", cur="USD"):  # type: ignore[no-untyped-def]
    return [tenant, event_id, customer, subject, meter, when, when.strftime("%Y-%m"), D(quantity), D(amount),
            D(quantity), cur, plan, meter, dims or {}]  # fmt: skip


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


ROWS = [
    _row("t1", "e1", "c1", "u1", "api_calls", _at(2026, 9, 10, 8, 15), "100", "1.00", {"region": "eu"}),
    _row("t1", "e2", "c1", "u2", "api_calls", _at(2026, 9, 10, 8, 45), "50", "0.50", {"region": "us"}),
    _row("t1", "e3", "c1", "u1", "api_calls", _at(2026, 10, 3, 9), "300", "3.00", {"region": "eu"}),
    _row("t1", "e4", "c2", "", "storage_gb_hours", _at(2026, 10, 3, 10), "1000", "0.137"),
    _row("t1", "e5", "c2", "", "storage_gb_hours", _at(2026, 10, 20), "10", "0.00137"),
    _row("t1", "e6", "c1", "u1", "api_calls", _at(2026, 9, 30, 23, 30), "40", "0.40", {"region": "eu"}),
    _row("t1", "e7", "c2", "", "storage_gb_hours", _at(2026, 8, 15), "5", "0.000685"),
    *[_row("t1", f"k{d}", "c3", "", "calls", _at(2026, 10, d, 12), "10", "0.10") for d in range(1, 8)],
    _row("t1", "k8", "c3", "", "calls", _at(2026, 10, 8, 12), "70", "0.70"),
    _row("t2", "f1", "d1", "", "api_calls", _at(2026, 10, 3), "999", "99", {"region": "eu"}, plan="pro", cur="EUR"),
]
INVOICES = [  # tenant, customer, period, invoice_id, plan, currency, subtotal, total, line_count, document, closed_at
    ["t1", "c1", "2026-09", "inv-9", "basic", "USD", D("1.50"), D("1.50"), 1, "{}", _at(2026, 10, 1, 1)],
    ["t1", "c1", "2026-10", "inv-10", "basic", "USD", D("3.40"), D("3.40"), 2, "{}", _at(2026, 11, 1, 1)],
]
LINE_COLUMNS = ["tenant", "customer", "period", "line_no", "meter", "description", "quantity", "amount", "currency",
                "closed_at", "line_key", "applies_to", "kind"]  # fmt: skip
LINES = [
    ["t1", "c1", "2026-09", 1, "api_calls", "API calls", D(150), D("1.50"), "USD", _at(2026, 10, 1, 1), "api_calls",
     "2026-09", "usage"],
    ["t1", "c1", "2026-10", 1, "api_calls", "API calls", D(300), D("3.00"), "USD", _at(2026, 11, 1, 1), "api_calls",
     "2026-10", "usage"],
    ["t1", "c1", "2026-10", 2, "api_calls", "late usage for 2026-09", D(40), D("0.40"), "USD", _at(2026, 11, 1, 1),
     "api_calls", "2026-09", "adjustment"],
]  # fmt: skip


@pytest.fixture(scope="module")
def db(chdb_client) -> str:  # type: ignore[no-untyped-def]
    name = f"views_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    chdb_client.insert(f"{name}.rated_usage", ROWS, column_names=COLUMNS)
    chdb_client.insert(f"{name}.rated_usage", ROWS[:1], column_names=COLUMNS)  # e1 replayed: FINAL keeps one
    chdb_client.insert(f"{name}.invoices", INVOICES)
    chdb_client.insert(f"{name}.invoice_lines", LINES, column_names=LINE_COLUMNS)
    return name


def _rows(client, sql: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(r) for r in client.query(sql).result_rows]


def test_every_view_exists_and_has_a_tenant_column(chdb_client, db: str) -> None:
    for view in view_names():
        columns = [r[0] for r in chdb_client.query(f"DESCRIBE TABLE {db}.{view}").result_rows]
        assert columns[0] == "tenant", view


def test_usage_by_month_per_customer_subject_meter(chdb_client, db: str) -> None:
    rows = _rows(
        chdb_client,
        f"SELECT customer, subject, meter, month, events, quantity, amount "
        f"FROM {db}.usage_monthly WHERE tenant = 't1' ORDER BY customer, meter, month, subject",
    )
    assert rows == [
        ("c1", "u1", "api_calls", date(2026, 9, 1), 2, D(140), D("1.40")),  # e1 100 + e6 40; 1.00 + 0.40
        ("c1", "u2", "api_calls", date(2026, 9, 1), 1, D(50), D("0.50")),
        ("c1", "u1", "api_calls", date(2026, 10, 1), 1, D(300), D("3.00")),
        ("c2", "", "storage_gb_hours", date(2026, 8, 1), 1, D(5), D("0.000685")),
        ("c2", "", "storage_gb_hours", date(2026, 10, 1), 2, D(1010), D("0.13837")),  # 0.137 + 0.00137
        ("c3", "", "calls", date(2026, 10, 1), 8, D(140), D("1.40")),  # 7 x 10 + 70
    ]


def test_usage_per_dimension_by_hour_rolls_up_to_months(chdb_client, db: str) -> None:
    hourly = _rows(chdb_client, f"SELECT hour, value, quantity FROM {db}.usage_dimensions_hourly WHERE tenant = 't1' "
                                "AND dimension = 'region' AND hour < '2026-09-11' ORDER BY hour, value")  # fmt: skip
    assert hourly == [(datetime(2026, 9, 10, 8), "eu", D(100)), (datetime(2026, 9, 10, 8), "us", D(50))]
    monthly = _rows(chdb_client, f"SELECT toStartOfMonth(hour) AS m, value, sum(quantity), sum(events) "
                                 f"FROM {db}.usage_dimensions_hourly WHERE tenant = 't1' AND dimension = 'region' "
                                 "GROUP BY m, value ORDER BY m, value")  # fmt: skip
    assert monthly == [(date(2026, 9, 1), "eu", D(140), 2), (date(2026, 9, 1), "us", D(50), 1),
                       (date(2026, 10, 1), "eu", D(300), 1)]  # fmt: skip


def test_rated_revenue_by_plan_meter_customer(chdb_client, db: str) -> None:
    rows = _rows(
        chdb_client,
        f"SELECT period, plan, meter, customer, events, quantity, amount "
        f"FROM {db}.rated_revenue_monthly WHERE tenant = 't1' AND period = '2026-09'",
    )
    assert rows == [("2026-09", "basic", "api_calls", "c1", 3, D(190), D("1.90"))]  # e1 + e2 + e6
    by_plan = _rows(chdb_client, f"SELECT plan, sum(amount) FROM {db}.rated_revenue_monthly GROUP BY 1 ORDER BY 1")
    # t1 basic: 1.90 (Sept api) + 3.00 + 0.13837 + 0.000685 + 1.40 = 6.439055; t2 pro: 99
    assert by_plan == [("basic", D("6.439055")), ("pro", D(99))]


def test_invoiced_revenue_carries_the_plan_and_the_late_usage(chdb_client, db: str) -> None:
    rows = _rows(chdb_client, f"SELECT period, plan, kind, applies_to, quantity, amount FROM {db}.invoiced_revenue "
                              "WHERE tenant = 't1' ORDER BY period, kind DESC")  # fmt: skip
    assert rows == [
        ("2026-09", "basic", "usage", "2026-09", D(150), D("1.50")),
        ("2026-10", "basic", "usage", "2026-10", D(300), D("3.00")),
        ("2026-10", "basic", "adjustment", "2026-09", D(40), D("0.40")),
    ]


def test_month_over_month_compares_with_the_previous_calendar_month(chdb_client, db: str) -> None:
    rows = _rows(chdb_client, f"SELECT customer, meter, month, quantity, previous_quantity, quantity_change, "
                              f"amount_change FROM {db}.usage_month_over_month WHERE tenant = 't1' "
                              "ORDER BY customer, meter, month")  # fmt: skip
    assert rows == [
        ("c1", "api_calls", date(2026, 9, 1), D(190), D(0), D(190), D("1.90")),  # no August
        ("c1", "api_calls", date(2026, 10, 1), D(300), D(190), D(110), D("1.10")),  # 3.00 - 1.90
        ("c2", "storage_gb_hours", date(2026, 8, 1), D(5), D(0), D(5), D("0.000685")),
        # October's previous month is September, which had none: not August's 5
        ("c2", "storage_gb_hours", date(2026, 10, 1), D(1010), D(0), D(1010), D("0.13837")),
        ("c3", "calls", date(2026, 10, 1), D(140), D(0), D(140), D("1.40")),
    ]


def test_top_customers_per_month(chdb_client, db: str) -> None:
    rows = _rows(chdb_client, f"SELECT month, customer, amount, rank FROM {db}.customer_ranking_monthly "
                              "WHERE tenant = 't1' AND rank <= 2 ORDER BY month, rank")  # fmt: skip
    assert rows == [
        (date(2026, 8, 1), "c2", D("0.000685"), 1),
        (date(2026, 9, 1), "c1", D("1.90"), 1),
        (date(2026, 10, 1), "c1", D("3.00"), 1),
        (date(2026, 10, 1), "c3", D("1.40"), 2),  # c2's 0.13837 is third
    ]


def test_usage_spikes_against_the_trailing_seven_day_average(chdb_client, db: str) -> None:
    rows = {r[0]: r[1:] for r in _rows(
        chdb_client, f"SELECT day, quantity, trailing_avg_7d, ratio_to_trailing_avg FROM {db}.usage_spikes_daily "
                     "WHERE tenant = 't1' AND customer = 'c3'")}  # fmt: skip
    assert rows[date(2026, 10, 1)] == (D(10), D(0), None)  # nothing before
    assert rows[date(2026, 10, 2)] == (D(10), D("1.428571428571"), D(7))  # 10 / 7 truncated; 10 x 7 / 10 exact
    assert rows[date(2026, 10, 8)] == (D(70), D(10), D(7))  # 7 days x 10 / 7 = 10; 70 / 10 = 7: the spike
    spikes = _rows(
        chdb_client,
        f"SELECT customer, day, ratio_to_trailing_avg FROM {db}.usage_spikes_daily "
        "WHERE tenant = 't1' AND ratio_to_trailing_avg >= 5 ORDER BY day, customer",
    )
    # c3 on 10-03: 10 x 7 / 20 = 3.5, not one; c1 on 10-03: 300 x 7 / 40 (e6 on 09-30) = 52.5
    assert spikes == [("c3", date(2026, 10, 2), D(7)), ("c1", date(2026, 10, 3), D("52.5")),
                      ("c3", date(2026, 10, 8), D(7))]  # fmt: skip


def test_reconciliation_shows_event_time_billing_period_and_late_usage(chdb_client, db: str) -> None:
    rows = _rows(chdb_client, f"SELECT customer, meter, period, first_event, last_event, quantity, invoiced_quantity, "
                              f"adjusted_quantity, adjusted_amount, unbilled_quantity FROM {db}.usage_reconciliation "
                              "WHERE tenant = 't1' AND customer IN ('c1', 'c2') ORDER BY customer, period")  # fmt: skip
    assert rows == [
        # September: 190 used = 150 on September's invoice + 40 adjusted on October's (e6, late)
        ("c1", "api_calls", "2026-09", datetime(2026, 9, 10, 8, 15), datetime(2026, 9, 30, 23, 30), D(190), D(150),
         D(40), D("0.40"), D(0)),
        ("c1", "api_calls", "2026-10", datetime(2026, 10, 3, 9), datetime(2026, 10, 3, 9), D(300), D(300), D(0), D(0),
         D(0)),
        ("c2", "storage_gb_hours", "2026-08", datetime(2026, 8, 15), datetime(2026, 8, 15), D(5), D(0), D(0), D(0),
         D(5)),  # never invoiced here
        ("c2", "storage_gb_hours", "2026-10", datetime(2026, 10, 3, 10), datetime(2026, 10, 20), D(1010), D(0), D(0),
         D(0), D(1010)),
    ]  # fmt: skip


def test_cost_per_user_is_the_invoice_s_shares_and_adds_up_to_each_line(chdb_client, db: str) -> None:
    from meterstream.billing.allocation import split

    # as the close allocates: 10.00 among three equal users, 1.00 among users of weights 2 and 1
    even = split(D("10.00"), {"u1": 1, "u2": 1, "u3": 1}, "USD")
    uneven = split(D("1.00"), {"u1": 2, "u2": 1}, "USD")
    lines = [{"line_no": 1, "kind": "usage", "code": "api_calls", "quantity": "30", "amount": "10.00",
              "subjects": [{"subject": s, "quantity": "10", "amount": str(a)} for s, a in sorted(even.items())]},
             {"line_no": 2, "kind": "adjustment", "code": "api_calls", "quantity": "3", "amount": "1.00",
              "applies_to": "2026-09", "subjects": [{"subject": s, "quantity": q, "amount": str(uneven[s])}
                                                    for s, q in (("u1", "2"), ("u2", "1"))]}]  # fmt: skip
    import orjson

    chdb_client.insert(f"{db}.invoices", [["t3", "c9", "2026-10", "inv-c9", "basic", "USD", D("11.00"), D("11.00"), 2,
                                           orjson.dumps({"version": 2, "lines": lines}).decode(),
                                           _at(2026, 11, 1, 1)]])  # fmt: skip
    rows = _rows(
        chdb_client,
        f"SELECT line_no, kind, applies_to, subject, quantity, amount, line_amount "
        f"FROM {db}.cost_per_user WHERE tenant = 't3' ORDER BY line_no, subject",
    )
    # 1000 cents / 3 = 333 each and 1 left, to the first in subject order; 100 x 2/3 = 66.67 -> 67, 33.33 -> 33
    assert rows == [
        (1, "usage", "", "u1", D(10), D("3.34"), D("10.00")),
        (1, "usage", "", "u2", D(10), D("3.33"), D("10.00")),
        (1, "usage", "", "u3", D(10), D("3.33"), D("10.00")),
        (2, "adjustment", "2026-09", "u1", D(2), D("0.67"), D("1.00")),
        (2, "adjustment", "2026-09", "u2", D(1), D("0.33"), D("1.00")),
    ]
    sums = _rows(chdb_client, f"SELECT line_no, sum(amount) = any(line_amount) FROM {db}.cost_per_user "
                              "WHERE tenant = 't3' GROUP BY line_no ORDER BY line_no")  # fmt: skip
    assert sums == [(1, True), (2, True)]
