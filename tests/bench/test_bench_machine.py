"""bench/machine.py: the work two CPU-bound processes do at once over one's alone."""

from __future__ import annotations

import os

from by_path import load

machine = load("bench/machine.py")


def test_each_process_counts_its_own_work() -> None:
    counts = machine._burn(2, 0.3)
    assert len(counts) == 2
    assert all(isinstance(n, int) and n > 1000 for n in counts)  # a Python loop turns ~10^6 times a second


def test_scaling_lies_between_a_shared_core_and_every_core() -> None:
    # one process alone can use a whole core; two at once get at most one core each, at least a fair share of one
    # (with some margin for a noisy machine: the two runs are not the same seconds)
    got = machine.parallel_scaling(0.5)
    assert 0.5 <= got <= min(2, os.cpu_count() or 1) * 1.25
