"""The fault-injection run, small: one SIGKILL of each process, a broker restart, ClickHouse down 20 s.

Runs `meterstream chaos` as its own process (it owns an embedded ClickHouse store) against the
session's broker, which it restarts; the verdict compares with the generated input.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meterstream.schemas.settings import Settings


@pytest.mark.kafka
def test_chaos_run_loses_and_duplicates_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({"METERSTREAM_HOME": str(kafka_settings.home), "METERSTREAM_KAFKA_PORT": str(kafka_settings.kafka_port),
                "METERSTREAM_KAFKA_HEAP": kafka_settings.kafka_heap})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "meterstream.deploy.cli", "chaos", "--events", "8000", "--seconds", "25", "--kills", "1",
         "--outage", "20", "--out", str(tmp_path / "chaos")],
        env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    m = re.fullmatch(r"lost=(\d+) duplicated=(\d+) mismatched_invoices=(\d+) dlq=(\d+)/(\d+)", last)
    assert m, last
    lost, duplicated, mismatched, found, refused = map(int, m.groups())
    assert (lost, duplicated, mismatched) == (0, 0, 0)
    assert found == refused > 0
    assert "kill-processor x1" in done.stdout and "restart-broker x1" in done.stdout
    assert "-> add up" in done.stdout
