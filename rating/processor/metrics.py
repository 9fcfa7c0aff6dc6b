"""Prometheus metrics of the stream processor."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("meterstream_processor_events_in_total", "Messages read from the usage topic")
OUTCOMES = Counter(
    "meterstream_processor_events_total", "Messages by outcome", ["outcome"]
)  # rated | replayed | duplicate | dead_letter
DEAD_LETTERS = Counter(
    "meterstream_processor_dead_letters_total", "Dead-lettered messages", ["stage", "field"]
)
LAG = Gauge("meterstream_processor_consumer_lag", "Messages behind the partition end", ["partition"])
STEP_SECONDS = Histogram(
    "meterstream_processor_step_seconds",
    "Time to process one message",
    buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
)
