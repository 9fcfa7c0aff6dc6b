"""bench/entitlement_value.py runs end to end (its own process: one embedded ClickHouse path per process) and its
sample value adds up: the grants (10,000,000 issued, 5,000,000 from the month's second day) cover the usage, so
balance + usage is what they hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_runs_and_its_value_adds_up(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "bench/entitlement_value.py", "--rows", "300", "--requests", "3",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    value = result["value"]["sample"]
    assert value["hasAccess"] is True and value["overage"] == 0
    assert value["balance"] + value["usage"] == value["totalAvailableGrantAmount"] in (10_000_000, 15_000_000)
    assert result["value_over_meter_query_p50"] > 0 and result["access"]["sample"]["entitlements"]["gpt_tokens"]
