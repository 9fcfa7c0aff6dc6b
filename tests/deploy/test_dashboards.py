"""The Grafana dashboards of deploy/grafana (issue #17): every panel's query runs and means what it says.

- ClickHouse panels: Grafana's ClickHouse data source (grafana-clickhouse-datasource) expands its macros in the
  plugin (pkg/macros/macros.go) before it sends the SQL; `expand_macros` does the same for a fixed time range
  and interval (see its docstring), and the SQL runs against the embedded store through the ClickHouse HTTP
  front (aggregation/http_front.py) as a tenant reader, on known data; the figures are summed by hand below.
- Prometheus panels: every metric name in a panel's PromQL is one the code exports: the metric modules of the
  processor, the sink and the API are imported and their collectors listed (PromQL functions, label names and
  Prometheus's own `up` are not metric names of ours).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
import yaml
from front_process import key_store, running_front

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.http_front import INTERNAL_USER

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "meterstream.yml"
PASSWORD = "writer-secret-for-dashboard-tests"
UTC = dt.UTC
D = Decimal

# The dashboard's time range and interval for the test: 2026-09-15 00:00:00 UTC .. 2026-11-30 23:59:59 UTC, 1 h
FROM = dt.datetime(2026, 9, 15, tzinfo=UTC)
TO = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
INTERVAL_S = 3600


def expand_macros(sql: str, start: dt.datetime = FROM, end: dt.datetime = TO, interval_s: int = INTERVAL_S) -> str:
    """The ClickHouse data source's macros, expanded as the plugin does (grafana/clickhouse-datasource,
    pkg/macros/macros.go; times are the range's UTC instants):

    $__timeFilter(c)      c >= toDateTime(<from, unix s>) AND c <= toDateTime(<to, unix s>)
    $__timeFilter_ms(c)   c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)
    $__dateFilter(c)      c >= toDate('<from YYYY-MM-DD>') AND c <= toDate('<to YYYY-MM-DD>')
    $__dateTimeFilter(d, t) / $__dt(d, t)   (d >= toDate(..) AND d <= toDate(..)) AND (t >= toDateTime(..) AND ..)
    $__fromTime, $__toTime                  toDateTime(<unix s>)   (_ms: fromUnixTimestamp64Milli(<ms>))
    $__timeInterval(c)    toStartOfInterval(toDateTime(c), INTERVAL <max(interval s, 1)> second)
    $__timeInterval_ms(c) toStartOfInterval(toDateTime64(c, 3), INTERVAL <max(interval ms, 1)> millisecond)
    $__interval_s         <max(interval s, 1)>
    """
    s, e = int(start.timestamp()), int(end.timestamp())
    sm, em = s * 1000, e * 1000
    ds, de = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
    secs = max(interval_s, 1)

    def with_args(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "timeFilter":
            return f"{args[0]} >= toDateTime({s}) AND {args[0]} <= toDateTime({e})"
        if name == "timeFilter_ms":
            return f"{args[0]} >= fromUnixTimestamp64Milli({sm}) AND {args[0]} <= fromUnixTimestamp64Milli({em})"
        if name == "dateFilter":
            return f"{args[0]} >= toDate('{ds}') AND {args[0]} <= toDate('{de}')"
        if name in ("dateTimeFilter", "dt"):
            d, t = args
            return (f"({d} >= toDate('{ds}') AND {d} <= toDate('{de}')) AND "
                    f"({t} >= toDateTime({s}) AND {t} <= toDateTime({e}))")  # fmt: skip
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {secs} second)"
        if name == "timeInterval_ms":
            return f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {secs * 1000} millisecond)"
        raise AssertionError(f"macro $__{name}(...) is not one of the plugin's")

    out = re.sub(r"\$__(\w+)\(([^()]*)\)", with_args, sql)
    plain = {"fromTime_ms": f"fromUnixTimestamp64Milli({sm})", "toTime_ms": f"fromUnixTimestamp64Milli({em})",
             "fromTime": f"toDateTime({s})", "toTime": f"toDateTime({e})", "interval_s": str(secs)}  # fmt: skip
    out = re.sub(r"\$__(fromTime_ms|toTime_ms|fromTime|toTime|interval_s)\b", lambda m: plain[m.group(1)], out)
    assert "$" not in out, f"a macro or variable the plugin would not expand: {out}"
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(kind: str) -> list[tuple[str, dict, dict]]:
    """(dashboard uid, panel, target) for every target whose data source is of `kind`."""
    out = []
    for path in DASHBOARDS:
        d = load(path)
        for p in d["panels"]:
            for t in p.get("targets", []):
                if (t.get("datasource") or p["datasource"])["type"] == kind:
                    out.append((d["uid"], p, t))
    return out


def panel_sql(uid: str, title: str) -> str:
    for d_uid, p, t in panels("grafana-clickhouse-datasource"):
        if (d_uid, p["title"]) == (uid, title):
            return expand_macros(t["rawSql"])
    raise AssertionError(f"no ClickHouse panel {title!r} in {uid}")


# --- the dashboard files --------------------------------------------------------------------------------------


def test_dashboards_load_and_use_the_provisioned_data_sources() -> None:
    assert {p.name for p in DASHBOARDS} == {"meterstream-pipeline.json", "meterstream-business.json"}
    sources = {(s["type"], s["uid"]) for s in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert sources == {("prometheus", "meterstream-prometheus"),
                       ("grafana-clickhouse-datasource", "meterstream-clickhouse")}  # fmt: skip
    uids = set()
    for path in DASHBOARDS:
        d = load(path)
        assert d["uid"] not in uids and d["title"] and d["panels"]
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for p in d["panels"]:
            assert (p["datasource"]["type"], p["datasource"]["uid"]) in sources, (path.name, p["title"])
            assert p["targets"] and set(p["gridPos"]) == {"x", "y", "w", "h"}, p["title"]
            for t in p["targets"]:
                assert ("expr" in t) != ("rawSql" in t), p["title"]
                if "rawSql" in t:  # the plugin's SQL editor: table (1) or time series (0)
                    assert t["editorType"] == "sql" and t["format"] in (0, 1), p["title"]
    titles = {p["title"] for path in DASHBOARDS for p in load(path)["panels"]}
    for needed in (
        "Events per second",
        "Consumer lag (messages)",
        "Dedup rate",
        "Dead letters per second",
        "Sink insert latency",
        "Health",
        "Rated revenue by plan and meter",
        "Usage by meter",
    ):
        assert needed in titles, needed


# --- Prometheus panels: metric names the code exports ----------------------------------------------------------

METRIC_MODULES = (  # what the processor, the sink and the API processes import (and so export on /metrics)
    "meterstream.processor.metrics", "meterstream.processor.live_catalog", "meterstream.aggregation.sink",
    "meterstream.api.metrics", "meterstream.entities.relay", "meterstream.entities.unmatched",
    "meterstream.webhooks.dispatcher",
)  # fmt: skip
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}  # series Prometheus adds per target
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "le", "inf", "nan"}  # fmt: skip


def exported() -> dict[str, tuple[str, ...]]:
    """Series name -> label names, for every collector the metric modules register."""
    from prometheus_client.metrics import MetricWrapperBase

    series: dict[str, tuple[str, ...]] = {}
    for name in METRIC_MODULES:
        for obj in vars(importlib.import_module(name)).values():
            if not isinstance(obj, MetricWrapperBase):
                continue
            base, labels = obj._name, tuple(obj._labelnames)
            suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "summary": ("", "_count", "_sum"),
                        "histogram": ("_bucket", "_count", "_sum", "_created")}[obj._type]  # fmt: skip
            for suffix in suffixes:
                series[base + suffix] = (*labels, "le") if suffix == "_bucket" else labels
    return series


def metric_names(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names of a PromQL expression, each with the label names its selector matches on."""
    labels_of: dict[int, set[str]] = {}
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges [5m], [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)

    def selector(m: re.Match[str]) -> str:
        labels_of[len(labels_of)] = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!=|!~|=)", m.group(0)))
        return f" @{len(labels_of) - 1} "

    text = re.sub(r"\{[^}]*\}", selector, text)
    found = []
    for m in re.finditer(r"(?<![\w.$@])([a-zA-Z_:][\w:]*)(\s*@(\d+))?", text):
        name, after = m.group(1), text[m.end() :]
        if (after.lstrip().startswith("(") and not m.group(2)) or name.lower() in PROMQL_WORDS:
            continue  # a function or an aggregation, or a keyword
        found.append((name, labels_of[int(m.group(3))] if m.group(2) else set()))
    return found


