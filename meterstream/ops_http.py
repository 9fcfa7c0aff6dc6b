"""/metrics (Prometheus) and /healthz for every long-running process, on one small HTTP thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

HealthCheck = Callable[[], tuple[bool, dict]]


def serve_ops(
    port: int, health: HealthCheck, host: str = "127.0.0.1", setting: str | None = None
) -> ThreadingHTTPServer:
    """Start the ops endpoint in a daemon thread; port 0 picks a free one (see `server.server_port`). A port that
    cannot be had raises OSError naming the address and `setting` (the environment variable that moves it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                ok, detail = health()
                body = orjson.dumps({"status": "ok" if ok else "degraded", **detail})
                ctype, code = "application/json", 200 if ok else 503
            else:
                body, ctype, code = b"see /metrics and /healthz\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        hint = f" (another process has it: set {setting} to another port)" if setting else ""
        raise OSError(exc.errno, f"metrics and health endpoint {host}:{port}: {exc.strerror}{hint}") from None
    threading.Thread(target=server.serve_forever, name=f"ops-http-{port}", daemon=True).start()
    return server
