"""lago-python-client 1.55.0, unchanged, against /compat/lago/ on a real uvicorn server, the real broker
(session fixture) and the whole pipeline (processor + sink subprocesses, embedded ClickHouse served by
the sink's HTTP front): events sent through the SDK come back through `events.find` and through
`meterstream query`, and a batch with a duplicated transaction id succeeds and is charged once.

Prices: tests/data/lago_catalog.yaml, plan lago_basic (USD) for every customer of tenant lago-e2e.
Worked by hand:
  storage (sum_agg of gb, unit 0.25):  tx-1 10 GB + tx-2 2.5 GB (its duplicate of 999 GB dropped)
                                        = 12.5 GB -> 12.5 * 0.25 = 3.125 USD (2.5 + 0.625)
  api_requests (count_agg, first 2 free, then 0.10): rq-1, rq-2, rq-3 (rq-1 sent twice) = 3
                                        -> 2 * 0 + 1 * 0.10 = 0.10 USD
  gpu_hours: no billable metric -> kept unmatched, not charged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, BillableMetric, Event, Subscription
from served_app import serve

from meterstream.schemas.settings import Settings, settings_from_env

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
TENANT = "lago-e2e"


def environment(kafka_settings: Settings, tmp_path: Path) -> dict[str, str]:
    from meterstream.deploy.ports import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(
        {
            "METERSTREAM_HOME": str(tmp_path / "home"),
            "METERSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "METERSTREAM_TOPIC_PREFIX": f"lago-{uuid.uuid4().hex[:8]}.",
            "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
            "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(free_port()),
            "METERSTREAM_CATALOG": str(ROOT / "tests" / "data" / "lago_catalog.yaml"),
            "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
            "METERSTREAM_SINK_METRICS_PORT": str(free_port()),
            "METERSTREAM_SINK_BATCH_SECONDS": "0.3",
            "METERSTREAM_API_RATE_LIMIT_PER_S": "0",
        }
    )
    return env


def meterstream_query(env: dict[str, str], sql: str) -> list[list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "meterstream.deploy.cli", "query", sql],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [line.split("\t") for line in done.stdout.splitlines()[1:]]


def find_when_rated(client: Client, transaction_id: str, timeout: float = 90) -> object:
    """events.find until the pipeline has rated the transaction (404 before that, as documented)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.events.find(transaction_id)
        except LagoApiError as exc:
            if exc.status_code not in (404, 503) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_lago_sdk_end_to_end(kafka_settings: Settings, tmp_path: Path) -> None:
    from meterstream.api.app import create_app
    from meterstream.deploy.pipeline import Pipeline, wait_drained
    from meterstream.ingest.topics import ensure_topics
    from meterstream.processor.runner import app_id

    env = environment(kafka_settings, tmp_path)
    settings = settings_from_env(env)
    ensure_topics(settings)
    stamp = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    when = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    pipeline = Pipeline(env, tmp_path / "logs")
    app = create_app(settings)
    keys = app.state.keys
    admin_key, ingest_key, read_key = (keys.create(TENANT, r, f"lago {r}")[1] for r in ("admin", "ingest", "read"))
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        with serve(app) as base:
            admin = Client(api_key=admin_key, api_url=f"{base}/compat/lago/")
            lago = Client(api_key=ingest_key, api_url=f"{base}/compat/lago/")
            reader = Client(api_key=read_key, api_url=f"{base}/compat/lago/")

            metric = admin.billable_metrics.create(
                BillableMetric(name="Storage", code="storage", aggregation_type="sum_agg", field_name="gb")
            )
            assert (metric.code, metric.aggregation_type, metric.field_name) == ("storage", "sum_agg", "gb")
            admin.billable_metrics.create(
                BillableMetric(name="Requests", code="api_requests", aggregation_type="count_agg")
            )
            sub = admin.subscriptions.create(
                Subscription(external_customer_id="acme", external_id="sub-1")  # no plan_code: the catalog file prices
            )
            assert (sub.external_id, sub.external_customer_id) == ("sub-1", "acme")
            listed = admin.billable_metrics.find_all()["billable_metrics"]
            assert [(x.code, x.aggregation_type) for x in listed] == [
                ("storage", "sum_agg"),
                ("api_requests", "count_agg"),
            ]
            assert admin.billable_metrics.find("storage").field_name == "gb"
            subs = admin.subscriptions.find_all({"external_customer_id": "acme"})["subscriptions"]
            assert [x.external_id for x in subs] == ["sub-1"]

            created = lago.events.create(
                Event(
                    transaction_id="tx-1",
                    external_subscription_id="sub-1",
                    code="storage",
                    timestamp=stamp,
                    properties={"gb": 10},
                )
            )
            assert (created.transaction_id, created.code, created.timestamp) == ("tx-1", "storage", when)
            lago.events.batch_create(
                BatchEvent(
                    events=[
                        Event(
                            transaction_id="tx-2",
                            external_subscription_id="sub-1",
                            code="storage",
                            timestamp=str(stamp),
                            properties={"gb": "2.5"},
                        ),
                        Event(
                            transaction_id="tx-2",
                            external_subscription_id="sub-1",
                            code="storage",
                            timestamp=str(stamp),
                            properties={"gb": 999},
                        ),  # the same transaction id: charged once
                        *(
                            Event(
                                transaction_id=f"rq-{i}",
                                external_subscription_id="sub-1",
                                code="api_requests",
                                timestamp=stamp,
                            )
                            for i in (1, 2, 3)
                        ),
                        Event(
                            transaction_id="rq-1",
                            external_subscription_id="sub-1",
                            code="api_requests",
                            timestamp=stamp,
                        ),
                    ]
                )
            )
            lago.events.batch_create(
                BatchEvent(
                    events=[  # a client retry of a sent event: a success too
                        Event(
                            transaction_id="tx-1",
                            external_subscription_id="sub-1",
                            code="storage",
                            timestamp=stamp,
                            properties={"gb": 10},
                        ),
                    ]
                )
            )
            kept = lago.events.create(
                Event(
                    transaction_id="gpu-1",
                    external_subscription_id="sub-1",
                    code="gpu_hours",
                    timestamp=stamp,
                    properties={"hours": 3},
                )
            )
            assert kept.code == "gpu_hours"  # 200 as Lago answers; kept unmatched (see below)

            with pytest.raises(LagoApiError) as refused:  # a bad event: 422 in Lago's shape
                lago.events.create(
                    Event(
                        transaction_id="bad-1",
                        external_subscription_id="sub-1",
                        code="storage",
                        timestamp="yesterday",
                        properties={"gb": 1},
                    )
                )
            assert refused.value.status_code == 422
            assert refused.value.response["error_details"] == {
                "timestamp": ["must be Unix seconds such as 1651240791 or \"1651240791.123\", got 'yesterday'"]
            }
            with pytest.raises(LagoApiError) as denied:
                Client(api_key="msk_nope.nope", api_url=f"{base}/compat/lago/").events.create(
                    Event(transaction_id="x", external_subscription_id="sub-1", code="storage", timestamp=stamp)
                )
            assert denied.value.status_code == 401

            wait_drained(settings, pipeline, app_id(settings), 5, timeout=180)
            found = find_when_rated(reader, "tx-2")
            assert (found.transaction_id, found.code, found.external_subscription_id) == ("tx-2", "storage", "sub-1")
            assert found.timestamp == when
            assert found.properties == {"gb": "2.5"}  # as Lago's ClickHouse event store keeps them: strings
            assert find_when_rated(reader, "rq-3").code == "api_requests"
            assert reader.events.find("gpu-1").code == "gpu_hours"  # the kept (unmatched) event is visible
            with pytest.raises(LagoApiError) as missing:
                reader.events.find("never-sent")
            assert missing.value.status_code == 404
        assert pipeline.stop("processor") == 0
        assert pipeline.stop("sink") == 0
    finally:
        pipeline.stop_all()
        app.state.ingest.close()

    db = settings.clickhouse_database
    rows = meterstream_query(
        env,
        f"SELECT event_id, customer, subject, meter, quantity, amount FROM {db}.rated_usage "
        f"FINAL WHERE tenant = '{TENANT}' ORDER BY event_id",
    )
    assert [(r[0], r[1], r[2], r[3], Decimal(r[4])) for r in rows] == [
        ("om:api_requests:4:lago:rq-1", "acme", "sub-1", "api_requests", Decimal(1)),
        ("om:api_requests:4:lago:rq-2", "acme", "sub-1", "api_requests", Decimal(1)),
        ("om:api_requests:4:lago:rq-3", "acme", "sub-1", "api_requests", Decimal(1)),
        ("om:storage:4:lago:tx-1", "acme", "sub-1", "storage", Decimal(10)),
        ("om:storage:4:lago:tx-2", "acme", "sub-1", "storage", Decimal("2.5")),
    ]
    totals = meterstream_query(
        env,
        f"SELECT meter, sum(amount) FROM {db}.rated_usage FINAL "
        f"WHERE tenant = '{TENANT}' GROUP BY meter ORDER BY meter",
    )
    assert {m: Decimal(a) for m, a in totals} == {"api_requests": Decimal("0.10"), "storage": Decimal("3.125")}
