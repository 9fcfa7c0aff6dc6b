"""The set-up the schemathesis tests share: the app is built at import (schemathesis needs the schema at
collection; its fixture-based loader does not work with pytest 9), then `connect` points its ingest and
query paths at the session's broker and embedded ClickHouse and gives an admin key's headers."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meterstream.aggregation.ddl import create_schema
from meterstream.api.app import create_app
from meterstream.api.ingest import IngestService
from meterstream.api.queries import UsageQueries
from meterstream.schemas.settings import Settings

ALL_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]  # fmt: skip


class _NotYet:
    """Stands in for the IngestService until `connect` has the broker (no producer thread at import)."""

    def close(self, timeout: float = 0) -> None:
        pass


def build_app() -> tuple[FastAPI, Settings]:
    base = Settings(home=Path(tempfile.mkdtemp(prefix="meterstream-schemathesis-")), kafka_bootstrap="127.0.0.1:9",
                    api_rate_limit_per_s=0.0)  # fmt: skip
    return create_app(base, ingest=_NotYet()), base  # type: ignore[arg-type]


def connect(app: FastAPI, base: Settings, kafka_settings: Settings, chdb_client: Any) -> Iterator[dict[str, str]]:
    """Fixture body: real ingest and query paths, an admin key of tenant `acme`; closes the producer after."""
    from meterstream.ingest.topics import ensure_topics

    run = uuid.uuid4().hex[:8]
    create_schema(chdb_client, f"st_{run}")
    s = kafka_settings.model_copy(update={
        "home": base.home, "topic_prefix": f"st-{run}.", "clickhouse_database": f"st_{run}",
        "api_rate_limit_per_s": 0.0, "api_produce_timeout_s": 5.0,
    })  # fmt: skip
    ensure_topics(s)
    app.state.ingest = IngestService(s)
    app.state.queries = UsageQueries(s, chdb_client)
    _info, token = app.state.keys.create("acme", "admin", "schemathesis")
    yield {"Authorization": f"Bearer {token}"}
    app.state.ingest.close()
