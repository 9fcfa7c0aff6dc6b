"""The local pipeline as OS processes (processor, sink; later the API), and how to wait for it to drain.

Used by `meterstream demo`, `meterstream up`, the chaos run, the benchmarks and the end-to-end tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from meterstream.deploy.ports import free_port
from meterstream.health import STALLED_EXIT_CODE
from meterstream.schemas.settings import Settings


def say(msg: str, tag: str = "demo") -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


class Pipeline:
    """The processor and the sink as separate OS processes, as in production."""

    def __init__(
        self, env: dict[str, str], logs: Path, own_process_groups: bool = False, instance_homes: Path | None = None
    ) -> None:
        self.env = env
        # each processor instance its own home (its own local stores, as on separate machines); None: shared
        self.instance_homes = instance_homes
        self.logs = logs
        self.own_process_groups = own_process_groups  # a terminal's Ctrl-C reaches only the orchestrator
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}  # by name: how often a stalled process was started again
        self._started_processors: dict[str, None] = {}  # in start order
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> subprocess.Popen:
        """Start `processor`, `sink` or `api`; `processor-N` is one more processor instance (`start_processor`)."""
        log = open(self.logs / f"{name}.log", "ab")
        command = {"processor": "process", "sink": "sink", "api": "serve"}[name.split("-")[0]]
        env = self.env
        if name.startswith("processor-"):  # its own ops port: the base one + N - 1
            env = {**env, "METERSTREAM_PROCESSOR_METRICS_PORT": str(self._processor_port(int(name.split("-")[1])))}
        if name.startswith("processor") and self.instance_homes is not None:
            env = {**env, "METERSTREAM_HOME": str(self.instance_home(name))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterstream.deploy.cli", command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
            process_group=0 if self.own_process_groups else None,
        )
        self.procs[name] = proc
        if name.startswith("processor"):
            self._started_processors.setdefault(name, None)
        return proc

    def _processor_port(self, n: int) -> int:
        base = int(self.env.get("METERSTREAM_PROCESSOR_METRICS_PORT") or Settings().processor_metrics_port)
        return base + n - 1

    def start_processor(self, n: int = 1) -> subprocess.Popen:
        """Processor instance n (1: `processor`, else `processor-n`, its ops port the base one + n - 1). The
        instances form one consumer group: each takes the partitions the group assigns it, a new one takes
        some over, a stopped one's move to the others, with their state from the changelog."""
        return self.start("processor" if n == 1 else f"processor-{n}")

    def instance_home(self, name: str) -> Path:
        assert self.instance_homes is not None
        return self.instance_homes / name

    def processors(self) -> list[str]:
        """The processor instances running (or started and not stopped)."""
        return [name for name in self.procs if name.split("-")[0] == "processor"]

    @property
    def started_processors(self) -> list[str]:
        """Every processor instance started so far, stopped or not."""
        return list(self._started_processors)

    def check_alive(self) -> None:
        """Supervise: a process its watchdog ended (status 75, `meterstream.health.STALLED_EXIT_CODE`: stalled
        with work waiting while Kafka answered) is started again, fresh, from its committed state; any other
        exit raises with the end of its log."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            if proc.returncode == STALLED_EXIT_CODE:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                say(f"{name} stalled and exited (status {STALLED_EXIT_CODE}); starting it again "
                    f"(restart {self.restarts[name]})", tag="supervisor")  # fmt: skip
                self.start(name)
                continue
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
    env["METERSTREAM_CLICKHOUSE_HTTP_PORT"] = str(free_port())
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
    from meterstream.ingest.lag import LagProbe
    from meterstream.ingest.topics import Topics

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
