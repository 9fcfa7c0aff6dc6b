"""The sink's ClickHouse HTTP front (aggregation/http_front.py) as a process of its own, for the tests that query it
over HTTP (tests/aggregation/test_http_front*.py, tests/deploy/test_dashboards.py), and the one table of the entity
store it reads to sign tenants in."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meterstream.deploy.ports import free_port
from meterstream.entities.db import make_engine, session_factory
from meterstream.entities.keys import ApiKey, KeyRepository


@contextmanager
def running_front(store: Path, env: dict[str, str], timeout: float = 60.0) -> Iterator[int]:
    """`python -m meterstream.aggregation.http_front` over `store` on a free port with environment `env`; yields the
    port once /ping answers (if the process exits first, its output is the failure). Terminated afterwards; when
    the body raised nothing, it must have exited with 0."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterstream.aggregation.http_front", "--store", str(store), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "front did not answer"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 0, f"the front exited with {code}"


def key_store(url: str) -> KeyRepository:
    """API keys in a store at `url` that holds just their table (the one table the front reads)."""
    engine = make_engine(url=url)
    ApiKey.__table__.create(engine)
    return KeyRepository(session_factory(engine))
