"""Where a close spends its time: wall and CPU seconds per named phase (`CloseResult.phases`).

`Phases()("ledger")` is a context manager that adds the wall-clock time (`time.perf_counter`) and this process's
CPU time (`time.process_time`: every thread of it, embedded ClickHouse's included; not the forked workers' nor the
file writer's) spent inside it to the phase's totals. Phases may nest (the close's `loop` holds `finalize`); a
phase entered several times (once per batch) adds up. A close measures a few phases per batch of invoices, not
per invoice: the timer's own cost (two clock reads each side) stays out of the figures that matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Wall and CPU seconds per phase name, in the order first entered."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = self.start(name)
        try:
            yield
        finally:
            self.stop(started)

    def start(self, name: str) -> tuple[str, float, float]:
        """The phase `name` starts now (for code a `with` block does not fit); `stop` the value returned."""
        return name, time.perf_counter(), time.process_time()

    def stop(self, started: tuple[str, float, float]) -> None:
        name, wall, cpu = started
        totals = self.spent.setdefault(name, [0.0, 0.0])
        totals[0] += time.perf_counter() - wall
        totals[1] += time.process_time() - cpu

    def as_dict(self) -> dict[str, tuple[float, float]]:
        """{phase: (wall seconds, CPU seconds of this process)}."""
        return {name: (wall, cpu) for name, (wall, cpu) in self.spent.items()}
