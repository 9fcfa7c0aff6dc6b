"""Property-based tests of the Lago layer from the app's OpenAPI document (schemathesis 4): no 5xx, and
every response matches the documented status codes, content types, headers and schemas.

Real broker and embedded ClickHouse, as tests/api/test_schemathesis.py does for the own API (the app
is built at import, a fixture points its ingest and query paths at the session's broker and chdb).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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

pytestmark = pytest.mark.kafka

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip

_BASE = Settings(home=Path(tempfile.mkdtemp(prefix="meterstream-lago-schema-")), kafka_bootstrap="127.0.0.1:9",
                 api_rate_limit_per_s=0.0)  # fmt: skip


class _NotYet:
    """Stands in for the IngestService until the fixture has the broker (no producer thread at import)."""

    def close(self, timeout: float = 0) -> None:
        pass


APP = create_app(_BASE, ingest=_NotYet())  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/compat/lago/")


@pytest.fixture(scope="module")
def auth(kafka_settings, chdb_client):  # type: ignore[no-untyped-def]
    from meterstream.ingest.topics import ensure_topics

    db = f"lago_st_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    s = kafka_settings.model_copy(update={
        "home": _BASE.home, "topic_prefix": f"lago-st-{uuid.uuid4().hex[:8]}.", "clickhouse_database": db,
        "api_rate_limit_per_s": 0.0, "api_produce_timeout_s": 5.0,
    })  # fmt: skip
    ensure_topics(s)
    APP.state.ingest = IngestService(s)
    APP.state.queries = UsageQueries(s, chdb_client)
    _info, token = APP.state.keys.create("acme", "admin", "schemathesis lago")
    yield {"Authorization": f"Bearer {token}"}
    APP.state.ingest.close()


def test_every_lago_operation_is_documented() -> None:
    paths = APP.openapi()["paths"]
    ops = sorted((p.removeprefix("/compat/lago/api/v1"), m) for p, item in paths.items() if p.startswith("/compat/lago")
                 for m in item)  # fmt: skip
    assert ops == [("/billable_metrics", "get"), ("/billable_metrics", "post"), ("/billable_metrics/{code}", "get"),
                   ("/events", "post"), ("/events/batch", "post"), ("/events/{transaction_id}", "get"),
                   ("/subscriptions", "get"), ("/subscriptions", "post")]  # fmt: skip


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_lago_layer_conforms_to_its_schema(case, auth) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth, checks=CHECKS)
