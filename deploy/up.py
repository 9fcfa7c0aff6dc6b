"""`meterstream up`: the whole local system in one foreground command, on the embedded default.

Order of start: the local Kafka broker (reused when one of this home already runs, or when
METERSTREAM_KAFKA_BOOTSTRAP names one), `meterstream init` (topics, SQL migrations, ClickHouse tables;
as a child process, so the embedded store is free again for the sink), then the processor, the sink
(which serves the embedded store's ClickHouse HTTP front) and the API (`meterstream serve`) as OS
processes in their own process groups, and a status table. Ctrl-C or SIGTERM stops them in order:
the API (no new events), the processor (commits its last batch), the sink (inserts what it holds),
then the broker, only if `up` started it. A child that exits on its own stops everything (exit 1).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from meterstream.deploy import kafka_local
from meterstream.deploy.pipeline import Pipeline
from meterstream.schemas.settings import Settings

STOP_ORDER = ("api", "processor", "sink")


class _Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM."""


def _say(msg: str) -> None:
    print(f"[up] {msg}", file=sys.stderr, flush=True)


def _answers(url: str) -> bool:
    """True when an HTTP endpoint answers at all (a 503 from /healthz still means the process runs)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _wait(what: str, ready: Callable[[], bool], pipeline: Pipeline, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        pipeline.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s (logs: {pipeline.logs})")
        time.sleep(0.3)


def busy_ports(settings: Settings, api_port: int, embedded: bool) -> list[str]:
    """The ports `up` will listen on that something else already holds (checked before anything starts)."""
    wanted = {
        "--port / METERSTREAM_API_PORT": (settings.api_host, api_port),
        "METERSTREAM_PROCESSOR_METRICS_PORT": (settings.ops_host, settings.processor_metrics_port),
        "METERSTREAM_SINK_METRICS_PORT": (settings.ops_host, settings.sink_metrics_port),
    }
    if embedded and settings.clickhouse_http_port:
        wanted["METERSTREAM_CLICKHOUSE_HTTP_PORT"] = (settings.clickhouse_http_host, settings.clickhouse_http_port)
    busy = []
    for name, (host, port) in wanted.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind (TIME_WAIT is no clash)
            try:
                s.bind((host, port))
            except OSError as exc:
                busy.append(f"{host}:{port} ({name}): {exc.strerror}")
    return busy


def up_environment(settings: Settings, api_port: int) -> dict[str, str]:
    """The children's environment: this process's, with the home resolved and the API port fixed."""
    env = dict(os.environ)
    env["METERSTREAM_HOME"] = str(settings.home.resolve())
    env["METERSTREAM_API_PORT"] = str(api_port)
    return env


def status_rows(
    settings: Settings, api_port: int, pipeline: Pipeline, broker: str, embedded: bool
) -> list[tuple[str, str]]:
    """(service, where it runs) of the status table, in its order."""
    ops = _loopback(settings.ops_host)
    api = f"http://{_loopback(settings.api_host)}:{api_port}"
    pid = {name: proc.pid for name, proc in pipeline.procs.items()}
    port = settings.clickhouse_http_port
    front = (f"http://{_loopback(settings.clickhouse_http_host)}:{port}  (tenants: user = tenant id, password = a "
             "read key, own rows only; `meterstream query` and the API: internal user `meterstream`)")  # fmt: skip
    processor_ops = f"http://{ops}:{settings.processor_metrics_port}"
    sink_ops = f"http://{ops}:{settings.sink_metrics_port}"
    return [
        ("API", f"{api}  (docs /docs, OpenAPI /openapi.json, metrics /metrics, health /healthz /readyz; "
                f"pid {pid.get('api')})"),
        ("console", f"{api}/console  (log in with a read or admin API key: `meterstream keys create`)"),
        ("OpenMeter API", f"{api}/compat/openmeter  (the OpenMeter SDK's endpoint)"),
        ("Lago API", f"{api}/compat/lago/  (the Lago client's api_url; the trailing slash matters)"),
        ("Kafka", broker),
        ("processor", f"pid {pid['processor']}, metrics {processor_ops}/metrics, health {processor_ops}/healthz"),
        ("sink", f"pid {pid['sink']}, metrics {sink_ops}/metrics, health {sink_ops}/healthz"),
        ("ClickHouse HTTP", front if port and embedded else "off (ClickHouse server, or port 0)"),
        ("data dir", str(settings.home.resolve())),
        ("logs", str(pipeline.logs)),
    ]  # fmt: skip


def status_table(settings: Settings, api_port: int, pipeline: Pipeline, broker: str, embedded: bool) -> str:
    rows = status_rows(settings, api_port, pipeline, broker, embedded)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def status_json(rows: list[tuple[str, str]]) -> str:
    """`up --json`: one line, {"status": "up", "services": [{"service", "where"}, ...]} (the table's rows)."""
    return json.dumps({"status": "up", "services": [{"service": k, "where": v} for k, v in rows]})


def run_up(settings: Settings, api_port: int | None = None, as_json: bool = False) -> int:
    from meterstream.aggregation.http_front import front_answers, store_path

    embedded = store_path(settings) is not None
    if not embedded:
        _say(f"ClickHouse server {settings.clickhouse_dsn.split('@')[-1]}: no embedded store, no HTTP front")
    api_port = api_port or settings.api_port
    busy = busy_ports(settings, api_port, embedded)
    if busy:
        _say("error: ports in use (set the variables named to free ports):\n  " + "\n  ".join(busy))
        return 1
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = up_environment(settings, api_port)
    pipeline = Pipeline(env, home / "logs", own_process_groups=True)
    from meterstream.deploy.billing_run import drafts_scheduler_for, scheduler_for

    try:  # billing runs on METERSTREAM_BILLING_SCHEDULE (deploy/billing_run.py), checked before anything starts
        billing = scheduler_for(env, home, pipeline.logs, _say)
        drafts = drafts_scheduler_for(env, pipeline.logs, _say)  # METERSTREAM_DRAFT_REFRESH_SECONDS
    except ValueError as exc:
        _say(f"error: {exc}")
        return 1

    def on_signal(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one stop at a time; it is bounded (see _shutdown)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started_broker = False
    code = 0
    try:
        started_broker = not settings.kafka_bootstrap and not kafka_local.status(settings).answering
        broker = kafka_local.start(settings)
        init = subprocess.run(
            [sys.executable, "-m", "meterstream.deploy.cli", "init"], env=env, capture_output=True, text=True
        )
        if init.returncode != 0:
            raise RuntimeError(f"meterstream init failed:\n{init.stdout}{init.stderr}")
        ops = _loopback(settings.ops_host)
        pipeline.start("processor")
        pipeline.start("sink")
        _wait("processor", lambda: _answers(f"http://{ops}:{settings.processor_metrics_port}/healthz"), pipeline)
        _wait("sink", lambda: _answers(f"http://{ops}:{settings.sink_metrics_port}/healthz"), pipeline)
        if settings.clickhouse_http_port and embedded:
            _wait("ClickHouse HTTP front", lambda: front_answers(settings), pipeline)
        pipeline.start("api")
        _wait("API", lambda: _answers(f"http://{_loopback(settings.api_host)}:{api_port}/readyz"), pipeline)
        where = f"{broker.bootstrap} ({'started by up' if started_broker else 'reused'})"
        if as_json:  # one line, once everything answers (what a script waits for)
            print(status_json(status_rows(settings, api_port, pipeline, where, embedded)), flush=True)
        else:
            table = status_table(settings, api_port, pipeline, where, embedded)
            print(f"meterstream is up (Ctrl-C stops it):\n{table}", flush=True)
        if billing is not None:  # a run now, then daily; each in a child process, logged to billing.log
            _say(f"billing runs: now and daily at {billing.schedule.hour:02d}:{billing.schedule.minute:02d} UTC "
                 f"(log {pipeline.logs / 'billing.log'}, metrics {billing.metrics_file})")  # fmt: skip
            billing.start()
        else:
            _say("billing runs: off (METERSTREAM_BILLING_SCHEDULE=off)")
        if drafts is not None:  # the open periods' drafts, kept current (invoice_emitter/drafts.py)
            _say(f"draft invoices: refreshed every {drafts.interval:g}s (log {pipeline.logs / 'drafts.log'})")
            drafts.start()
        while True:
            pipeline.check_alive()
            time.sleep(0.5)
    except _Stop as sig:
        _say(f"{sig}: stopping")
    except RuntimeError as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        if drafts is not None:
            drafts.stop()
        if billing is not None:
            billing.stop()  # before the sink it closes through
        _shutdown(settings, pipeline, started_broker)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def _shutdown(settings: Settings, pipeline: Pipeline, stop_broker: bool) -> None:
    for name in STOP_ORDER:
        if name in pipeline.procs:
            rc = pipeline.stop(name, timeout=30)  # SIGTERM, SIGKILL after 30 s
            how = "not running" if rc is None else f"exit {rc}" if rc >= 0 else signal.Signals(-rc).name
            _say(f"{name} stopped ({how})")
    if stop_broker:
        kafka_local.stop(settings)
        _say("broker stopped")
    _say(f"stopped; logs in {Path(pipeline.logs)}")
