"""Stall detection shared by the processor and the sink: work is waiting and nothing moved for a while.

A stage is stalled when its consumer lag (messages not yet committed) is above zero and it has made no
progress (a committed batch) for `stall_seconds`. The clock starts when the watch is made, so a stage
that never gets its first batch through turns red too; and it restarts when work begins to wait after
an idle spell, so the first message after an hour of quiet is not reported as an hour-long stall.
"""

from __future__ import annotations

import faulthandler
import logging
import os
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


# A stage that the watchdog ends exits with this status (EX_TEMPFAIL): the supervisor
# (`deploy.pipeline.Pipeline.check_alive`, used by `up`, the demo and the chaos run) starts it again.
STALLED_EXIT_CODE = 75


class StageStalled(RuntimeError):
    """Raised by `Watchdog.check`: the stage must exit with STALLED_EXIT_CODE and be started again."""


class Watchdog:
    """Ends a stage that stays stalled (work waiting, no progress) for `seconds` while Kafka answers.

    `/healthz` already turns red after `StallWatch.stall_seconds`; this is the next step: a stalled stage
    whose broker is reachable is not waiting for anything it can get, so it gives up and exits (its state
    is committed and its input position with it, exactly as after a SIGKILL) to be started fresh, with new
    Kafka clients, by its supervisor. `reachable()` is asked only once the stall lasts `seconds`: while
    the broker is down the stall is explained, and a restarted stage could not start anyway. `excused()`
    lets a stage name another explanation (the sink while ClickHouse inserts fail). `seconds` <= 0: off.
    """

    def __init__(
        self,
        watch: StallWatch,
        seconds: float,
        reachable: Callable[[], bool] = lambda: True,
        excused: Callable[[], bool] = lambda: False,
        every: float = 1.0,
    ) -> None:
        self.watch = watch
        self.seconds = seconds
        self.reachable = reachable
        self.excused = excused
        self.every = every  # how often `check` looks (it is called once per loop iteration)
        self._next = float("-inf")

    def check(self) -> None:
        if self.seconds <= 0:
            return
        now = self.watch.clock()
        if now < self._next:
            return
        self._next = now + self.every
        idle = self.watch.idle_seconds()
        if idle > self.seconds and not self.excused() and self.reachable():
            raise StageStalled(
                f"no progress for {idle:.0f} s with {self.watch.behind()} messages waiting while Kafka answers"
            )

    def run_in_thread(self, on_stall: Callable[[StageStalled], None], name: str = "watchdog") -> threading.Thread:
        """Check every `every` seconds on a daemon thread of its own, so a stage blocked anywhere (a wait
        for acknowledgements, a client call that never returns) is still seen; `on_stall` ends the process."""

        def loop() -> None:
            while True:
                time.sleep(self.every)
                try:
                    self.check()
                except StageStalled as exc:
                    on_stall(exc)
                    return

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        return thread


def exit_stalled(log: logging.Logger) -> Callable[[StageStalled], None]:
    """The watchdog's end of a process: log why and exit with STALLED_EXIT_CODE at once, without closing
    Kafka clients (one of them may be what hangs). What the stage committed is durable, as after a SIGKILL."""

    def end(exc: StageStalled) -> None:
        log.error("stalled: %s; exiting with status %d to be restarted", exc, STALLED_EXIT_CODE)
        logging.shutdown()
        faulthandler.dump_traceback(all_threads=True)  # where each thread was: the stall's cause, in the log
        os._exit(STALLED_EXIT_CODE)

    return end


def kafka_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when the broker answers a metadata request (on a connection of its own)."""
    from confluent_kafka import Consumer, KafkaException

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "meterstream-watchdog-probe", "log_level": 0})
    try:
        return bool(probe.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False
    finally:
        probe.close()
