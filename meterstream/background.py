"""One daemon thread running an object's `run` loop until `stop()`: the start/stop shared by the background readers.

The loop owns `self._stop` (a `threading.Event`): `run` must return soon after it is set. `start` is idempotent
(a second call while the thread lives starts nothing) and clears the event, so a stopped loop can be started again.
`stop` sets the event and joins the thread for at most `timeout` seconds; the thread is forgotten once it has ended.
"""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    """Mix-in: call `_init_loop()` in `__init__`, define `run()`; `start()` / `stop()` come from here."""

    thread_name = "background-loop"
    stop_timeout = 5.0

    def _init_loop(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def _start_loop(self) -> bool:
        """Start the thread unless one is running; True when this call started it."""
        if self._thread is not None:
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return True

    def _stop_loop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.stop_timeout if timeout is None else timeout)
            if not self._thread.is_alive():
                self._thread = None

    def start(self) -> Self:
        self._start_loop()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop_loop(timeout)


__all__ = ["BackgroundLoop"]
