"""`meterstream up`'s status table says who reads the ClickHouse front (docs/analytics.md): tenants with user =
tenant id and password = a read key, `meterstream query` and the API as the internal user `meterstream`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from meterstream.deploy.up import status_table
from meterstream.schemas.settings import Settings


def test_the_clickhouse_line_names_the_tenants_and_the_internal_user(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, clickhouse_http_port=18123, database_url=None)
    procs = {name: SimpleNamespace(pid=100 + i) for i, name in enumerate(("api", "processor", "sink"))}
    table = status_table(settings, 18000, SimpleNamespace(procs=procs, logs=tmp_path / "logs"),  # type: ignore[arg-type]
                         "127.0.0.1:19092", embedded=True)  # fmt: skip
    (line,) = [ln for ln in table.splitlines() if "ClickHouse HTTP" in ln]
    assert "http://127.0.0.1:18123" in line
    assert "read-only" not in line  # the internal user writes through it too (the close)
    assert "user = tenant id, password = a read key" in line
    assert "internal user `meterstream`" in line
    server = status_table(settings, 18000, SimpleNamespace(procs=procs, logs=tmp_path / "logs"),  # type: ignore[arg-type]
                          "127.0.0.1:19092", embedded=False)  # fmt: skip
    assert "off (ClickHouse server, or port 0)" in server


def test_the_table_names_every_address_up_serves(tmp_path: Path) -> None:
    """The console, the compat APIs, and each process's health next to its metrics (the API bound to all
    interfaces is shown at 127.0.0.1, where a browser on this machine reaches it)."""
    settings = Settings(home=tmp_path, clickhouse_http_port=18123, database_url=None, api_host="0.0.0.0",
                        processor_metrics_port=18001, sink_metrics_port=18002)  # fmt: skip
    procs = {name: SimpleNamespace(pid=100 + i) for i, name in enumerate(("api", "processor", "sink"))}
    table = status_table(settings, 18000, SimpleNamespace(procs=procs, logs=tmp_path / "logs"),  # type: ignore[arg-type]
                         "127.0.0.1:19092", embedded=True)  # fmt: skip
    rows = {ln.split("  ")[1].strip(): ln for ln in table.splitlines()}
    assert "http://127.0.0.1:18000/console " in rows["console"]
    assert "read or admin API key" in rows["console"]
    assert "http://127.0.0.1:18000/compat/openmeter " in rows["OpenMeter API"]
    assert "http://127.0.0.1:18000/compat/lago/ " in rows["Lago API"]
    assert rows["API"].split()[1] == "http://127.0.0.1:18000"
    assert "(docs /docs, OpenAPI /openapi.json, metrics /metrics, health /healthz /readyz; pid 100)" in rows["API"]
    assert "metrics http://127.0.0.1:18001/metrics, health http://127.0.0.1:18001/healthz" in rows["processor"]
    assert "metrics http://127.0.0.1:18002/metrics, health http://127.0.0.1:18002/healthz" in rows["sink"]
    assert "0.0.0.0" not in table
