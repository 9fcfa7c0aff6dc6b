"""The `om` fixture: the OpenMeter SDK, unchanged, against /compat/openmeter on a real uvicorn server, a real
broker and embedded ClickHouse (a database of its own), with an admin, an ingest and a read key of tenant acme."""

from __future__ import annotations

import uuid

import openmeter
import pytest
from served_app import serve

from meterstream.aggregation.ddl import create_schema
from meterstream.api.app import create_app


@pytest.fixture
def om(api_settings, chdb_client):
    db = f"om_sdk_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    settings = api_settings.model_copy(update={"clickhouse_database": db})
    app = create_app(settings, clickhouse_client=chdb_client)
    keys = app.state.keys
    tokens = {role: keys.create("acme", role, f"sdk {role}")[1] for role in ("admin", "ingest", "read")}
    with serve(app) as base:
        clients = {role: openmeter.Client(endpoint=f"{base}/compat/openmeter", token=t) for role, t in tokens.items()}
        yield {"base": base, "settings": settings, "app": app, "db": db, "chdb": chdb_client, **clients}
        for c in clients.values():
            c.close()
    app.state.ingest.close()
