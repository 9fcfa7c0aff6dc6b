"""The plain-Python receiver of docs/webhooks.md, run as written (its secret and port filled in): it accepts the
dispatcher's signed POST (204: delivered) and refuses one signed with another secret (401: a failed attempt)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from invoice_helpers import TENANT, issued

from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import Settings
from meterstream.webhooks import deliveries, endpoints
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.signing import new_secret

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def receiver_code(secret: str, port: int) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (code,) = [b for b in blocks if "BaseHTTPRequestHandler" in b]
    assert '"whsec_..."' in code and '("0.0.0.0", 8000)' in code
    return code.replace('"whsec_..."', repr(secret)).replace('("0.0.0.0", 8000)', f'("127.0.0.1", {port})')


def test_the_documented_receiver_verifies_our_posts(sf, tmp_path: Path) -> None:
    secret, port = new_secret(), free_port()
    script = tmp_path / "receiver.py"
    script.write_text(receiver_code(secret, port))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the documented receiver did not start"
                time.sleep(0.05)
        good = endpoints.register(sf, TENANT, f"http://127.0.0.1:{port}/", event_types=["invoice.finalized"],
                                  secret=secret)  # fmt: skip
        bad = endpoints.register(sf, TENANT, f"http://127.0.0.1:{port}/", event_types=["invoice.finalized"])
        issued(sf, "inv-1")
        d = Dispatcher(Settings(), sf, kafka=False, now=lambda: datetime.now(UTC))
        try:
            d.run_once()
        finally:
            d.stop()
        by_endpoint = {x.endpoint_id: x for x in deliveries.list_deliveries(sf, TENANT)}
        assert (by_endpoint[good.endpoint_id].status, by_endpoint[good.endpoint_id].last_status) == ("delivered", 204)
        assert (by_endpoint[bad.endpoint_id].status, by_endpoint[bad.endpoint_id].last_status) == ("pending", 401)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert out.count("invoice.finalized") == 1 and out.startswith("msg_")
