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
