"""GET /healthz (the process is alive), GET /readyz (Kafka answers a metadata request; ClickHouse and the
SQL store reported too), GET /metrics (Prometheus)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from meterstream.api.models import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The entity relay or webhook dispatcher here is stalled"}},
    summary="The API process is alive, its entity relay and webhook dispatcher move",
)
async def healthz(request: Request) -> Response:
    """Red (503) when the entity outbox relay this process runs has changes waiting and relayed none for
    `METERSTREAM_STALL_SECONDS` (entities/relay.py), or its webhook dispatcher has work waiting and made no
    progress for as long (webhooks/dispatcher.py); green otherwise."""
    checks: dict = {}
    ok = True
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        ok, detail = relay.health()
        checks["entity_relay"] = {"ok": ok, "detail": orjson.dumps(detail).decode()}
    dispatcher = getattr(request.app.state, "webhooks", None)  # webhooks/dispatcher.py: stalled = backlog, no progress
    if dispatcher is not None:
        hooks_ok, detail = dispatcher.health()
        checks["webhooks"] = {"ok": hooks_ok, "detail": orjson.dumps(detail).decode()}
        ok = ok and hooks_ok
    alerts = getattr(request.app.state, "notifications", None)  # webhooks/notifications_relay.py
    if alerts is not None:
        alerts_ok, detail = alerts.health()
        checks["notifications"] = {"ok": alerts_ok, "detail": orjson.dumps(detail).decode()}
        ok = ok and alerts_ok
    body = orjson.dumps({"status": "ok" if ok else "unavailable", "checks": checks})
    return Response(body, 200 if ok else 503, media_type="application/json")


def _readiness(request: Request) -> tuple[bool, dict]:
    state = request.app.state
    kafka_ok, kafka_detail = state.ingest.kafka_ready(timeout=2.0)
    ch_ok, ch_detail = state.queries.ping()
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db_ok, db_detail = True, state.engine.dialect.name
    except Exception as exc:
        db_ok, db_detail = False, str(exc)[:300]
    checks = {
        "kafka": {"ok": kafka_ok, "detail": kafka_detail},
        "clickhouse": {"ok": ch_ok, "detail": ch_detail},
        "database": {"ok": db_ok, "detail": db_detail},
    }
    # Ready = can take events (Kafka and the key store); ClickHouse serves reads only, so it is reported, not required.
    return kafka_ok and db_ok, checks


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Kafka or the key store is not reachable"}},
    summary="Ready to take events: Kafka reachable (ClickHouse reported)",
)
async def readyz(request: Request) -> Response:
    ok, checks = await run_in_threadpool(_readiness, request)
    body = orjson.dumps({"status": "ok" if ok else "unavailable", "checks": checks})
    return Response(body, 200 if ok else 503, media_type="application/json")


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
