"""The chaos run's cluster mode, small: a 3-node KRaft cluster of its own, processors in one consumer group
(each instance its own home), a broker node SIGKILLed and started again, an instance SIGKILLed while the
group moves partitions to a newcomer (its home deleted: the moved state comes from the changelog), an
instance added mid-stream, a processor and a sink SIGKILL, ClickHouse down. The verdict compares with the
generated input (deploy/chaos_expect.py): nothing lost, nothing duplicated, every invoice as expected.

Runs as its own process (it owns an embedded ClickHouse store, like tests/e2e/test_chaos.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

RUN = """
import sys
from pathlib import Path
from meterstream.deploy import kafka_cluster, kafka_local
from meterstream.deploy.chaos import run_cluster_chaos
from meterstream.schemas.settings import Settings
home = Path(sys.argv[1])
settings = Settings(home=home, kafka_port=kafka_cluster.free_port_block(6), kafka_brokers=3, kafka_bootstrap=None)
try:
    code = run_cluster_chaos(settings, home / "chaos", events=12_000, seconds=30)
finally:
    kafka_local.stop(settings)
raise SystemExit(code)
"""


def test_cluster_chaos_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    done = subprocess.run([sys.executable, "-c", RUN, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=1200, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    out = done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, out[-4000:]
    m = re.fullmatch(r"lost=(\d+) duplicated=(\d+) mismatched_invoices=(\d+) dlq=(\d+)/(\d+)", last)
    assert m, last
    lost, duplicated, mismatched, found, refused = map(int, m.groups())
    assert (lost, duplicated, mismatched) == (0, 0, 0) and found == refused > 0
    for fault in ("kill-broker x1", "kill-on-move x1", "add-instance x1", "kill-processor x1"):
        assert fault in done.stdout, done.stdout[-2000:]
    assert "-> add up" in done.stdout  # the counters read back from the changelog add up to the input
    restored = re.search(r"partitions restored from the changelog: (\d+)", out)
    assert restored and int(restored.group(1)) >= 2, out[-2000:]  # the killed instance's partitions at least
