"""Free loopback ports for the processes a demo, a benchmark or a test starts.

A port is chosen below the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by
default) and checked free by binding it. A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from that
range, which outbound connections draw their source ports from too: between choosing it and the process binding it
(seconds later, a processor's metrics server), a Kafka client's connection could take it, and the process died with
"Address already in use" (a fresh-clone CI run lost its cluster chaos test so). Ports below the range are never
given to an outbound connection. Where the range cannot be read (not Linux), the kernel's choice is used.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # well above the registered services a machine may run
_TRIES = 200
_rng = random.Random()


def _below_ephemeral() -> tuple[int, int] | None:
    """[low, high) of the ports below the ephemeral range to choose from, or None (unknown, or too narrow)."""
    try:
        first = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    low = max(_LOWEST, first - 12_000)
    return (low, first - 1) if first - low >= 2_000 else None  # first - 1: a pair's p + 1 stays below it too


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port() -> int:
    span = _below_ephemeral()
    if span is not None:
        for _ in range(_TRIES):
            port = _rng.randrange(*span)
            if _bindable(port):
                return port
    return _kernel_port()


def free_port_pair() -> int:
    """A port p with p + 1 free too: the local broker listens on p, its controller on p + 1."""
    for _ in range(50):
        port = free_port()
        if _bindable(port + 1):
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")
