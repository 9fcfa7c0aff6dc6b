"""The whole path as deployed: `meterstream serve` (a real uvicorn process), the processor and the sink
as subprocesses, the embedded ClickHouse read through the sink's HTTP front. Events go in over HTTP,
usage and the running amount come back out; totals worked by hand from deploy/demo_catalog.yaml."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from meterstream.aggregation.http_front import front_client
from meterstream.deploy.pipeline import Pipeline, demo_environment
from meterstream.deploy.ports import free_port
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.keys import KeyRepository
from meterstream.schemas.settings import settings_from_env

pytestmark = pytest.mark.kafka


@pytest.fixture
def deployed(kafka_settings, tmp_path):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = demo_environment(kafka_settings.model_copy(update={"home": tmp_path}), tmp_path, uuid.uuid4().hex[:8])
    env = {k: v for k, v in env.items() if not k.startswith("METERSTREAM_") or k in (
        "METERSTREAM_TOPIC_PREFIX", "METERSTREAM_HOME", "METERSTREAM_PROCESSOR_METRICS_PORT",
        "METERSTREAM_SINK_METRICS_PORT", "METERSTREAM_CLICKHOUSE_HTTP_PORT", "METERSTREAM_CLICKHOUSE_URL")}  # fmt: skip
    env.update({"METERSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "METERSTREAM_API_PORT": str(free_port()),
                "METERSTREAM_SINK_BATCH_SECONDS": "0.2"})  # fmt: skip
    subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", "init"], env=env, check=True, capture_output=True)
    settings = settings_from_env(env)
    engine = make_engine(settings)
    migrate(settings, engine)
    keys = KeyRepository(session_factory(engine))
    pipeline = Pipeline(env, tmp_path / "logs")
    try:
        for name in ("processor", "sink", "api"):
            pipeline.start(name)
        base = f"http://127.0.0.1:{settings.api_port}"
        deadline = time.monotonic() + 90
        while True:
            pipeline.check_alive()
            try:
                r = httpx.get(f"{base}/readyz", timeout=5)
                if r.status_code == 200 and r.json()["checks"]["clickhouse"]["ok"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the deployed API did not become ready"
            time.sleep(0.5)
        yield base, keys, settings
    finally:
        for name in ("api", "processor", "sink"):
            pipeline.stop(name)
        engine.dispose()


def _auth(keys: KeyRepository, tenant: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.create(tenant, role)[1]}"}


def test_events_in_over_http_usage_and_running_amount_out(deployed) -> None:
    base, keys, settings = deployed
    when = datetime.now(UTC) - timedelta(minutes=10)
    t = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    period = when.strftime("%Y-%m")
    ingest, read = _auth(keys, "cloudco", "ingest"), _auth(keys, "cloudco", "read")
    other = _auth(keys, "saasco", "read")
    first = [
        {"id": "p1", "customer": "org-500", "meter": "api_calls", "quantity": "6000", "time": t},
        {"id": "p2", "customer": "org-500", "meter": "api_calls", "quantity": 5000, "time": t},
        {"id": "p3", "customer": "org-500", "meter": "storage_gb_hours", "quantity": "1000", "time": t},
        {"id": "p4", "customer": "org-500", "meter": "api_calls", "quantity": "-1", "time": t},
    ]
    second = [
        {"id": "p2", "customer": "org-500", "meter": "api_calls", "quantity": 5000, "time": t},  # a client retry
        {"id": "p5", "customer": "org-500", "meter": "api_calls", "quantity": "1000", "time": t},
    ]
    with httpx.Client(base_url=base, timeout=30) as http:
        r1 = http.post("/v1/events", json=first, headers=ingest).json()
        r2 = http.post("/v1/events", json=second, headers=ingest).json()
        assert [x["status"] for x in r1["results"]] == ["accepted", "accepted", "accepted", "rejected"]
        assert [x["status"] for x in r2["results"]] == ["duplicate", "accepted"]

        # api_calls: 6000 + 5000 + 1000 = 12000 (p2 once); cloud-standard is graduated, the first 10,000 free,
        # then 0.00002: 2000 x 0.00002 = 0.04. storage_gb_hours: unit 0.000137 x 1000 = 0.137.
        want = [("api_calls", "USD", "12000", "0.04", 3), ("storage_gb_hours", "USD", "1000", "0.137", 1)]
        deadline = time.monotonic() + 60
        while True:
            body = http.get("/v1/customers/org-500/running-amount", params={"period": period}, headers=read).json()
            got = [(m["meter"], m["currency"], m["quantity"], m["amount"], m["events"]) for m in body["meters"]]
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == want
        assert body["totals"] == [{"currency": "USD", "amount": "0.177", "amount_rounded": "0.18"}]

        rows = http.get("/v1/usage", params={"customer": "org-500", "window": "day"}, headers=read).json()["rows"]
        assert [(r["meter"], r["quantity"], r["events"]) for r in rows] == [("api_calls", "12000", 3),
                                                                          ("storage_gb_hours", "1000", 1)]  # fmt: skip
        assert rows[0]["window_start"] == when.strftime("%Y-%m-%dT00:00:00+00:00")
        assert http.get("/v1/usage", params={"customer": "org-500"}, headers=other).json()["rows"] == []

    # the rejected event went through the dead letters to ClickHouse, with the API's stage, field and reason
    ch = front_client(settings)  # the front's internal user, read-only: it sees every tenant
    deadline = time.monotonic() + 30
    while True:
        letters = ch.query(
            f"SELECT stage, field, tenant, event_id FROM {settings.clickhouse_database}.dead_letters FINAL "
            "WHERE tenant = 'cloudco'"
        ).result_rows
        if letters or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert letters == [("api", "quantity", "cloudco", "p4")]
