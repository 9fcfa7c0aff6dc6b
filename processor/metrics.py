"""Prometheus metrics of the stream processor."""

import time

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("meterstream_processor_events_in_total", "Messages read from the usage topic")
OUTCOMES = Counter(
    "meterstream_processor_events_total", "Messages by outcome", ["outcome"]
)  # rated | replayed | duplicate | dead_letter
DEAD_LETTERS = Counter("meterstream_processor_dead_letters_total", "Dead-lettered messages", ["stage", "field"])
COMMITTED = Gauge(
    "meterstream_processor_committed_events",
    "Messages by outcome, durable across restarts (committed with the state)",
    ["outcome"],
)
DEDUP_PURGED = Counter("meterstream_processor_dedup_purged_total", "Event ids forgotten after the dedup window")
LAG = Gauge("meterstream_processor_consumer_lag", "Messages behind the partition end", ["partition"])
STEP_SECONDS = Histogram(
    "meterstream_processor_step_seconds",
    "Time to process one message",
    buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
)


class ProcessorStatus:
    """Progress shared by both engines; `health` is what /healthz reports."""

    STALL_SECONDS = 30.0

    def __init__(self) -> None:
        self.events = 0
        self.last_event = 0.0
        self.lag: dict[int, int] = {}

    def processed(self, n: int) -> None:
        self.events += n
        self.last_event = time.time()

    def set_lag(self, partition: int, lag: int) -> None:
        LAG.labels(str(partition)).set(lag)
        self.lag[partition] = lag

    def health(self) -> tuple[bool, dict]:
        """Degraded when work is waiting but nothing moved for 30 s (a stalled consumer is not healthy)."""
        idle = time.time() - self.last_event if self.last_event else None
        behind = sum(self.lag.values())
        stalled = behind > 0 and idle is not None and idle > self.STALL_SECONDS
        return not stalled, {
            "events": self.events,
            "lag": behind,
            "seconds_since_event": round(idle, 1) if idle is not None else None,
        }
