"""Property-based tests of /compat/openmeter from the app's OpenAPI document (schemathesis 4): no 5xx and
only documented status codes, on the real broker and the embedded ClickHouse. Same set-up as
tests/api/test_schemathesis.py (the app is built at import; a fixture points it at the session's broker
and ClickHouse)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from meterstream.aggregation.ddl import create_schema
from meterstream.api.app import create_app
from meterstream.api.ingest import IngestService
from meterstream.api.queries import UsageQueries
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
CHECKS = [not_a_server_error, status_code_conformance]

_BASE = Settings(home=Path(tempfile.mkdtemp(prefix="meterstream-om-schemathesis-")), kafka_bootstrap="127.0.0.1:9",
                 api_rate_limit_per_s=0.0)  # fmt: skip
APP = create_app(_BASE, ingest=IngestService(_BASE))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/compat/openmeter/")


@pytest.fixture(scope="module")
def auth(kafka_settings, chdb_client):  # type: ignore[no-untyped-def]
    from meterstream.ingest.topics import ensure_topics

    db = f"st_om_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    s = kafka_settings.model_copy(update={
        "home": _BASE.home, "topic_prefix": f"st-om-{uuid.uuid4().hex[:8]}.", "clickhouse_database": db,
        "api_rate_limit_per_s": 0.0, "api_produce_timeout_s": 5.0,
    })  # fmt: skip
    ensure_topics(s)
    placeholder = APP.state.ingest
    APP.state.ingest = IngestService(s)
    APP.state.queries = UsageQueries(s, chdb_client)
    placeholder.close(timeout=0)
    _info, token = APP.state.keys.create("acme", "admin", "schemathesis")
    om = APP.state.openmeter
    from meterstream.ingest.translate import MeterDefinition

    om.meters.create("acme", MeterDefinition("tokens", "prompt", "SUM", "$.tokens", {"model": "$.model"}))
    yield {"Authorization": f"Bearer {token}"}
    APP.state.ingest.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openmeter_compat_has_no_server_errors(case, auth) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth, checks=CHECKS)
