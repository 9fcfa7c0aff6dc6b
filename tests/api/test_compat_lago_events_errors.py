"""Lago's `events.errors` webhook (docs/lago.md "Webhooks"): Lago events accepted with an error (a code no billable
metric has; properties without the metric's field_name) are reported once, by transaction id, to the tenant's
Lago-format endpoints, in Lago's shape, signed; a standard endpoint gets them only when it names the type.
lago-python-client 1.55.0 sends the events and registers the endpoint on a real uvicorn server (no broker: these
events produce no usage)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from lago_app import add_metric, make_app
from lago_python_client.client import Client
from lago_python_client.models import BatchEvent, Event
from lago_python_client.models.webhook_endpoint import WebhookEndpoint
from served_app import serve
from webhook_receiver import Receiver

from meterstream.webhooks import endpoints
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.lago_keys import keys_for
from meterstream.webhooks.outbox import events
from meterstream.webhooks.signing import verify

T = "t1"


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        add_metric(client, T, "storage")  # sum of properties.gb
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), client.app


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def dispatcher(app) -> Dispatcher:  # type: ignore[no-untyped-def]
    return Dispatcher(app.state.settings, app.state.sessions, kafka=False, renderers=app.state.webhook_renderers)


def event(tx: str, code: str, properties: dict) -> Event:
    return Event(transaction_id=tx, external_subscription_id="sub-1", code=code,
                 timestamp=int(datetime.now(UTC).timestamp()), properties=properties)  # fmt: skip


def test_errors_are_reported_once_to_lago_endpoints(lago, receiver) -> None:  # type: ignore[no-untyped-def]
    sdk, app = lago
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=receiver.url, signature_algo="hmac"))
    sdk.events.create(event("tx-no-gb", "storage", {"region": "eu"}))  # storage's field_name gb is missing
    sdk.events.create(event("tx-typo", "storrage", {"gb": 3}))  # no billable metric has this code
    sdk.events.batch_create(BatchEvent(events=[event("tx-null-gb", "storage", {"gb": None}),
                                               event("tx-typo", "storrage", {"gb": 3})]))  # fmt: skip
    d = dispatcher(app)
    d.run_once()
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    calc = base64.b64encode(hmac.new(keys_for(app.state.sessions, T).hmac_key.encode(), body, hashlib.sha256).digest())
    assert headers["x-lago-signature"] == calc.decode()
    assert orjson.loads(body) == {
        "webhook_type": "events.errors", "object_type": "events_errors",
        "events_errors": {"invalid_code": ["tx-typo"], "missing_aggregation_property": ["tx-no-gb", "tx-null-gb"],
                          "invalid_filter_values": [], "missing_group_key": None},
    }  # fmt: skip

    d.digest_at = float("-inf")  # the next hour's digest: nothing new, nothing sent
    d.run_once()
    assert len(receiver.requests) == 1
    sdk.events.create(event("tx-later", "storage", {}))
    d.digest_at = float("-inf")
    d.run_once()
    assert [orjson.loads(b)["events_errors"]["missing_aggregation_property"] for _, b in receiver.requests] == [
        ["tx-no-gb", "tx-null-gb"], ["tx-later"]]  # fmt: skip


def test_once_an_hour_and_opt_in_for_standard_endpoints(lago, receiver) -> None:  # type: ignore[no-untyped-def]
    sdk, app = lago
    sf = app.state.sessions
    every = endpoints.register(sf, T, receiver.url)  # every type but the opt-in ones: not events.errors
    sdk.events.create(event("tx-1", "nope", {}))
    d = dispatcher(app)
    d.run_once()
    assert receiver.requests == [] and [e.type for e in events(sf, T)] == []  # reported to nobody: marked
    named = endpoints.register(sf, T, receiver.url + "/errors", event_types=["events.errors"])
    sdk.events.create(event("tx-2", "nope", {}))
    d.run_once()  # within the hour: not yet
    assert receiver.requests == []
    d.digest_at = float("-inf")
    d.run_once()
    d.run_once()
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify(named.secret, headers, body).startswith("msg_")
    data = orjson.loads(body)["data"]
    assert (data["invalid_code"], data["missing_aggregation_property"]) == (["tx-2"], [])
    assert every.endpoint_id != named.endpoint_id
