"""The API process runs the dispatcher (api/app.py lifespan, next to the entity relay, as `meterstream up` does):
an invoice finalized in its store reaches a registered receiver, signed, and the invoice-events topic; a Lago-format
endpoint of the same tenant gets Lago's message (the app gives the dispatcher Lago's renderer)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from invoice_helpers import TENANT, issued
from webhook_receiver import Receiver

from meterstream.api.app import create_app
from meterstream.schemas.settings import Settings
from meterstream.webhooks import endpoints
from meterstream.webhooks.lago_keys import keys_for
from meterstream.webhooks.lago_signing import hmac_signature
from meterstream.webhooks.outbox import events
from meterstream.webhooks.signing import verify

pytestmark = pytest.mark.kafka


def test_the_api_process_delivers_lifecycle_events(kafka_settings: Settings, tmp_path: Path, receiver) -> None:
    settings = kafka_settings.model_copy(update={"home": tmp_path, "topic_prefix": f"wa-{uuid.uuid4().hex[:8]}-",
                                                 "database_url": None, "clickhouse_http_port": 0})  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.webhooks is not None
        sf = app.state.sessions
        ep = endpoints.register(sf, TENANT, receiver.url, event_types=["invoice.finalized"])
        lago = Receiver()
        endpoints.register_lago(sf, TENANT, lago.url, signature_algo="hmac", event_types=["invoice.created"],
                                issuer="http://testserver/compat/lago")  # fmt: skip
        issued(sf, "inv-1")
        deadline = time.monotonic() + 10
        while (not receiver.requests or not lago.requests or any(e.published_at is None for e in events(sf, TENANT))
               ) and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.05)
        lago.close()
        assert len(lago.requests) == 1
        lago_headers, lago_body = lago.requests[0]
        assert lago_body.startswith(b'{"webhook_type":"invoice.created","object_type":"invoice","invoice":{')
        assert lago_headers["x-lago-signature"] == hmac_signature(keys_for(sf, TENANT).hmac_key, lago_body)
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert verify(ep.secret, headers, body).startswith("msg_")
        assert all(e.published_at is not None for e in events(sf, TENANT))
        assert app.state.webhooks.health()[0]
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["checks"]["webhooks"]["ok"] is True
    assert app.state.webhooks._thread is None  # stopped with the app