def test_metric_names_parser() -> None:  # the parser itself, on a known expression
    expr = ('histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job="x", route=~"/v1.*"}[$__rate_interval])))'
            " / clamp_min(sum(b_total offset 5m), 1e-9) and up")  # fmt: skip
    assert metric_names(expr) == [("a_bucket", {"job", "route"}), ("b_total", set()), ("up", set())]


def test_every_prometheus_panel_reads_metrics_the_code_exports() -> None:
    series = exported()
    assert "meterstream_processor_events_in_total" in series and "meterstream_sink_insert_seconds_bucket" in series
    used = set()
    for uid, panel, target in panels("prometheus"):
        names = metric_names(target["expr"])
        assert names, (uid, panel["title"], target["expr"])
        for name, labels in names:
            used.add(name)
            if name in PROMETHEUS_OWN:
                continue
            assert name in series, f"{uid} / {panel['title']}: {name} is not exported by {METRIC_MODULES}"
            unknown = labels - set(series[name]) - {"job", "instance"}
            assert not unknown, f"{uid} / {panel['title']}: {name} has no label {unknown}"
        for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
            assert any(label in series.get(n, ()) or label in ("job", "instance") for n, _ in names), (panel, label)
    # the pipeline figures are all there
    for needed in (
        "meterstream_processor_consumer_lag",
        "meterstream_sink_consumer_lag",
        "meterstream_processor_dead_letters_total",
        "meterstream_sink_insert_seconds_bucket",
        "up",
    ):
        assert needed in used, needed


