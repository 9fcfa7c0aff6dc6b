"""bench/machine.py: the work two CPU-bound processes do at once over one's alone."""

from __future__ import annotations

import os

from by_path import load

machine = load("bench/machine.py")


def test_each_process_counts_its_own_work() -> None:
    counts = machine._burn(2, 0.3)
    assert len(counts) == 2
    assert all(isinstance(n, int) and n > 1000 for n in counts)  # a Python loop turns ~10^6 times a second


def test_scaling_is_the_work_of_two_at_once_over_one_alone(monkeypatch) -> None:
    work = {1: [1000], 2: [900, 800]}  # two at once: each slowed down, 1.7 cores' worth together
    monkeypatch.setattr(machine, "_burn", lambda n, seconds: work[n])
    assert machine.parallel_scaling(0.1) == 1.7


def test_a_real_measurement_is_a_positive_share_of_the_cores() -> None:
    # only loose bounds: the two measurements are different seconds of a machine other jobs may share
    got = machine.parallel_scaling(0.3)
    assert 0.3 <= got <= 4 * max(1, os.cpu_count() or 1)
