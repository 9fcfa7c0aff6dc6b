"""Property-based tests of /compat/openmeter from the app's OpenAPI document (schemathesis 4): no 5xx and
only documented status codes, on the real broker and the embedded ClickHouse. Same set-up as
tests/api/test_schemathesis.py (the app is built at import; a fixture points it at the session's broker
and ClickHouse)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from schemathesis_app import build_app, connect

from meterstream.ingest.translate import MeterDefinition

pytestmark = pytest.mark.kafka

CHECKS = [not_a_server_error, status_code_conformance]
APP, _BASE = build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/compat/openmeter/")


@pytest.fixture(scope="module")
def auth(kafka_settings, chdb_client):  # type: ignore[no-untyped-def]
    headers = connect(APP, _BASE, kafka_settings, chdb_client)
    auth_headers = next(headers)
    tokens = MeterDefinition("tokens", "prompt", "SUM", "$.tokens", {"model": "$.model"})
    APP.state.openmeter.meters.create("acme", tokens)
    yield auth_headers
    next(headers, None)  # closes the producer


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openmeter_compat_has_no_server_errors(case, auth) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth, checks=CHECKS)