# --- ClickHouse panels: run on known data as a tenant reader ---------------------------------------------------

COLUMNS = ["tenant", "event_id", "customer", "subject", "meter", "time", "period", "quantity", "amount",
           "cumulative", "currency", "plan", "line", "dimensions"]  # fmt: skip


def _ev(tenant, eid, customer, subject, meter, when, quantity, amount, plan, cur="USD"):  # type: ignore[no-untyped-def]
    return [tenant, eid, customer, subject, meter, when, when.strftime("%Y-%m"), D(quantity), D(amount), D(quantity),
            cur, plan, meter, {}]  # fmt: skip


ROWS = [
    _ev("acme", "a1", "org-1", "ann", "api_calls", dt.datetime(2026, 10, 5, 10, tzinfo=UTC), "10", "1.50", "std"),
    _ev("acme", "a2", "org-1", "bob", "api_calls", dt.datetime(2026, 10, 5, 11, tzinfo=UTC), "5", "0.75", "std"),
    # late usage: rated into October after October's invoice; November's invoice carries it as an adjustment
    _ev("acme", "a6", "org-1", "ann", "api_calls", dt.datetime(2026, 10, 31, 23, tzinfo=UTC), "2", "0.50", "std"),
    _ev("acme", "a3", "org-2", "", "storage", dt.datetime(2026, 11, 2, tzinfo=UTC), "100", "0.0137", "std"),
    _ev("acme", "a4", "org-2", "", "api_calls", dt.datetime(2026, 11, 3, 9, tzinfo=UTC), "20", "3.00", "pro"),
    _ev("acme", "a5", "org-1", "ann", "api_calls", dt.datetime(2026, 8, 20, tzinfo=UTC), "1000", "99", "std"),  # before
    _ev("bolt", "b1", "b-1", "", "api_calls", dt.datetime(2026, 10, 5, tzinfo=UTC), "7", "9.99", "std", "EUR"),
]
DOC_ORG1_OCT = json.dumps({"lines": [{"line_no": 1, "kind": "usage", "code": "api_calls", "applies_to": "2026-10",
                                      "amount": "2.25", "subjects": [
                                          {"subject": "ann", "quantity": "10", "amount": "1.50"},
                                          {"subject": "bob", "quantity": "5", "amount": "0.75"}]}]})  # fmt: skip
