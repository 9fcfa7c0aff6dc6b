"""Entity writes are on the `entities` topic before the API answers them (issue #14: rating by the plan in effect).

After a successful write request (POST, PUT, PATCH, DELETE) that is not event ingestion, the answer waits
until the entity outbox relay of this process has put every change committed so far on the topic and Kafka
acknowledged it (`OutboxRelay.flush`, bounded). Processors read that topic to its end before each batch
(processor/runner.py), so an event produced after a change was answered is rated with it, whichever topic a
processor reads first. Event ingestion paths and reads pass straight through (no cost on the hot path). If
the relay cannot flush in time (Kafka down), the answer goes out anyway: the write is committed, the relay
loop keeps retrying, and the API's /healthz shows the stall. See docs/entities-stream.md.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
FLUSH_SECONDS = 5.0


class RelayFlushMiddleware:
    """ASGI middleware: flush the app's entity relay (`app.state.relay`) before a successful write's answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in _READS or "/events" in scope["path"]:
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        relay = getattr(getattr(app, "state", None), "relay", None)
        if relay is None:
            await self.app(scope, receive, send)
            return

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                await run_in_threadpool(relay.flush, FLUSH_SECONDS)
            await send(message)

        await self.app(scope, receive, _send)
