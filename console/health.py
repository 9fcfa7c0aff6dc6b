"""Pipeline health: the API's own view (Kafka, ClickHouse, the SQL store: what /readyz checks) and the /healthz of
the processor worker(s) and the sink (meterstream/ops_http.py, on the ports `up` gives them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from meterstream.console.web import User, page
from meterstream.schemas.settings import Settings

router = APIRouter()
MAX_WORKERS = 16


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    facts: tuple[tuple[str, str], ...] = ()


def probe(name: str, url: str, timeout: float = 1.0) -> Check | None:
    """A process's /healthz: ok (200), degraded (503, with its facts); None when nothing answers there."""
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    try:
        body = r.json()
    except ValueError:
        body = {}
    facts = tuple((k, str(v)) for k, v in body.items() if k != "status") if isinstance(body, dict) else ()
    return Check(name, r.status_code == 200, f"{url}: {body.get('status', r.status_code)}", facts)


def pipeline_checks(settings: Settings) -> list[Check]:
    """The processor worker(s) (worker i on its port + i, up to the first that does not answer) and the sink."""
    host = settings.ops_host if settings.ops_host not in ("0.0.0.0", "::") else "127.0.0.1"
    checks = []
    for i in range(MAX_WORKERS):
        port = settings.processor_metrics_port + i
        if port == settings.sink_metrics_port and i:
            break
        found = probe(f"processor worker {i}", f"http://{host}:{port}/healthz")
        if found is None:
            if i == 0:
                checks.append(Check("processor", False, f"nothing answers on http://{host}:{port}/healthz"))
            break
        checks.append(found)
    sink_url = f"http://{host}:{settings.sink_metrics_port}/healthz"
    checks.append(probe("sink", sink_url) or Check("sink", False, f"nothing answers on {sink_url}"))
    return checks


def api_checks(state: Any) -> list[Check]:
    kafka_ok, kafka_detail = state.ingest.kafka_ready(timeout=2.0)
    ch_ok, ch_detail = state.queries.ping()
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db = Check("SQL store", True, state.engine.dialect.name)
    except Exception as exc:
        db = Check("SQL store", False, str(exc)[:300])
    return [Check("Kafka", kafka_ok, str(kafka_detail)), Check("ClickHouse", ch_ok, str(ch_detail)), db]


@router.get("/health")
async def health_page(request: Request, user: User) -> Response:
    state = request.app.state
    api = await run_in_threadpool(api_checks, state)
    pipeline = await run_in_threadpool(pipeline_checks, state.settings)
    return page(request, "health.html", user, api=api, pipeline=pipeline)
