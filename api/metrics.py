"""Prometheus metrics of the API (module-level: one set per process) and the ASGI middleware that fills them."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

REQUESTS = Counter("meterstream_api_requests_total", "HTTP requests answered", ["method", "route", "status"])
EVENTS = Counter("meterstream_api_events_total", "Events submitted through the API, by outcome", ["status"])
LATENCY = Histogram(
    "meterstream_api_request_seconds",
    "Request latency (until the response started)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def count_events(results: list[Any]) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    for status, n in counts.items():
        EVENTS.labels(status).inc(n)


class MetricsMiddleware:
    """Counts requests and observes latency by route template (not raw path: bounded label values)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                REQUESTS.labels(scope["method"], path, str(status[0])).inc()
                LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, _send)
