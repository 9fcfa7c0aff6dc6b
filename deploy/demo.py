"""`meterstream demo`: broker, processor, sink, a generated workload, period close and a summary."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from meterstream.deploy.pipeline import Pipeline, demo_environment, say, scrape, wait_drained
from meterstream.schemas.settings import Settings, settings_from_env


def last_month() -> str:
    first = datetime.now(UTC).replace(day=1)
    prev = first - timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def run_demo(settings: Settings, events: int, out: Path, period: str | None) -> int:
    from meterstream.aggregation.client import connect
    from meterstream.deploy import kafka_local
    from meterstream.ingest.producer import make_producer, produce_all
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ingest.workload import Truth, WorkloadSpec, generate
    from meterstream.invoice_emitter.close import close_period
    from meterstream.processor.runner import app_id
    from meterstream.rating.catalog import load_catalog

    period = period or last_month()
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    kafka_local.start(settings)
    env = demo_environment(settings, out, run_id)
    run = settings_from_env(env)
    catalog = load_catalog(run.catalog)
    ensure_topics(run)
    pipeline = Pipeline(env, out / "logs")
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        truth = Truth()
        spec = WorkloadSpec(events=events, period=period, run_id=run_id)
        say(f"producing {events} events for {period} (3% duplicates, 0.5% malformed) to {run.topic('usage-events')}")
        t0 = time.monotonic()
        produce_all(make_producer(run), run.topic("usage-events"), _with_progress(generate(spec, truth), events))
        say(f"produced in {time.monotonic() - t0:.1f}s; waiting for the processors to drain")
        wait_drained(run, pipeline, app_id(run), truth.produced)
        t_pipe = time.monotonic() - t0
        metrics = scrape(run.processor_metrics_port)
        pipeline.stop("processor")
        pipeline.stop("sink")
        client = connect(run)
        say(f"closing period {period}")
        result = close_period(
            client,
            run.clickhouse_database,
            catalog,
            period,
            out / "invoices",
            make_producer(run),
            run.topic("invoices"),
        )
        print_summary(truth, metrics, result, client, run, out, t_pipe, time.monotonic() - t_start)
    finally:
        pipeline.stop_all()
    return 0


def _with_progress(records, total: int):
    """A progress bar of the events produced, on a terminal only (deploy/cli_common.progress)."""
    from meterstream.deploy.cli_common import progress

    with progress("[demo] producing events", total) as advance:
        for n, rec in enumerate(records, 1):
            if n % 20_000 == 0 or n == total:
                advance(n, total)
            yield rec


def print_summary(
    truth, metrics: dict[str, float], result, client, run: Settings, out: Path, t_pipe: float, t_all: float
) -> None:
    def m(outcome: str) -> int:
        return int(metrics.get(f"meterstream_processor_events_total{{outcome={outcome}}}", 0))

    db = run.clickhouse_database
    streamed = dict(
        client.query(f"SELECT currency, sum(amount) FROM {db}.rated_usage FINAL GROUP BY currency").result_rows
    )
    rows = client.query(f"SELECT count() FROM {db}.rated_usage FINAL").result_rows[0][0]
    dl = client.query(f"SELECT count() FROM {db}.dead_letters FINAL").result_rows[0][0]
    events_in = int(metrics.get("meterstream_processor_events_in_total", 0))
    top = sorted(result.invoices, key=lambda d: Decimal(d["total"]), reverse=True)[:5]
    stored = {
        (t, c, mtr): q
        for t, c, mtr, q in client.query(
            f"SELECT tenant, customer, meter, sum(quantity) FROM {db}.rated_usage FINAL GROUP BY ALL"
        ).result_rows
    }
    mismatched = sum(1 for key in set(truth.quantities) | set(stored) if truth.quantities.get(key) != stored.get(key))
    totals = result.totals_by_currency
    line = "─" * 64
    print(line)
    print(f" Meterstream demo — period {result.period}")
    print(line)
    print(f" {'events in':<34}{events_in:>14,}")
    print(f" {'duplicates dropped':<34}{m('duplicate'):>14,}   (generated {truth.duplicates:,})")
    print(f" {'dead-lettered':<34}{m('dead_letter'):>14,}   (generated {truth.malformed + truth.unratable:,})")
    print(f" {'rated events (in ClickHouse)':<34}{rows:>14,}   (expected {truth.accepted:,})")
    print(f" {'dead letters (in ClickHouse)':<34}{dl:>14,}")
    for cur in sorted(streamed):
        print(f" {'rated amount, streaming ' + cur:<34}{streamed[cur]:>14.2f}")
    for cur in sorted(totals):
        print(f" {'invoiced total ' + cur:<34}{totals[cur]:>14}")
    print(f" {'invoices written':<34}{len(result.invoices):>14,}   ({out / 'invoices' / result.period})")
    print(f" {'quantities != generated truth':<34}{mismatched:>14}")
    print(f" {'lines != streamed amount':<34}{len(result.unreconciled):>14}")
    print(f" {'pipeline time (produce→drained)':<34}{t_pipe:>13.1f}s   ({truth.produced / t_pipe:,.0f} events/s)")
    print(f" {'demo wall time':<34}{t_all:>13.1f}s")
    print(line)
    print(" top customers")
    for d in top:
        print(f"   {d['tenant'] + '/' + d['customer']:<32}{d['currency']:>5} {d['total']:>14}")
    print(line)
