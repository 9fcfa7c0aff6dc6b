"""Two test runs at once must not fight over a fixed port: every sink a test starts gets a free one for
its ClickHouse HTTP front (the default is 8123, a fixed port)."""

from __future__ import annotations

import socket
import subprocess
import sys

from meterstream.schemas.settings import Settings

DEFAULT_FRONT_PORT = 8123  # Settings.clickhouse_http_port's default (README: "serves ... on :8123")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_settings_made_in_a_test_use_the_test_s_free_port(clickhouse_http_port: int) -> None:
    assert Settings.model_fields["clickhouse_http_port"].default == DEFAULT_FRONT_PORT
    assert clickhouse_http_port not in (0, DEFAULT_FRONT_PORT) and _bindable(clickhouse_http_port)
    assert Settings().clickhouse_http_port == clickhouse_http_port


def test_a_child_process_inherits_the_free_port(clickhouse_http_port: int) -> None:
    code = "from meterstream.schemas.settings import Settings; print(Settings().clickhouse_http_port)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) == clickhouse_http_port


def test_free_ports_are_below_the_ephemeral_range() -> None:
    """Outbound connections take their source ports from the ephemeral range: a port chosen there could be taken by
    a client's connection before the process meant to bind it does (a CI run lost a chaos test so)."""
    from pathlib import Path

    from meterstream.deploy.ports import free_port, free_port_pair

    first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(10_000 <= p < first and _bindable(p) for p in ports), ports
    assert len(set(ports)) > 40  # chosen at random, not one port again and again
    pair = free_port_pair()
    assert pair + 1 < first and _bindable(pair) and _bindable(pair + 1)
