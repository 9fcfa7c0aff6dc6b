"""Prometheus metrics of the stream processor."""

import time

from prometheus_client import Counter, Gauge, Histogram

from meterstream.health import Clock, StallWatch

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
MISROUTED = Counter(
    "meterstream_processor_misrouted_customers",
    "Customers whose usage came on another partition than their key's (tenant/customer, librdkafka's CRC-32): "
    "their running totals and wallet split between partitions",
)
BALANCE_SKIPS = Counter(
    "meterstream_processor_balance_skips_total",
    "A customer's wallet debit or decisions skipped for a batch after an error (logged; processor/balances.py)",
    ["what"],
)
LAG = Gauge("meterstream_processor_consumer_lag", "Messages behind the partition end", ["partition"])
STEP_SECONDS = Histogram(
    "meterstream_processor_step_seconds",
    "Time to process one message",
    buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
)


class ProcessorStatus:
    """Progress shared by both engines; `health` is what /healthz reports.

    Lag is measured from the start, before the first batch is committed: the engine reports each
    partition's committed position (`committed`) and the broker's watermarks (`watermarks`), so a
    processor stuck on its very first batch, with work waiting, turns /healthz red after `stall_seconds`.
    """

    def __init__(self, stall_seconds: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.events = 0
        self.watch = StallWatch(stall_seconds, clock)
        self.positions: dict[int, int | None] = {}  # per partition, the next offset to commit (None: unknown)

    def processed(self, n: int) -> None:
        self.events += n
        self.watch.progressed()

    def set_lag(self, partition: int, lag: int) -> None:
        LAG.labels(str(partition)).set(max(lag, 0))
        self.watch.set_lag(partition, lag)

    def committed(self, partition: int, next_offset: int | None) -> None:
        """The partition's committed position (at assignment, then after each commit)."""
        self.positions[partition] = next_offset

    def watermarks(self, partition: int, low: int, high: int) -> None:
        """The partition's watermarks (as last seen by the consumer): lag = high - committed position
        (the low watermark when nothing was committed yet). Negative values mean unknown: ignored."""
        if high < 0:
            return
        start = self.positions.get(partition)
        if start is None or start < 0:
            start = max(low, 0)
        self.set_lag(partition, high - start)

    def health(self) -> tuple[bool, dict]:
        """Degraded when work is waiting but nothing moved for `stall_seconds` (a stalled consumer is not healthy)."""
        idle = self.watch.idle_seconds()
        return not self.watch.stalled(), {
            "events": self.events,
            "lag": self.watch.behind(),
            "seconds_stalled": round(idle, 1),
        }