CLOSED = dt.datetime(2026, 11, 1, 1, tzinfo=UTC)
INVOICES = [  # tenant, customer, period, invoice_id, plan, currency, subtotal, total, line_count, document, closed_at
    ["acme", "org-1", "2026-10", "inv-1", "std", "USD", D("2.25"), D("2.25"), 1, DOC_ORG1_OCT, CLOSED],
    ["acme", "org-1", "2026-11", "inv-2", "std", "USD", D("0.50"), D("0.50"), 1, "{}", CLOSED],
    ["acme", "org-2", "2026-11", "inv-3", "pro", "USD", D("3.00"), D("3.00"), 1, "{}", CLOSED],
    ["bolt", "b-1", "2026-10", "inv-b", "std", "EUR", D("9.99"), D("9.99"), 1, "{}", CLOSED],
]
LINE_COLUMNS = ["tenant", "customer", "period", "line_no", "meter", "description", "quantity", "amount", "currency",
                "closed_at", "line_key", "applies_to", "kind"]  # fmt: skip
LINES = [
    ["acme", "org-1", "2026-10", 1, "api_calls", "API calls", D(15), D("2.25"), "USD", CLOSED, "api_calls", "2026-10",
     "usage"],
    ["acme", "org-1", "2026-11", 1, "api_calls", "late usage for 2026-10", D(2), D("0.50"), "USD", CLOSED, "api_calls",
     "2026-10", "adjustment"],
    ["acme", "org-2", "2026-11", 1, "api_calls", "API calls", D(20), D("3.00"), "USD", CLOSED, "api_calls", "2026-11",
     "usage"],
    ["bolt", "b-1", "2026-10", 1, "api_calls", "API calls", D(7), D("9.99"), "EUR", CLOSED, "api_calls", "2026-10",
     "usage"],
]  # fmt: skip


REVENUE_COLUMNS = ["tenant", "month", "currency", "start_mrr", "end_mrr", "new_mrr", "churned_mrr", "arr",
                   "customers_start", "customers_end", "customers_churned", "customer_churn_rate",
                   "net_revenue_retention", "computed_at"]  # fmt: skip
REVENUE = [  # what the billing run writes (tests/analytics/test_revenue_table.py); October written twice
    ["acme", dt.date(2026, 8, 1), "USD", D(0), D(30), D(30), D(0), D(360), 0, 1, 0, None, None, CLOSED],  # before
    ["acme", dt.date(2026, 9, 1), "USD", D(30), D(140), D(110), D(0), D(1680), 1, 2, 0, D(0), D(1), CLOSED],
    ["acme", dt.date(2026, 10, 1), "USD", D(140), D(999), D(0), D(0), D(0), 2, 1, 1, D(0), D(0), CLOSED],
    ["acme", dt.date(2026, 10, 1), "USD", D(140), D(30), D(0), D(110), D(360), 2, 1, 1, D("0.5"), D("0.2143"),
     CLOSED + dt.timedelta(days=1)],  # the later run's figures replace the earlier ones
    ["bolt", dt.date(2026, 10, 1), "EUR", D(50), D(50), D(0), D(0), D(600), 1, 1, 0, D(0), D(1), CLOSED],
]  # fmt: skip


