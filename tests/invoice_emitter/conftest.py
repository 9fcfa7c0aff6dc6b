"""Shared fixtures of the invoice_emitter tests."""

from __future__ import annotations

import os

import pytest

from meterstream.invoice_emitter import parallel


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the workers `invoice_emitter.parallel` forks during the test, in fork order."""
    pids: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(parallel.os, "fork", counting_fork)
    return pids
