"""A real uvicorn server for the tests that drive the app through a client over HTTP (the OpenMeter and Lago SDKs,
the console's browser): in a thread of the test process, on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from meterstream.deploy.ports import free_port


@contextmanager
def serve(app: FastAPI, timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:<free port> (RuntimeError when it has not started within `timeout` seconds); yields
    the base URL; stops the server afterwards."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
