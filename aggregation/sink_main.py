"""The sink as a process: schema check, ops endpoint, SIGTERM -> flush, commit, exit."""

from __future__ import annotations

import logging
import signal
import threading

from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.http_front import serve_front
from meterstream.aggregation.sink import ClickHouseSink
from meterstream.health import Watchdog, exit_stalled, kafka_answers
from meterstream.ops_http import serve_ops
from meterstream.schemas.settings import Settings


def run_sink(settings: Settings) -> int:
    client = connect(settings)  # embedded chdb: this process owns the data path while it runs
    create_schema(client, settings.clickhouse_database, settings.clickhouse_cluster)
    sink = ClickHouseSink(settings, client)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_ops(
        settings.sink_metrics_port,
        host=settings.ops_host,
        health=sink.state.health,
        setting="METERSTREAM_SINK_METRICS_PORT",
    )
    front = serve_front(settings)  # embedded store: readers reach it through this process (ClickHouse HTTP)
    # stalled with lag while Kafka answers and inserts do not fail: exit with status 75 to be started again
    Watchdog(
        sink.state.watch,
        settings.watchdog_seconds,
        reachable=lambda: kafka_answers(settings.bootstrap),
        excused=lambda: sink.state.degraded,
    ).run_in_thread(exit_stalled(logging.getLogger("meterstream.sink")))
    try:
        sink.run(stop)
    finally:
        if front is not None:
            front.stop()
    return 0