@dataclass
class Front:
    port: int
    acme: str  # a read key of tenant acme


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """The sink's ClickHouse HTTP front over an embedded store in a tmp dir, tenants signed in by API key."""
    root = tmp_path_factory.mktemp("dashboards")
    store, url = root / "store", f"sqlite:///{root / 'entities.db'}"
    keys = key_store(url)
    acme = keys.create("acme", "read")[1]
    env = dict(os.environ, METERSTREAM_CLICKHOUSE_HTTP_PASSWORD=PASSWORD, METERSTREAM_DATABASE_URL=url)
    with running_front(store, env, timeout=90) as port:
        writer = clickhouse_connect.get_client(host="127.0.0.1", port=port, username=INTERNAL_USER, password=PASSWORD)
        create_schema(writer, "meterstream")
        writer.insert("meterstream.rated_usage", ROWS, column_names=COLUMNS)
        writer.insert("meterstream.invoices", INVOICES)
        writer.insert("meterstream.invoice_lines", LINES, column_names=LINE_COLUMNS)
        writer.insert("meterstream.revenue_monthly", REVENUE, column_names=REVENUE_COLUMNS)
        writer.command(  # acme: a parsed letter and an unparsed one keyed acme/...; bolt: one
            "INSERT INTO meterstream.dead_letters (topic, partition, offset, stage, field, reason, tenant, kafka_key, "
            "raw) VALUES ('usage-events', 0, 1, 'rate', 'meter', 'no price', 'acme', 'acme/org-1', '{}'), "
            "('usage-events', 0, 2, 'parse', '', 'not JSON', '', 'acme/org-1', 'x'), "
            "('usage-events', 0, 3, 'rate', 'meter', 'no price', 'bolt', 'bolt/b-1', '{}'), "
            "('usage-events', 0, 4, 'rate', 'meter', 'no price', 'bolt', 'bolt/b-1', '{}')"
        )
        yield Front(port, acme)


@pytest.fixture(scope="module")
def reader(front: Front):  # type: ignore[no-untyped-def]
    """What Grafana's data source is: a ClickHouse client signed in as the tenant (database meterstream)."""
    return clickhouse_connect.get_client(host="127.0.0.1", port=front.port, username="acme", password=front.acme,
                                         database="meterstream")  # fmt: skip


def rows(reader, sql: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(r) for r in reader.query(sql).result_rows]


def test_every_clickhouse_panel_runs_as_a_tenant_reader(reader) -> None:  # type: ignore[no-untyped-def]
    ran = 0
    for uid, panel, target in panels("grafana-clickhouse-datasource"):
        result = reader.query(expand_macros(target["rawSql"]))  # raises on a refusal or a bad statement
        if target["format"] == 0 and result.result_rows:  # a time series: its first column is the time
            assert result.column_names[0] == "time", (uid, panel["title"])
        ran += len(result.result_rows) > 0
    assert ran >= 10  # every panel but the spikes' has rows on this data


def test_revenue_by_plan_and_meter_summed_by_hand(reader) -> None:  # type: ignore[no-untyped-def]
    # months from September (the range starts 2026-09-15) to November; August's a5 (99.00) is outside; bolt unseen
    got = rows(reader, panel_sql("meterstream-business", "Rated revenue by plan and meter"))
    assert got == [
        ("pro", "api_calls", "USD", 1, D(20), D("3.00")),  # a4
        ("std", "api_calls", "USD", 3, D(17), D("2.75")),  # a1 1.50 + a2 0.75 + a6 0.50; 10 + 5 + 2
        ("std", "storage", "USD", 1, D(100), D("0.0137")),  # a3
    ]


def test_revenue_by_month(reader) -> None:  # type: ignore[no-untyped-def]
    got = rows(reader, panel_sql("meterstream-business", "Rated revenue by month"))
    assert got == [(dt.datetime(2026, 10, 1), "USD", D("2.75")),  # 1.50 + 0.75 + 0.50
                   (dt.datetime(2026, 11, 1), "USD", D("3.0137"))]  # 0.0137 + 3.00  # fmt: skip


def test_invoiced_revenue_and_cost_per_user(reader) -> None:  # type: ignore[no-untyped-def]
    got = rows(reader, panel_sql("meterstream-business", "Invoiced revenue by period and plan"))
    assert got == [("2026-10", "std", "USD", D("2.25"), D(0), D("2.25")),
                   ("2026-11", "pro", "USD", D("3.00"), D(0), D("3.00")),
                   ("2026-11", "std", "USD", D(0), D("0.50"), D("0.50"))]  # the late usage of October  # fmt: skip
    got = rows(reader, panel_sql("meterstream-business", "Cost per user"))
    assert got == [("2026-10", "org-1", "ann", "USD", D("1.50")), ("2026-10", "org-1", "bob", "USD", D("0.75"))]


