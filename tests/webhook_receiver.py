"""A local HTTP receiver of webhooks for the tests (tests/webhooks, the Lago webhook tests): records every POST it is
sent (headers, body) and answers with the statuses it is told."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
