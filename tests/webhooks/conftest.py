"""Fixtures of the webhook tests: the entity tests' stores (every test taking `sf` runs on SQLite AND on
PostgreSQL, tests/entities/conftest.py), and a local HTTP receiver that records what it is sent."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_ENTITIES = Path(__file__).resolve().parents[1] / "entities"
sys.path.insert(0, str(_ENTITIES))  # invoice_helpers (the session PostgreSQL cluster is tests/conftest.py pg_cluster)

_spec = importlib.util.spec_from_file_location("webhooks_entities_fixtures", _ENTITIES / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

pg_store_url = _fixtures.pg_store_url
db_url = _fixtures.db_url
engine = _fixtures.engine
sf = _fixtures.sf


class Receiver:
    """An HTTP server on a free loopback port: records every POST (headers, body) and answers with the next
    status of `statuses` (the last one repeats)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = [200]
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                payload = b"ok" if code < 300 else b"receiver down for maintenance"
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/meterstream"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