def test_usage_panels(reader) -> None:  # type: ignore[no-untyped-def]
    got = rows(reader, panel_sql("meterstream-business", "Usage by meter"))
    assert [(t.replace(tzinfo=None), m, q) for t, m, q in got] == [
        (dt.datetime(2026, 10, 5, 10), "api_calls", D(10)), (dt.datetime(2026, 10, 5, 11), "api_calls", D(5)),
        (dt.datetime(2026, 10, 31, 23), "api_calls", D(2)), (dt.datetime(2026, 11, 2), "storage", D(100)),
        (dt.datetime(2026, 11, 3, 9), "api_calls", D(20)),
    ]  # fmt: skip
    got = rows(reader, panel_sql("meterstream-business", "Top customers by rated amount"))
    assert got == [("org-2", "USD", D("3.0137"), D(120), 2), ("org-1", "USD", D("2.75"), D(17), 3)]
    # October: 17 used, 15 on October's invoice, 2 as November's adjustment: nothing left; storage: not invoiced
    got = rows(reader, panel_sql("meterstream-business", "Usage not invoiced yet"))
    assert got == [("2026-11", "org-2", "storage", D(100), D(0), D(0), D(100))]
    assert rows(reader, panel_sql("meterstream-business", "Usage spikes (3x the trailing 7-day average)")) == []


def test_recurring_revenue_panel_and_table_show_the_tenants_own(reader) -> None:  # type: ignore[no-untyped-def]
    # months from September (the month the range starts in) to November; the later October row replaces the
    # earlier one (FINAL); bolt's EUR month is not acme's
    got = rows(reader, panel_sql("meterstream-business", "MRR, ARR and churn by month"))
    assert got == [
        (dt.date(2026, 9, 1), "USD", D(30), D(140), D(110), D(0), D(0), D(0), D(1680), D(0), D(1)),
        (dt.date(2026, 10, 1), "USD", D(140), D(30), D(0), D(0), D(0), D(110), D(360), D("0.5"), D("0.2143")),
    ]
    assert rows(reader, "SELECT DISTINCT tenant FROM meterstream.revenue_monthly") == [("acme",)]
    assert rows(reader, "SELECT count() FROM meterstream.revenue_monthly WHERE tenant = 'bolt'") == [(0,)]


def test_running_amount_per_user_panel(reader) -> None:  # type: ignore[no-untyped-def]
    # the only usage of acme on no invoice: org-1's August (a5, ann, 1000 calls, 99.00); every other period of
    # acme's customers is invoiced (org-1 October with its late a6, org-2 November)
    got = rows(reader, panel_sql("meterstream-business", "Running amount per user (periods not invoiced yet)"))
    assert got == [("2026-08", "org-1", "api_calls", "ann", "USD", D(1000), D(99))]


def test_dead_letters_panel_shows_the_tenants_own(reader) -> None:  # type: ignore[no-untyped-def]
    got = rows(reader, panel_sql("meterstream-pipeline", "Dead letters by stage and reason (ClickHouse)"))
    assert got == [("parse", "", "not JSON", 1), ("rate", "meter", "no price", 1)]  # bolt's two are not acme's


def test_macros_expand_as_the_plugin_does() -> None:
    # the plugin's own test figures (macros_test.go): from 1970-01-01T00:00:00Z (0) to 1970-01-02 (86400)
    start, end = dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(1970, 1, 2, tzinfo=UTC)
    assert expand_macros("$__timeFilter(ts)", start, end) == "ts >= toDateTime(0) AND ts <= toDateTime(86400)"
    assert expand_macros("$__dateFilter(d)", start, end) == "d >= toDate('1970-01-01') AND d <= toDate('1970-01-02')"
    assert expand_macros("$__timeInterval(t)", start, end, 60) == "toStartOfInterval(toDateTime(t), INTERVAL 60 second)"
    assert expand_macros("$__fromTime_ms $__toTime $__interval_s", start, end, 0) == (
        "fromUnixTimestamp64Milli(0) toDateTime(86400) 1"
    )
    with pytest.raises(AssertionError):
        expand_macros("$customer")
