"""Property-based tests of the Lago layer from the app's OpenAPI document (schemathesis 4): no 5xx, and
every response matches the documented status codes, content types, headers and schemas.

Real broker and embedded ClickHouse, as tests/api/test_schemathesis.py does for the own API (the app
is built at import, a fixture points its ingest and query paths at the session's broker and chdb).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis_app import ALL_CHECKS, build_app, connect

pytestmark = pytest.mark.kafka

CHECKS = ALL_CHECKS
APP, _BASE = build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/compat/lago/")


@pytest.fixture(scope="module")
def auth(kafka_settings, chdb_client):  # type: ignore[no-untyped-def]
    yield from connect(APP, _BASE, kafka_settings, chdb_client)


def test_every_lago_operation_is_documented() -> None:
    paths = APP.openapi()["paths"]
    ops = sorted((p.removeprefix("/compat/lago/api/v1"), m) for p, item in paths.items() if p.startswith("/compat/lago")
                 for m in item)  # fmt: skip
    assert ops == [("/add_ons", "get"), ("/add_ons", "post"), ("/add_ons/{code}", "delete"), ("/add_ons/{code}", "get"),
                   ("/add_ons/{code}", "put"),
                   ("/analytics/gross_revenue", "get"), ("/analytics/invoice_collection", "get"),
                   ("/analytics/invoiced_usage", "get"), ("/analytics/mrr", "get"),
                   ("/analytics/overdue_balance", "get"),
                   ("/applied_coupons", "get"), ("/applied_coupons", "post"),
                   ("/billable_metrics", "get"), ("/billable_metrics", "post"), ("/billable_metrics/{code}", "delete"),
                   ("/billable_metrics/{code}", "get"), ("/billable_metrics/{code}", "put"),
                   ("/compat/lago/files/credit_notes/{lago_id}.pdf", "get"),
                   ("/compat/lago/files/invoices/{lago_id}.pdf", "get"),
                   ("/coupons", "get"), ("/coupons", "post"), ("/coupons/{code}", "delete"), ("/coupons/{code}", "get"),
                   ("/coupons/{code}", "put"),
                   ("/credit_notes", "get"), ("/credit_notes", "post"), ("/credit_notes/estimate", "post"),
                   ("/credit_notes/{lago_id}", "get"), ("/credit_notes/{lago_id}", "put"),
                   ("/credit_notes/{lago_id}/download", "post"), ("/credit_notes/{lago_id}/void", "put"),
                   ("/customers", "get"), ("/customers", "post"),
                   ("/customers/{external_customer_id}/applied_coupons", "get"),
                   ("/customers/{external_customer_id}/applied_coupons/{applied_coupon_id}", "delete"),
                   ("/customers/{external_customer_id}/current_usage", "get"),
                   ("/customers/{external_customer_id}/past_usage", "get"),
                   ("/customers/{external_customer_id}/wallets", "get"),
                   ("/customers/{external_id}", "delete"), ("/customers/{external_id}", "get"),
                   ("/events", "post"), ("/events/batch", "post"), ("/events/{transaction_id}", "get"),
                   ("/fees", "get"), ("/fees/{lago_id}", "get"),
                   ("/invoices", "get"), ("/invoices", "post"), ("/invoices/preview", "post"),
                   ("/invoices/{lago_id}", "get"),
                   ("/invoices/{lago_id}", "put"), ("/invoices/{lago_id}/download", "post"),
                   ("/invoices/{lago_id}/finalize", "put"), ("/invoices/{lago_id}/refresh", "put"),
                   ("/invoices/{lago_id}/void", "post"),
                   ("/plans", "get"), ("/plans", "post"), ("/plans/{code}", "delete"), ("/plans/{code}", "get"),
                   ("/plans/{code}", "put"), ("/subscriptions", "get"), ("/subscriptions", "post"),
                   ("/subscriptions/{external_id}", "delete"), ("/subscriptions/{external_id}", "get"),
                   ("/subscriptions/{external_id}", "put"), ("/subscriptions/{external_id}/lifetime_usage", "get"),
                   ("/taxes", "get"), ("/taxes", "post"), ("/taxes/{code}", "delete"), ("/taxes/{code}", "get"),
                   ("/taxes/{code}", "put"),
                   ("/wallet_transactions", "post"), ("/wallets", "get"), ("/wallets", "post"),
                   ("/wallets/{wallet_id}", "delete"), ("/wallets/{wallet_id}", "get"), ("/wallets/{wallet_id}", "put"),
                   ("/wallets/{wallet_id}/wallet_transactions", "get"),
                   ("/webhook_endpoints", "get"), ("/webhook_endpoints", "post"),
                   ("/webhook_endpoints/{lago_id}", "delete"), ("/webhook_endpoints/{lago_id}", "get"),
                   ("/webhook_endpoints/{lago_id}", "put"),
                   ("/webhooks/json_public_key", "get"), ("/webhooks/public_key", "get")]  # fmt: skip


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_lago_layer_conforms_to_its_schema(case, auth) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth, checks=CHECKS)
