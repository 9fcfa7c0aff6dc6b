"""The native processor as a child process (to be killed mid-stream by the crash tests) and its environment."""

from __future__ import annotations

import os
import subprocess
import sys
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


def start_native(env: dict[str, str]) -> subprocess.Popen:
    code = "from meterstream.processor.runner import run_native; from meterstream.schemas.settings import " \
           "Settings; run_native(Settings())"  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
