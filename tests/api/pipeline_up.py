"""`meterstream up` on free ports for the API tests that need the real pipeline (its broker, the processor, the
sink, the API with its balance feed), and a JSON call with a bearer key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from meterstream.deploy.ports import free_port, free_port_pair


def call(url: str, key: str, method: str = "GET", body: object = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


@dataclass(frozen=True)
class Up:
    base: str  # the API's URL
    key: str  # an admin key of tenant cloudco
    err: Path  # the stderr of `meterstream up`


@contextmanager
def meterstream_up(tmp_path: Path) -> Iterator[Up]:
    """Runs `meterstream up` (home under tmp_path) until it says it is up; stops it (SIGINT, then kill) after."""
    home = tmp_path / "home"
    ports = {"METERSTREAM_KAFKA_PORT": free_port_pair(), "METERSTREAM_PROCESSOR_METRICS_PORT": free_port(),
             "METERSTREAM_SINK_METRICS_PORT": free_port(), "METERSTREAM_CLICKHOUSE_HTTP_PORT": free_port()}  # fmt: skip
    api = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({k: str(v) for k, v in ports.items()}, METERSTREAM_HOME=str(home), METERSTREAM_KAFKA_HEAP="512m")
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen([sys.executable, "-m", "meterstream.deploy.cli", "up", "--port", str(api)], env=env,
                              stdout=o, stderr=e, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "meterstream is up" not in out.read_text():
            assert up.poll() is None and time.monotonic() < deadline, f"up did not come up:\n{err.read_text()}"
            time.sleep(0.5)
        cli = [sys.executable, "-m", "meterstream.deploy.cli"]
        key = subprocess.run([*cli, "keys", "create", "--tenant", "cloudco", "--role", "admin"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]  # fmt: skip
        yield Up(f"http://127.0.0.1:{api}", key, err)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()


def post_storage_event(up: Up, i: int) -> float:
    """Event `w-<i>` of customer acme: 10,000 storage GB-hours now (1.37 USD on the demo catalog's cloud-standard);
    the monotonic time once the API accepted it."""
    event = {"id": f"w-{i}", "customer": "acme", "meter": "storage_gb_hours", "quantity": "10000",
             "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}  # fmt: skip
    call(f"{up.base}/v1/events", up.key, "POST", [event])
    return time.monotonic()
