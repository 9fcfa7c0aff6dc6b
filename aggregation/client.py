"""One way to reach ClickHouse: a clickhouse-connect client for `chdb:///path` (embedded) or `http://host:8123`."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from meterstream.schemas.settings import Settings


def connect(settings: Settings | None = None, dsn: str | None = None, **kwargs: Any) -> Client:
    """Open a client. Embedded chdb allows one process per data path: the sink owns it while it runs."""
    if dsn is None:
        assert settings is not None, "give settings or a dsn"
        dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://"):
        from pathlib import Path

        path = dsn.removeprefix("chdb://")
        if path.startswith("/"):
            Path(path).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn, **kwargs)
