"""docs/capacity.md is what bench/capacity_model.py computes from the benchmark JSON it cites, and that
arithmetic holds when worked by hand from the same inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from by_path import load

ROOT = Path(__file__).resolve().parents[2]


def _model():
    return load("bench/capacity_model.py")


def test_the_page_is_current() -> None:
    model = _model()
    assert (ROOT / "docs" / "capacity.md").read_text(encoding="utf-8") == model.render(), (
        "run python bench/capacity_model.py"
    )


def test_the_inputs_are_the_cited_measurements() -> None:
    w1 = json.loads((ROOT / "bench/results/e2e-300k-native-w1-2026-12-01-s7.json").read_text())
    f = _model().figures()
    assert (f["proc"], f["sink"], f["broker"]) == (32.0, 8.1, 5.8) == tuple(w1["cpu_us_per_event_steady"].values())
    assert f["dedup_b"] == w1["state_dir_bytes_per_id"] == 20.6
    assert f["proc_w2"] == 31.7  # 17.3 + 14.4 (two workers, each over all events)


def test_the_projection_worked_by_hand() -> None:
    f = _model().figures()
    # one instance: 10^6 / 32.0 us = 31,250 events/s at 100 %, 21,875 at 70 %
    assert (f["per_instance"], f["per_instance_70"]) == (31_250, 21_875)
    # 1M/s: 1,000,000 / 21,875 = 45.7 -> 46 instances, partitions: next power of two >= 92 = 128; 32 cores
    assert (f["p1_inst"], f["p1_parts"], f["p1_cores"]) == (46, 128, 32)
    # 10M/s: 457.1 -> 458 instances, next power of two >= 916 = 1024; 320 cores
    assert (f["p10_inst"], f["p10_parts"], f["p10_cores"]) == (458, 1024, 320)
    # dedup: 10^6/s x 86,400 s x 35 days = 3.024e12 ids x 20.6 B = 62.29 TB; ten times that at 10M/s
    assert (f["ids_1m"], f["dedup_1m_tb"], f["dedup_10m_tb"]) == ("3.02e+12", 62.3, 622.9)
    # broker: 5.8 us -> 5.8 cores at 1M/s (rounded to 6), x 3 replicas = 17.4 -> 17
    assert (f["b1_cores"], f["b1_rf3"]) == (6, 17)
    # ClickHouse: a billion rows at B bytes per row is B GB
    storage = json.loads((ROOT / "bench/results/storage-1m-2026-12-01.json").read_text())
    per_row = storage["uuid_ids"]["bytes_on_disk"] / storage["uuid_ids"]["rows"]
    assert math.isclose(f["uuid_gb"], per_row, abs_tol=0.01)
    assert math.isclose(f["day_1m_tb"], 86.4e9 * per_row / 1e12, abs_tol=0.05)
