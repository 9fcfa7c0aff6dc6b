"""Stall detection shared by the processor and the sink: work is waiting and nothing moved for a while.

A stage is stalled when its consumer lag (messages not yet committed) is above zero and it has made no
progress (a committed batch) for `stall_seconds`. The clock starts when the watch is made, so a stage
that never gets its first batch through turns red too; and it restarts when work begins to wait after
an idle spell, so the first message after an hour of quiet is not reported as an hour-long stall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class StallWatch:
    """Lag per partition and the time of the last progress; `stalled()` answers /healthz."""

    def __init__(self, stall_seconds: float, clock: Clock = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self._lock = threading.Lock()  # written by the stage's thread, read by the HTTP thread
        self.lag: dict[Hashable, int] = {}
        self.last_progress = clock()
        self.waiting_since: float | None = None

    def progressed(self) -> None:
        """A batch was committed."""
        with self._lock:
            self.last_progress = self.clock()

    def set_lag(self, key: Hashable, lag: int) -> None:
        with self._lock:
            self.lag[key] = max(lag, 0)
            self._waiting(sum(self.lag.values()))

    def forget(self, key: Hashable) -> None:
        """A partition is no longer ours (revoked)."""
        with self._lock:
            self.lag.pop(key, None)
            self._waiting(sum(self.lag.values()))

    def _waiting(self, total: int) -> None:
        if total == 0:
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = self.clock()

    def behind(self) -> int:
        with self._lock:
            return sum(self.lag.values())

    def idle_seconds(self) -> float:
        """Seconds without progress while work waits (0 when nothing waits)."""
        with self._lock:
            if self.waiting_since is None:
                return 0.0
            return self.clock() - max(self.last_progress, self.waiting_since)

    def stalled(self) -> bool:
        return self.idle_seconds() > self.stall_seconds
