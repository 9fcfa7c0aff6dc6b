"""`meterstream demo`: broker, processor, sink, a generated workload, period close and a summary."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterstream.deploy.pipeline import Pipeline, demo_environment, say, scrape, wait_drained
from meterstream.schemas.settings import Settings, settings_from_env


def last_month() -> str:
    first = datetime.now(UTC).replace(day=1)
    prev = first - timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def run_demo(settings: Settings, events: int, out: Path, period: str | None, as_json: bool = False) -> int:
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
        summary = demo_summary(truth, metrics, result, client, run, out, t_pipe, time.monotonic() - t_start)
        print(json.dumps(summary, indent=2) if as_json else summary_text(summary))
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


def demo_summary(
    truth, metrics: dict[str, float], result, client, run: Settings, out: Path, t_pipe: float, t_all: float
) -> dict[str, Any]:
    """The demo's verdict: counts against the generated truth, amounts as exact decimal strings (`demo --json`)."""

    def m(outcome: str) -> int:
        return int(metrics.get(f"meterstream_processor_events_total{{outcome={outcome}}}", 0))

    db = run.clickhouse_database
    streamed = dict(
        client.query(f"SELECT currency, sum(amount) FROM {db}.rated_usage FINAL GROUP BY currency").result_rows
    )
    rows = client.query(f"SELECT count() FROM {db}.rated_usage FINAL").result_rows[0][0]
    dl = client.query(f"SELECT count() FROM {db}.dead_letters FINAL").result_rows[0][0]
    top = sorted(result.invoices, key=lambda d: Decimal(d["total"]), reverse=True)[:5]
    stored = {
        (t, c, mtr): q
        for t, c, mtr, q in client.query(
            f"SELECT tenant, customer, meter, sum(quantity) FROM {db}.rated_usage FINAL GROUP BY ALL"
        ).result_rows
    }
    mismatched = sum(1 for key in set(truth.quantities) | set(stored) if truth.quantities.get(key) != stored.get(key))
    return {
        "period": result.period,
        "events_in": int(metrics.get("meterstream_processor_events_in_total", 0)),
        "duplicates_dropped": m("duplicate"),
        "duplicates_generated": truth.duplicates,
        "dead_lettered": m("dead_letter"),
        "dead_letters_generated": truth.malformed + truth.unratable,
        "rated_events": int(rows),
        "rated_events_expected": truth.accepted,
        "dead_letters_in_clickhouse": int(dl),
        "streamed_amounts": {cur: str(streamed[cur]) for cur in sorted(streamed)},
        "invoiced_totals": {cur: str(t) for cur, t in sorted(result.totals_by_currency.items())},
        "invoices_written": len(result.invoices),
        "invoices_folder": str(out / "invoices" / result.period),
        "quantities_not_generated_truth": mismatched,
        "lines_not_streamed_amount": len(result.unreconciled),
        "pipeline_seconds": round(t_pipe, 1),
        "events_per_second": round(truth.produced / t_pipe),
        "wall_seconds": round(t_all, 1),
        "top_customers": [
            {"tenant": d["tenant"], "customer": d["customer"], "currency": d["currency"], "total": str(d["total"])}
            for d in top
        ],
    }


def summary_text(s: dict[str, Any]) -> str:
    """The demo's summary as the README shows it."""
    line = "─" * 64
    out = [line, f" Meterstream demo — period {s['period']}", line]
    out.append(f" {'events in':<34}{s['events_in']:>14,}")
    out.append(f" {'duplicates dropped':<34}{s['duplicates_dropped']:>14,}   (generated {s['duplicates_generated']:,})")
    out.append(f" {'dead-lettered':<34}{s['dead_lettered']:>14,}   (generated {s['dead_letters_generated']:,})")
    out.append(f" {'rated events (in ClickHouse)':<34}{s['rated_events']:>14,}   "
               f"(expected {s['rated_events_expected']:,})")  # fmt: skip
    out.append(f" {'dead letters (in ClickHouse)':<34}{s['dead_letters_in_clickhouse']:>14,}")
    for cur, amount in s["streamed_amounts"].items():
        out.append(f" {'rated amount, streaming ' + cur:<34}{Decimal(amount):>14.2f}")
    for cur, total in s["invoiced_totals"].items():
        out.append(f" {'invoiced total ' + cur:<34}{total:>14}")
    out.append(f" {'invoices written':<34}{s['invoices_written']:>14,}   ({s['invoices_folder']})")
    out.append(f" {'quantities != generated truth':<34}{s['quantities_not_generated_truth']:>14}")
    out.append(f" {'lines != streamed amount':<34}{s['lines_not_streamed_amount']:>14}")
    out.append(f" {'pipeline time (produce→drained)':<34}{s['pipeline_seconds']:>13.1f}s   "
               f"({s['events_per_second']:,} events/s)")  # fmt: skip
    out.append(f" {'demo wall time':<34}{s['wall_seconds']:>13.1f}s")
    out += [line, " top customers"]
    for d in s["top_customers"]:
        out.append(f"   {d['tenant'] + '/' + d['customer']:<32}{d['currency']:>5} {d['total']:>14}")
    out.append(line)
    return "\n".join(out)
