"""The processor's watchdog and its supervisor (issue #12: a processor stuck after a broker restart).

The reported hang: after a broker restart a processor kept running with one batch (333 messages) processed but
never committed — consume returned nothing, the lag stayed, /healthz went red, and nothing restarted it.
Here a real `meterstream process` child on the session broker is put in that state on purpose: its outputs
are produced but their acknowledgements are dropped (tests/processor/watchdog_fault/sitecustomize.py, a
test-only fault loaded through PYTHONPATH). Its watchdog must end it with status 75 once it is stalled for
METERSTREAM_WATCHDOG_SECONDS while Kafka answers, and `Pipeline.check_alive` (the supervisor of `up`, the
demo and the chaos run) must start it again; the new process resumes from its committed state and drains the
stream, every message counted once. Before the watchdog the child stayed stuck and the lag never drained.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from meterstream.deploy.ports import free_port
from meterstream.health import STALLED_EXIT_CODE, StageStalled, StallWatch, Watchdog
from meterstream.schemas.settings import Settings, settings_from_env

FAULT = Path(__file__).resolve().parent / "watchdog_fault"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_watchdog_fires_only_on_a_stall_longer_than_its_time_while_kafka_answers() -> None:
    clock = FakeClock()
    watch = StallWatch(stall_seconds=3, clock=clock)
    reachable = {"ok": True}
    dog = Watchdog(watch, seconds=10, reachable=lambda: reachable["ok"], every=0)
    watch.set_lag(0, 5)  # work waits from t=1000
    clock.now += 10
    dog.check()  # exactly 10 s: not yet
    clock.now += 0.5
    reachable["ok"] = False
    dog.check()  # 10.5 s, but the broker does not answer: the stall is explained
    reachable["ok"] = True
    with pytest.raises(StageStalled, match="no progress for 10 s with 5 messages waiting"):
        dog.check()
    watch.progressed()  # a committed batch restarts the count
    clock.now += 9
    dog.check()
    watch.set_lag(0, 0)  # nothing waits: never a stall, however long
    clock.now += 100
    dog.check()


def test_an_excused_stall_or_a_watchdog_set_to_zero_never_fires() -> None:
    clock = FakeClock()
    watch = StallWatch(stall_seconds=3, clock=clock)
    watch.set_lag(0, 1)
    clock.now += 60
    Watchdog(watch, seconds=0, every=0).check()
    Watchdog(watch, seconds=10, excused=lambda: True, every=0).check()  # e.g. the sink while inserts fail
    with pytest.raises(StageStalled):
        Watchdog(watch, seconds=10, every=0).check()


def _env(kafka_settings: Settings, home: Path, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({
        "METERSTREAM_HOME": str(home), "METERSTREAM_KAFKA_PORT": str(kafka_settings.kafka_port),
        "METERSTREAM_TOPIC_PREFIX": prefix, "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
        "METERSTREAM_SINK_METRICS_PORT": str(free_port()), "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(free_port()),
        "METERSTREAM_CLICKHOUSE_URL": f"chdb://{home / 'clickhouse'}",
        "METERSTREAM_STALL_SECONDS": "2", "METERSTREAM_WATCHDOG_SECONDS": "6",
        "METERSTREAM_TEST_DROP_ACKS": str(home / "drop-acks"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(FAULT), os.environ.get("PYTHONPATH", "")) if p),
    })  # fmt: skip
    return env


def _wait_processed(run: Settings, pipeline, group: str, timeout: float) -> int | None:
    from meterstream.ingest.lag import LagProbe

    probe = LagProbe(run)
    deadline = time.monotonic() + timeout
    lag = None
    try:
        while time.monotonic() < deadline:
            pipeline.check_alive()  # the supervisor: restarts a process its watchdog ended
            lag = probe.group_lag(group, [run.topic("usage-events")])
            if lag == 0:
                return 0
            time.sleep(0.3)
    finally:
        probe.close()
    return lag


@pytest.mark.kafka
def test_a_stuck_processor_is_ended_by_its_watchdog_restarted_and_drains(kafka_settings: Settings,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    from meterstream.deploy.pipeline import Pipeline
    from meterstream.ingest.producer import make_producer, produce_all
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ingest.workload import Truth, WorkloadSpec, generate
    from meterstream.processor.runner import app_id, committed_counts

    home = tmp_path / "home"
    env = _env(kafka_settings, home, f"wd{int(time.time() * 1000)}.")
    run = settings_from_env(env)
    ensure_topics(run)
    truth = Truth()
    records = list(generate(WorkloadSpec(events=3_000, period="2026-11", run_id="wd", seed=5), truth))
    first, second = records[:2_000], records[2_000:]
    pipeline = Pipeline(env, tmp_path / "logs")
    producer = make_producer(run)
    try:
        pipeline.start("processor")
        produce_all(producer, run.topic("usage-events"), first)
        assert _wait_processed(run, pipeline, app_id(run), 120) == 0
        (home / "drop-acks").touch()  # from now on the running processor never sees its outputs acknowledged
        produce_all(producer, run.topic("usage-events"), second)
        lag = _wait_processed(run, pipeline, app_id(run), 90)
        claimed = [p.name for p in home.glob("drop-acks.claimed-*")]
        assert claimed, "the fault was not triggered"
        assert lag == 0, f"the stuck processor was not restarted: {lag} messages still waiting"
        assert pipeline.restarts.get("processor") == 1
    finally:
        pipeline.stop_all()
    log = (tmp_path / "logs" / "processor.log").read_text(errors="replace")
    assert f"exiting with status {STALLED_EXIT_CODE} to be restarted" in log
    counts = committed_counts(run)  # every message once: rated + duplicates + dead letters = produced
    assert counts["rated"] == truth.accepted
    assert counts["duplicate"] == truth.duplicates
    assert sum(counts.values()) == truth.produced == 3_000
