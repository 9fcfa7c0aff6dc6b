"""Property-based tests of the own API from its OpenAPI document (schemathesis 4): no 5xx, and every
response matches the documented status codes, content types, headers and schemas.

Real broker (events are produced and acknowledged) and the embedded ClickHouse (reads). The example
count is kept modest so this runs in well under a minute. The app is built at import (schemathesis
needs the schema at collection; its fixture-based loader does not work with pytest 9), and a fixture
points its ingest and query paths at the session's broker and ClickHouse before any case runs.
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
OWN = r"^/(v1/|healthz|readyz)"

_BASE = Settings(home=Path(tempfile.mkdtemp(prefix="meterstream-schemathesis-")), kafka_bootstrap="127.0.0.1:9",
                 api_rate_limit_per_s=0.0)  # fmt: skip
APP = create_app(_BASE, ingest=object())  # type: ignore[arg-type]  # replaced by the `auth` fixture
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=OWN)


@pytest.fixture(scope="module")
def auth(kafka_settings, chdb_client):  # type: ignore[no-untyped-def]
    from meterstream.ingest.topics import ensure_topics

    db = f"st_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    s = kafka_settings.model_copy(update={
        "home": _BASE.home, "topic_prefix": f"st-{uuid.uuid4().hex[:8]}.", "clickhouse_database": db,
        "api_rate_limit_per_s": 0.0, "api_produce_timeout_s": 5.0,
    })  # fmt: skip
    ensure_topics(s)
    APP.state.ingest = IngestService(s)
    APP.state.queries = UsageQueries(s, chdb_client)
    _info, token = APP.state.keys.create("acme", "admin", "schemathesis")
    yield {"Authorization": f"Bearer {token}"}
    APP.state.ingest.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_own_api_conforms_to_its_schema(case, auth) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth, checks=CHECKS)
