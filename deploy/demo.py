"""`meterstream demo`: broker, processor, sink, a generated workload, period close and a summary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from deploy.ports import free_port
from schemas.settings import Settings, settings_from_env


def last_month() -> str:
    first = datetime.now(UTC).replace(day=1)
    prev = first - timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def say(msg: str, tag: str = "demo") -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


class Pipeline:
    """The processor and the sink as separate OS processes, as in production."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", {"processor": "process", "sink": "sink"}[name]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def scrape(port: int) -> dict[str, float]:
    """Prometheus samples of a process, keyed `name{label=value,...}`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def demo_environment(settings: Settings, out: Path, run_id: str) -> dict[str, str]:
    """Fresh topics and a fresh ClickHouse store or database for this run; the broker is shared."""
    env = dict(os.environ)
    env["METERSTREAM_TOPIC_PREFIX"] = f"demo-{run_id}."
    env["METERSTREAM_HOME"] = str(settings.home.resolve())
    env["METERSTREAM_PROCESSOR_METRICS_PORT"] = str(free_port())
    env["METERSTREAM_SINK_METRICS_PORT"] = str(free_port())
    if settings.clickhouse_url:
        env["METERSTREAM_CLICKHOUSE_DATABASE"] = f"meterstream_demo_{run_id}"
    else:
        store = out.resolve() / "clickhouse"
        shutil.rmtree(store, ignore_errors=True)
        env["METERSTREAM_CLICKHOUSE_URL"] = f"chdb://{store}"
    return env


def wait_drained(
    settings: Settings, pipeline: Pipeline, processor_group: str, produced: int, timeout: float = 1800
) -> None:
    from ingest.lag import LagProbe
    from ingest.topics import Topics

    topics = Topics.from_settings(settings)
    probe = LagProbe(settings)
    deadline = time.monotonic() + timeout
    calm = 0
    try:
        while time.monotonic() < deadline:
            pipeline.check_alive()
            p_lag = probe.group_lag(processor_group, [topics.usage])
            s_lag = probe.group_lag(settings.topic("meterstream-sink"), [topics.rated, topics.dead_letters])
            if p_lag is not None and s_lag is not None:
                print(
                    f"\r[demo] processed {produced - p_lag}/{produced}, sink behind by {s_lag}      ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            calm = calm + 1 if p_lag == 0 and s_lag == 0 else 0
            if calm >= 2:
                print(file=sys.stderr)
                return
            time.sleep(0.5)
        raise TimeoutError("the pipeline did not drain in time")
    finally:
        probe.close()


def run_demo(settings: Settings, events: int, out: Path, period: str | None) -> int:
    from aggregation.client import connect
    from deploy import kafka_local
    from ingest.producer import make_producer, produce_all
    from ingest.topics import ensure_topics
    from ingest.workload import Truth, WorkloadSpec, generate
    from invoice_emitter.close import close_period
    from rating.catalog import load_catalog
    from rating.processor.runner import app_id

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
    for n, rec in enumerate(records, 1):
        if n % 20_000 == 0 or n == total:
            print(f"\r[demo] produced {n}/{total}", end="" if n < total else "\n", file=sys.stderr, flush=True)
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
