"""The in-process API for the lago-python-client wallet tests: SQL store, the embedded ClickHouse as the usage
store (a fresh database), no broker, served by a real uvicorn server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from api_helpers import NoIngest, offline_settings
from fastapi import FastAPI
from lago_python_client.client import Client

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS
from meterstream.api.app import create_app

Insert = Callable[..., None]


def usage_app(tmp_path: Path, chdb_client: Any, prefix: str) -> tuple[FastAPI, Insert]:
    """The app without Kafka (api_helpers), its usage store a fresh database `prefix`_... in the embedded ClickHouse,
    and `insert(*rated_usage rows)` into that database."""
    db = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    settings = offline_settings(tmp_path, clickhouse_database=db)
    app = create_app(settings, ingest=NoIngest(), relay=False, clickhouse_client=chdb_client)  # type: ignore[arg-type]

    def insert(*rows: dict) -> None:
        chdb_client.raw_insert(f"{db}.rated_usage", RATED_FIELDS, b"\n".join(orjson.dumps(r) for r in rows),
                               fmt="JSONEachRow")  # fmt: skip

    return app, insert


@contextmanager
def lago_wallet_app(tmp_path: Path, chdb_client: Any, prefix: str) -> Iterator[tuple[Client, Insert, FastAPI]]:
    """(the SDK with an admin key of tenant t1, `insert(*rated_usage rows)`, the app) while the server runs."""
    from fastapi.testclient import TestClient
    from served_app import serve

    app, insert = usage_app(tmp_path, chdb_client, prefix)
    with TestClient(app) as client:
        key = client.app.state.keys.create("t1", "admin", "sdk")[1]
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), insert, client.app
