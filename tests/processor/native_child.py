"""The native processor as a child process (to be killed mid-stream by the crash tests) and its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import Settings


def native_env(settings: Settings, catalog: Path, tmp_path: Path) -> dict[str, str]:
    """The child's METERSTREAM_* settings from the test's: its home, broker, prefix, partitions and catalog, a free
    metrics port and a SQLite entity store under tmp_path; no METERSTREAM_* variable of the caller leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({"METERSTREAM_HOME": str(settings.home), "METERSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
                "METERSTREAM_TOPIC_PREFIX": settings.topic_prefix, "METERSTREAM_PARTITIONS": str(settings.partitions),
                "METERSTREAM_CATALOG": str(catalog),
                "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
                "METERSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'entities.db'}"})  # fmt: skip
    return env


def start_native(env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """The processor in a child process; its warnings (assignments, restores) appended to `log` if given."""
    code = "from meterstream.processor.runner import run_native; from meterstream.schemas.settings import " \
           "Settings; run_native(Settings())"  # fmt: skip
    if log is None:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=out)


def wait_assigned(child: subprocess.Popen, log: Path, partitions: list[int], timeout: float = 120.0) -> None:
    """Until the child logged that it holds `partitions` (its stores opened and brought up to their changelog).

    A child started while a killed instance is still a member of the group gets its partitions only once the
    group gave up on the dead one (session timeout, 15 s): until then it has done nothing, whatever the
    topics show of the killed instance's last batches."""
    start = log.stat().st_size if log.exists() else 0
    want = f"now {sorted(partitions)}"
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")[start:] if log.exists() else ""
        if any(line.startswith("assigned partitions") and line.endswith(want) for line in text.splitlines()):
            return
        assert child.poll() is None, f"the processor exited {child.returncode}:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"not given {partitions} within {timeout}s:\n{text[-3000:]}"
        time.sleep(0.2)
