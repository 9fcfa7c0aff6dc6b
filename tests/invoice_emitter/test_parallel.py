"""`invoice_emitter.parallel.ordered_map`: forked workers give map's results in map's order; a worker's
exception is raised in the parent; a worker that dies is an error, never missing results."""

from __future__ import annotations

import os

import pytest

from meterstream.invoice_emitter import parallel


def square(n: int) -> bytes:
    return str(n * n).encode()


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
@pytest.mark.parametrize(("workers", "chunk"), [(1, 3), (2, 1), (3, 4), (5, 100)])
def test_results_in_order_from_forked_workers(forked: list[int], workers: int, chunk: int) -> None:
    pids = {os.getpid()}

    def where(n: int) -> bytes:  # which process computed it, and the square
        return f"{os.getpid()}:{n * n}".encode()

    out = [x.decode().split(":") for x in parallel.ordered_map(where, list(range(23)), workers, chunk)]
    assert [int(sq) for _, sq in out] == [n * n for n in range(23)]  # 0, 1, 4, ... in order
    assert len(forked) == min(workers, -(-23 // chunk))  # one per worker, never more than chunks
    assert not {int(pid) for pid, _ in out} & pids  # all computed in the workers, none here
    assert {int(pid) for pid, _ in out} == set(forked)


def test_no_workers_is_map() -> None:
    assert list(parallel.ordered_map(square, [1, 2, 3], 0)) == [b"1", b"4", b"9"]
    assert list(parallel.ordered_map(square, [], 2)) == []


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
def test_a_workers_exception_is_raised_here() -> None:
    def fails_at_seven(n: int) -> bytes:
        if n == 7:
            raise ValueError(f"item {n}: refused")
        return square(n)

    got: list[bytes] = []
    with pytest.raises(ValueError, match="item 7: refused"):
        for x in parallel.ordered_map(fails_at_seven, list(range(20)), 2, chunk=2):
            got.append(x)
    assert got == [square(n) for n in range(6)]  # the chunks before item 7's, in order; none after


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
def test_a_worker_that_dies_is_an_error() -> None:
    def dies_at_five(n: int) -> bytes:
        if n == 5:
            os._exit(3)
        return square(n)

    with pytest.raises(RuntimeError, match="ended without the results of items 4"):
        list(parallel.ordered_map(dies_at_five, list(range(10)), 1, chunk=4))


def test_spare_cores_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (0.4, 0.0, 0.0))
    assert parallel.spare_cores() == 1  # this close on one core, the other idle
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert parallel.spare_cores() == 0
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (9.5, 0.0, 0.0))
    assert parallel.spare_cores() == 0


def test_spare_cores_over_a_window_leave_this_process_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a window, a core is spare when the machine's busy ticks, less this process's own CPU, leave it idle."""
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.9, 0.0, 0.0))  # the last minute: busy (0 spare)
    ticks = iter([(1000, 5000), (1000 + 30, 5000 + 60)])  # 60 ticks over 0.3 s on 2 cores, 30 of them busy
    monkeypatch.setattr(parallel, "_machine_ticks", lambda: next(ticks))
    own = iter([10.0, 10.3])  # this process: 0.3 s of CPU in 0.3 s (one core), the only busy one
    monkeypatch.setattr(parallel, "_own_cpu", lambda: next(own))
    clock = iter([100.0, 100.3])
    monkeypatch.setattr(parallel.time, "perf_counter", lambda: next(clock))
    window = parallel.CpuWindow()
    assert parallel.spare_cores(window) == 1  # the other core idle, whatever the load average says
    ticks = iter([(1000, 5000), (1000 + 60, 5000 + 60)])  # both cores busy: the other with someone else's work
    own, clock = iter([10.0, 10.3]), iter([100.0, 100.3])
    assert parallel.spare_cores(parallel.CpuWindow()) == 0
    ticks = iter([(1000, 5000), (1000 + 1, 5000 + 2)])  # a window too short to say: the load average's answer
    own, clock = iter([10.0, 10.0]), iter([100.0, 100.01])
    assert parallel.spare_cores(parallel.CpuWindow()) == 0


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
def test_a_worker_goes_on_while_the_caller_is_busy(forked: list[int]) -> None:
    """The caller holds the first result (busy storing a batch, in a close): the worker still delivers every other
    frame (read ahead by this process, up to `AHEAD`) and ends, instead of waiting on its full pipe. Each frame is
    ~600 kB, more than a pipe holds."""
    import time

    big = b"x" * 600_000
    results = parallel.ordered_map(lambda n: big + str(n).encode(), list(range(parallel.AHEAD)), 1, chunk=1)
    assert next(results) == big + b"0"
    deadline = time.monotonic() + 20
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT  # has it ended? (not reaped: `ordered_map` waits for it)
    while time.monotonic() < deadline and os.waitid(os.P_PID, forked[0], flags) is None:
        time.sleep(0.01)
    assert os.waitid(os.P_PID, forked[0], flags) is not None, "the worker waited for the caller"
    assert [r[-1:] for r in results] == [str(n).encode() for n in range(1, parallel.AHEAD)]
