"""End to end as an OpenMeter user sees it: the OpenMeter Python SDK, unchanged, sends CloudEvents to
/compat/openmeter on a real uvicorn server; the real broker, the stream processor and the ClickHouse sink
(separate processes, embedded ClickHouse) rate and store them; the same SDK reads them back through
`meters.query_json` / `events.list`, and `meterstream query` sees the same rows.

Every expected value is worked out by hand from the events below (see the comments).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import openmeter
import pytest
from served_app import serve

from meterstream.api.app import create_app
from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import settings_from_env

pytestmark = pytest.mark.kafka
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TENANT = "omtest"
# one clock hour, two hours back: inside the processor's time window, and the hour windows are known
BASE = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


def at(minutes: int) -> str:
    return (BASE + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def cloud(i: str, minutes: int, subject: str, type_: str = "prompt", **data) -> dict:
    return {"id": i, "source": "chat-svc", "specversion": "1.0", "type": type_, "subject": subject,
            "time": at(minutes), "data": data}  # fmt: skip


E1 = cloud("e1", 5, "u1", tokens=10, model="a", user="x")
E2 = cloud("e2", 50, "u2", tokens=5, model="b", user="y")
E3 = cloud("e3", 70, "u9", tokens=2.5, model="a", user="x")  # u9: no customer claims it
E4 = cloud("e4", 80, "u1", tokens="7.25", user="z")  # no model: an empty group
E5 = cloud("e5", 90, "u2", tokens="abc")  # counted by `prompts`; every other meter refuses it
S1 = cloud("s1", 20, "u1", type_="storage", gb=3)  # no meter has type storage: kept, unmatched
UP1 = cloud("up1", 60, "u1", type_="upload")
E2_AS_UPLOAD = cloud("e2", 55, "u2", type_="upload")  # e2 sent again as another type: a duplicate, as in OpenMeter

METERS = [
    {"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens",
     "groupBy": {"model": "$.model"}},
    {"slug": "prompts", "eventType": "prompt", "aggregation": "COUNT"},
    {"slug": "users", "eventType": "prompt", "aggregation": "UNIQUE_COUNT", "valueProperty": "$.user"},
    {"slug": "peak", "eventType": "prompt", "aggregation": "MAX", "valueProperty": "$.tokens"},
    {"slug": "mean", "eventType": "prompt", "aggregation": "AVG", "valueProperty": "$.tokens"},
    {"slug": "last", "eventType": "prompt", "aggregation": "LATEST", "valueProperty": "$.tokens"},
    {"slug": "uploads", "eventType": "upload", "aggregation": "COUNT"},
]  # fmt: skip


def wait_for(fn, expected, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def cli_query(env: dict[str, str], sql: str) -> list[list[str]]:
    done = subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", "query", sql], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [line.split("\t") for line in done.stdout.splitlines()[1:]]


def test_sdk_events_come_back_through_queries_and_meterstream_query(api_settings, tmp_path):
    from meterstream.aggregation.http_front import front_answers
    from meterstream.deploy.pipeline import Pipeline

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({
        "METERSTREAM_HOME": str(tmp_path),
        "METERSTREAM_KAFKA_BOOTSTRAP": api_settings.bootstrap,
        "METERSTREAM_TOPIC_PREFIX": api_settings.topic_prefix,
        "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(free_port()),
        "METERSTREAM_CATALOG": str(HERE / "catalog.yaml"),
        "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
        "METERSTREAM_SINK_METRICS_PORT": str(free_port()),
        "METERSTREAM_SINK_BATCH_SECONDS": "0.3",
        "METERSTREAM_SINK_DEAD_LETTER_SECONDS": "0.5",
    })  # fmt: skip
    settings = settings_from_env(env)
    api = settings.model_copy(update={"api_produce_timeout_s": 5.0, "api_rate_limit_per_s": 0.0})
    pipeline = Pipeline(env, tmp_path / "logs")
    app = create_app(api)
    admin_key = app.state.keys.create(TENANT, "admin", "sdk test")[1]
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        with serve(app) as base, openmeter.Client(endpoint=f"{base}/compat/openmeter", token=admin_key) as om:
            for m in METERS:
                om.meters.create(m)
            attribution = {"subjectKeys": ["u1", "u2"]}
            acme = om.customers.create({"name": "ACME", "key": "acme", "usageAttribution": attribution})
            om.events.ingest_event(E1)  # application/cloudevents+json
            om.events.ingest_events([E2, E3, S1])  # application/cloudevents-batch+json
            om.events.ingest_events_json([E4, E5])  # application/json
            om.events.ingest_event({**E1, "data": {"tokens": 999, "model": "z", "user": "q"}})  # duplicate (source, id)
            om.events.ingest_events([E2_AS_UPLOAD, UP1])
            deadline = time.monotonic() + 60  # the sink serves the store over ClickHouse's HTTP protocol
            while not front_answers(settings) and time.monotonic() < deadline:
                pipeline.check_alive()
                time.sleep(0.3)
            assert front_answers(settings), "the sink's ClickHouse HTTP front did not come up"

            def value(slug, **kw):
                return [r.value for r in om.meters.query_json(slug, **kw).data]

            # prompts COUNT: e1..e5 = 5 (e5 counts: COUNT needs no value; the duplicate of e1 does not)
            assert wait_for(lambda: value("prompts"), [5]) == [5]
            assert wait_for(lambda: value("tokens"), [24.75]) == [24.75]  # 10 + 5 + 2.5 + 7.25
            assert wait_for(lambda: value("last"), [7.25]) == [7.25]  # e4 is the latest event with a value
            # uploads COUNT: up1 only; e2 sent again as an upload feeds `uploads` under another usage id, and is
            # dropped all the same: its (source, id) came first as a prompt (it was charged twice before)
            assert wait_for(lambda: value("uploads"), [1]) == [1]
            assert value("users") == [3]  # x, y, x, z
            assert value("peak") == [10]
            assert value("mean") == [6.1875]  # 24.75 / 4
            hours = om.meters.query_json("tokens", window_size="HOUR").data
            # [BASE, BASE+1h): e1 + e2 = 15; [BASE+1h, BASE+2h): e3 + e4 = 9.75
            assert [(r.window_start, r.window_end, r.value) for r in hours] == [
                (BASE, BASE + dt.timedelta(hours=1), 15),
                (BASE + dt.timedelta(hours=1), BASE + dt.timedelta(hours=2), 9.75),
            ]
            by_model = om.meters.query_json("tokens", group_by=["model"]).data
            assert sorted((r.group_by.get("model") or "", r.value) for r in by_model) == [
                ("", 7.25), ("a", 12.5), ("b", 5),
            ]  # fmt: skip
            # acme pays for u1 and u2: e1 + e2 + e4 = 22.25; u9 is its own customer: 2.5
            rows = om.meters.query_json("tokens", filter_customer_id=[acme.id]).data
            assert [(r.customer_id, r.value) for r in rows] == [(acme.id, 22.25)]
            assert value("tokens", subject=["u9"]) == [2.5]
            assert om.meters.list_subjects("tokens") == ["u1", "u2", "u9"]
            csv = om.meters.query_csv("tokens", group_by=["subject"]).splitlines()
            # no window: each row spans its group's first and last event
            assert csv[1:] == [f"{at(5)},{at(80)},u1,,17.25", f"{at(50)},{at(50)},u2,,5", f"{at(70)},{at(70)},u9,,2.5"]

            def listed():
                return sorted((e.event.id, e.validation_error is not None) for e in om.events.list())

            # e1..e5 rated (e5 by `prompts` only); e5 refused by five meters (listed once per dead letter);
            # s1 unmatched
            expected = sorted([("e1", False), ("e2", False), ("e3", False), ("e4", False), ("e5", False), ("s1", True),
                               ("up1", False)] + [("e5", True)] * 5)  # fmt: skip
            assert wait_for(listed, expected) == expected
            e1 = next(e for e in om.events.list(id="e1"))
            assert (e1.event.source, e1.event.type, e1.event.subject) == ("chat-svc", "prompt", "u1")
            assert e1.event.data == {"tokens": 10, "model": "a", "user": "x"}  # what the meters kept
            assert e1.customer_id == acme.id
            # acme pays for u1 and u2: e1, e2, e4, e5 (rated by `prompts`) and up1; refusals name no customer
            listed_acme = sorted(e.event.id for e in om.events.list(customer_id=[acme.id]))
            assert listed_acme == ["e1", "e2", "e4", "e5", "up1"]
            assert [e.event.id for e in om.events.list(subject="u9")] == ["e3"]
            assert [e.event.id for e in om.events.list(limit=2)] == ["e5", "e5"]  # newest first: e5 is at BASE+90m
            refused = sorted(e.validation_error for e in om.events.list(id="e5") if e.validation_error)
            assert [r.split(" (")[0] for r in refused] == [
                *["data.tokens: must be a non-negative decimal with at most 12 fractional digits"] * 4,
                "data.user: required by meter users",
            ]
            # the same rows for an analyst, through `meterstream query` (through the sink's front)
            sql = ("SELECT meter, count(), sum(quantity), sum(amount) FROM meterstream.rated_usage FINAL "
                   f"WHERE tenant = '{TENANT}' GROUP BY meter ORDER BY meter")  # fmt: skip
            rows = cli_query(env, sql)
        got = [(m, int(n), Decimal(q), Decimal(a)) for m, n, q, a in rows]
        assert got == [
            ("last", 4, Decimal("24.75"), Decimal(0)),
            ("mean", 4, Decimal("24.75"), Decimal(0)),
            ("peak", 4, Decimal("24.75"), Decimal(0)),
            ("prompts", 5, Decimal(5), Decimal("0.05")),  # 5 x 0.01
            ("tokens", 4, Decimal("24.75"), Decimal("0.02475")),  # 24.75 x 0.001
            ("uploads", 1, Decimal(1), Decimal("0.05")),  # up1 only: e2 as an upload was not charged
            ("users", 4, Decimal(4), Decimal(0)),
        ]
    finally:
        pipeline.stop_all()
        app.state.ingest.close()
