"""Lago-format webhooks (docs/lago.md "Webhooks"): lago-python-client 1.55.0, unchanged, registers endpoints and reads
the public key on a real uvicorn server; the webhook dispatcher then sends those endpoints Lago's messages, which
a receiver verifies exactly as Lago's documentation ("Format & Signature") shows, with PyJWT and hmac.

Figures by hand (tests/api/finance_helpers.py): lines 1000.00 + 234.56 = 1234.56, sales tax 72.50 + 17.01 = 89.51,
total 1324.07 -> 123456, 8951 and 132407 cents.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
from finance_helpers import store_invoice
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.webhook_endpoint import WebhookEndpoint
from served_app import serve
from webhook_receiver import Receiver

from meterstream.entities import credit_notes, invoices, payments
from meterstream.webhooks import deliveries
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.lago_keys import keys_for

T = "t1"


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), client.app, base, key


@pytest.fixture
def receivers():  # type: ignore[no-untyped-def]
    made = [Receiver(), Receiver()]
    yield made
    for r in made:
        r.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def dispatcher(app, clock: Clock | None = None, renderers=None) -> Dispatcher:  # type: ignore[no-untyped-def]
    """The API's dispatcher, without Kafka; retries due at once (schedule of zeros, no jitter) unless moved."""
    return Dispatcher(app.state.settings, app.state.sessions, kafka=False, schedule=(0.0, 0.0, 0.0), jitter=0.0,
                      renderers=app.state.webhook_renderers if renderers is None else renderers,
                      now=clock or (lambda: datetime.now(UTC)))  # fmt: skip


def drain(d: Dispatcher, rounds: int = 5) -> None:
    for _ in range(rounds):
        done = d.run_once()
        if not done["fanned_out"] and not done["attempted"]:
            return


def messages(receiver: Receiver) -> dict[str, tuple[dict[str, str], bytes]]:
    """The receiver's messages by webhook_type (each type once)."""
    out = {}
    for headers, body in receiver.requests:
        kind = orjson.loads(body)["webhook_type"]
        assert kind not in out
        out[kind] = (headers, body)
    return out


def lago_hmac_ok(hmac_key: str, headers: dict[str, str], body: bytes) -> bool:
    """Lago's documented check: base64 of HMAC-SHA256 of the raw body, keyed by the HMAC key."""
    calc_sig = hmac.new(hmac_key.encode(), body, "sha256").digest()
    return headers["x-lago-signature"] == base64.b64encode(calc_sig).decode()


def lago_jwt_data(public_key: bytes, issuer: str, headers: dict[str, str]) -> str:
    """Lago's documented check: decode the JWT with the public key and the issuer; its `data` is the body."""
    return jwt.decode(headers["x-lago-signature"], public_key, algorithms=["RS256"], issuer=issuer)["data"]


def test_endpoints_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, app, base, _key = lago
    signed = sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url="https://hooks.example.com/lago",
                                                          signature_algo="hmac", name="billing"))  # fmt: skip
    plain = sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url="https://hooks.example.com/jwt"))
    uuid.UUID(signed.lago_id)  # Lago's ids are UUIDs
    assert (signed.webhook_url, signed.signature_algo, signed.name, signed.event_types) == (
        "https://hooks.example.com/lago", "hmac", "billing", None)  # fmt: skip
    assert plain.signature_algo == "jwt"  # Lago's default
    assert signed.lago_organization_id == plain.lago_organization_id

    with pytest.raises(LagoApiError) as taken:  # Lago: one endpoint per URL
        sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url="https://hooks.example.com/lago"))
    assert (taken.value.status_code, taken.value.response["error_details"]) == (
        422, {"webhook_url": ["value_already_exist"]})  # fmt: skip
    with pytest.raises(LagoApiError) as bad:
        sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url="https://hooks.example.com/x", signature_algo="md5"))
    assert bad.value.status_code == 422 and "signature_algo" in bad.value.response["error_details"]

    listed = sdk.webhook_endpoints.find_all()
    assert [e.lago_id for e in listed["webhook_endpoints"]] == [signed.lago_id, plain.lago_id]
    assert listed["meta"]["total_count"] == 2
    changed = sdk.webhook_endpoints.update(WebhookEndpoint(event_types=["invoice.created"]), signed.lago_id)
    assert (changed.event_types, changed.signature_algo, changed.webhook_url) == (
        ["invoice.created"], "hmac", "https://hooks.example.com/lago")  # fmt: skip
    assert sdk.webhook_endpoints.find(signed.lago_id).event_types == ["invoice.created"]
    assert sdk.webhook_endpoints.destroy(plain.lago_id).lago_id == plain.lago_id
    with pytest.raises(LagoApiError) as gone:
        sdk.webhook_endpoints.find(plain.lago_id)
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "webhook_endpoint_not_found")

    pem = sdk.webhooks.public_key()  # base64 of the PEM, decoded by the SDK
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    text = httpx.get(f"{base}/compat/lago/api/v1/webhooks/public_key",
                     headers={"Authorization": f"Bearer {_key}"}).text  # fmt: skip
    assert base64.b64decode(text) == pem

    other = app.state.keys.create("t2", "admin", "other")[1]  # tenants see only their own endpoints and keys
    sdk2 = Client(api_key=other, api_url=f"{base}/compat/lago/")
    assert sdk2.webhook_endpoints.find_all()["webhook_endpoints"] == []
    with pytest.raises(LagoApiError):
        sdk2.webhook_endpoints.find(signed.lago_id)
    assert sdk2.webhooks.public_key() != pem


def test_messages_verify_as_lagos_documentation_says(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    sdk, app, base, key = lago
    by_hmac, by_jwt = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=by_hmac.url, signature_algo="hmac"))
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=by_jwt.url))
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")  # a draft, then finalized: ACME-2026-000001
    drain(dispatcher(app))

    hmac_key = keys_for(sf, T).hmac_key
    public_key = sdk.webhooks.public_key()
    got_hmac, got_jwt = messages(by_hmac), messages(by_jwt)
    assert set(got_hmac) == set(got_jwt) == {"invoice.drafted", "invoice.created"}
    for headers, body in got_hmac.values():
        assert headers["x-lago-signature-algorithm"] == "hmac"
        assert lago_hmac_ok(hmac_key, headers, body)
        assert not lago_hmac_ok(hmac_key, headers, body.replace(b"132407", b"132408"))  # altered: refused
    for headers, body in got_jwt.values():
        assert headers["x-lago-signature-algorithm"] == "jwt"
        assert headers["x-lago-signature"].startswith("eyJ")
        assert lago_jwt_data(public_key, f"{base}/compat/lago", headers) == body.decode()
        with pytest.raises(jwt.InvalidIssuerError):
            lago_jwt_data(public_key, "https://api.getlago.com", headers)
    unique = {uuid.UUID(h["x-lago-unique-key"]) for h, _ in [*got_hmac.values(), *got_jwt.values()]}
    assert len(unique) == 4  # one per message

    headers, body = got_hmac["invoice.created"]
    message = orjson.loads(body)
    assert (message["webhook_type"], message["object_type"]) == ("invoice.created", "invoice")
    inv = message["invoice"]
    assert (inv["lago_id"], inv["number"], inv["status"], inv["payment_status"]) == (
        "INV-1", "ACME-2026-000001", "finalized", "pending")  # fmt: skip
    assert (inv["fees_amount_cents"], inv["taxes_amount_cents"], inv["total_amount_cents"]) == (123456, 8951, 132407)
    assert [f["amount_cents"] for f in inv["fees"]] == [100000, 23456]
    answered = httpx.get(f"{base}/compat/lago/api/v1/invoices/INV-1", headers={"Authorization": f"Bearer {key}"})
    assert inv == answered.json()["invoice"]  # the message carries what GET /invoices/{lago_id} answers
    assert orjson.loads(got_hmac["invoice.drafted"][1])["invoice"]["lago_id"] == "INV-1"


def test_a_retry_sends_the_same_bytes_and_key(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    sdk, app, _base, _key = lago
    receiver = receivers[0]
    receiver.statuses = [500, 200]
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=receiver.url, signature_algo="hmac",
                                                 event_types=["invoice.created"]))  # fmt: skip
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")
    d = dispatcher(app)
    drain(d)
    assert len(receiver.requests) == 2  # refused once, then taken
    (h1, b1), (h2, b2) = receiver.requests
    assert b1 == b2 and h1["x-lago-unique-key"] == h2["x-lago-unique-key"]
    assert h1["x-lago-signature"] == h2["x-lago-signature"]
    (delivery,) = deliveries.list_deliveries(sf, T)
    assert (delivery.status, delivery.attempts, delivery.event_type) == ("delivered", 2, "invoice.finalized")


def test_payments_voids_credit_notes_and_filters(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    sdk, app, _base, _key = lago
    every, voids = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac"))
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=voids.url, signature_algo="hmac",
                                                 event_types=["invoice.voided"]))  # fmt: skip
    sf = app.state.sessions
    store_invoice(sf, T, "INV-P", "globex")
    store_invoice(sf, T, "INV-V", "globex")
    payments.record_payment(sf, T, amount="1324.07", currency="USD", paid_on=date(2026, 12, 20), reference="ach-1",
                            invoice_id="INV-P")  # fmt: skip
    invoices.void(sf, T, "INV-V", "entered twice")
    d = dispatcher(app)
    drain(d)

    kinds = sorted((orjson.loads(b)["webhook_type"], orjson.loads(b)["invoice"]["lago_id"]) for _, b in every.requests)
    assert kinds == [("invoice.created", "INV-P"), ("invoice.created", "INV-V"), ("invoice.drafted", "INV-P"),
                     ("invoice.drafted", "INV-V"), ("invoice.payment_status_updated", "INV-P"),
                     ("invoice.voided", "INV-V")]  # fmt: skip
    _, body = next((h, b) for h, b in every.requests if b"payment_status_updated" in b)
    inv = orjson.loads(body)["invoice"]
    assert (inv["payment_status"], inv["total_paid_amount_cents"], inv["total_due_amount_cents"]) == (
        "succeeded", 132407, 0)  # fmt: skip
    assert list(messages(voids)) == ["invoice.voided"]  # only the type it named
    assert orjson.loads(voids.requests[0][1])["invoice"]["status"] == "voided"

    store_invoice(sf, T, "INV-C", "globex")
    credit_notes.create_credit_note(sf, T, "INV-C", "other", [{"description": "goodwill", "amount": "100.00"}])
    every.requests.clear()
    drain(d)
    notes = [orjson.loads(b) for _, b in every.requests if b"credit_note.created" in b]
    assert len(notes) == 1 and notes[0]["object_type"] == "credit_note"
    assert (notes[0]["credit_note"]["lago_invoice_id"], notes[0]["credit_note"]["total_amount_cents"]) == (
        "INV-C", 10000)  # fmt: skip


def test_deleting_an_endpoint_kills_its_pending_messages(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    sdk, app, _base, _key = lago
    receiver = receivers[0]
    receiver.statuses = [503]
    ep = sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=receiver.url, signature_algo="hmac",
                                                      event_types=["invoice.created"]))  # fmt: skip
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")
    clock = Clock()
    d = dispatcher(app, clock)
    d.schedule = (3600.0, 3600.0)  # the retry is an hour away
    drain(d)
    (pending,) = deliveries.list_deliveries(sf, T)
    assert (pending.status, pending.attempts, pending.last_status) == ("pending", 1, 503)
    sdk.webhook_endpoints.destroy(ep.lago_id)
    (dead,) = deliveries.list_deliveries(sf, T)
    assert (dead.status, dead.last_error) == ("dead", "endpoint deleted")
    clock.now += timedelta(hours=2)
    drain(d)
    assert len(receiver.requests) == 1  # nothing more is sent


def test_a_dispatcher_without_the_lago_renderer_fails_and_keeps_it(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    sdk, app, _base, _key = lago
    receiver = receivers[0]
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=receiver.url, event_types=["invoice.created"]))
    store_invoice(app.state.sessions, T, "INV-1", "globex")
    clock = Clock()
    d = dispatcher(app, clock, renderers={})
    d.schedule = (3600.0,)
    drain(d)
    (failed,) = deliveries.list_deliveries(app.state.sessions, T)
    assert failed.status == "pending" and "no renderer for Lago-format endpoints" in (failed.last_error or "")
    assert receiver.requests == []
    later = dispatcher(app, clock)  # the API's, an hour on: delivered
    clock.now += timedelta(hours=2)
    drain(later)
    assert [orjson.loads(b)["webhook_type"] for _, b in receiver.requests] == ["invoice.created"]


def test_wallet_transactions_are_lagos_wallet_transaction_created(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    """A wallet made through the SDK with 40 paid credits at 0.5 (20.00 EUR) and a monthly interval rule of 6
    granted credits: the top-up at creation and, on its first anniversary, the billing run's (3.00 EUR), each a
    `wallet_transaction.created` message holding what `wallet_transactions.find_all` answers for it, with Lago's
    `source` (manual, interval)."""
    from lago_python_client.models import Customer
    from lago_python_client.models.wallet import RecurringTransactionRule, RecurringTransactionRuleList, Wallet

    from meterstream.entities.wallets import interval_top_ups

    sdk, app, _base, _key = lago
    every, _ = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac",
                                                 event_types=["wallet_transaction.created"]))  # fmt: skip
    sdk.customers.create(Customer(external_id="c9", name="C9", currency="EUR"))
    rule = RecurringTransactionRule(trigger="interval", interval="monthly", granted_credits="6")
    rules = RecurringTransactionRuleList(__root__=[rule])
    made = sdk.wallets.create(Wallet(external_customer_id="c9", currency="EUR", rate_amount="0.5", paid_credits="40",
                                     recurring_transaction_rules=rules))  # fmt: skip
    created = datetime.fromisoformat(made.created_at.replace("Z", "+00:00"))
    assert interval_top_ups(app.state.sessions, created + timedelta(days=31)) == {"written": 1, "wallets": 1}
    drain(dispatcher(app))

    got = [orjson.loads(b) for _, b in every.requests]
    assert [(m["webhook_type"], m["object_type"]) for m in got] == [("wallet_transaction.created",
                                                                     "wallet_transaction")] * 2  # fmt: skip
    listed = {t.lago_id: t for t in sdk.wallet_transactions.find_all(made.lago_id)["wallet_transactions"]}
    # deliveries are not ordered (docs/webhooks.md): by the transactions' own order
    seen = sorted((m["wallet_transaction"] for m in got), key=lambda t: t["created_at"])
    figures = [(t["source"], t["transaction_status"], Decimal(t["amount"]), Decimal(t["credit_amount"])) for t in seen]
    assert figures == [("manual", "purchased", Decimal("20.00"), Decimal(40)),
                       ("interval", "granted", Decimal("3.00"), Decimal(6))]  # fmt: skip
    for t in seen:
        assert t["lago_wallet_id"] == made.lago_id and listed[t["lago_id"]].amount == t["amount"]


def test_customer_changes_are_lagos_customer_created_and_updated(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    """A customer made through the SDK and then changed (Lago's create is an upsert): `customer.created` then
    `customer.updated`, each holding what `customers.find` answers (as it is when first sent)."""
    from lago_python_client.models import Customer

    sdk, app, _base, _key = lago
    every, _ = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac",
                                                 event_types=["customer.created", "customer.updated"]))  # fmt: skip
    sdk.customers.create(Customer(external_id="c9", name="Globex", currency="EUR"))
    drain(dispatcher(app))
    sdk.customers.create(Customer(external_id="c9", name="Globex SA", currency="EUR", email="billing@globex.example"))
    drain(dispatcher(app))

    got = [orjson.loads(b) for _, b in every.requests]
    assert [(m["webhook_type"], m["object_type"], m["customer"]["name"]) for m in got] == [
        ("customer.created", "customer", "Globex"), ("customer.updated", "customer", "Globex SA")]  # fmt: skip
    found = sdk.customers.find("c9")
    latest = got[-1]["customer"]
    assert (latest["lago_id"], latest["external_id"], latest["email"], latest["currency"]) == (
        found.lago_id, "c9", "billing@globex.example", "EUR")  # fmt: skip


def test_subscriptions_are_lagos_started_and_terminated(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    """A subscription made through the SDK from an hour ago: `subscription.started` at once; terminated through the
    SDK: `subscription.terminated`; each holding what `subscriptions.find` answers when first sent."""
    from lago_python_client.models import Customer, Plan, Subscription

    sdk, app, _base, _key = lago
    every, _ = receivers
    kinds = ["subscription.started", "subscription.terminated"]
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac", event_types=kinds))
    sdk.customers.create(Customer(external_id="c9", name="C9", currency="EUR"))
    sdk.plans.create(Plan(name="Team", code="team", interval="monthly", amount_cents=1000, amount_currency="EUR"))
    began = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    sdk.subscriptions.create(Subscription(external_customer_id="c9", external_id="s9", plan_code="team",
                                          subscription_at=began.isoformat()))  # fmt: skip
    drain(dispatcher(app))
    sdk.subscriptions.destroy("s9")
    drain(dispatcher(app))

    got = [orjson.loads(b) for _, b in every.requests]
    assert [(m["webhook_type"], m["object_type"], m["subscription"]["external_id"], m["subscription"]["status"])
            for m in got] == [("subscription.started", "subscription", "s9", "active"),
                              ("subscription.terminated", "subscription", "s9", "terminated")]  # fmt: skip
    assert {m["subscription"]["plan_code"] for m in got} == {"team"}
    assert got[0]["subscription"]["external_customer_id"] == "c9"


def test_subscription_notices_are_lagos_termination_alert(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    """Through the SDK: a subscription ending in 10 days gets Lago's `subscription.termination_alert` at once (the
    15-day alert: the 45-day one is moot), its object as `subscriptions.find` answers it."""
    from lago_python_client.models import Customer, Plan, Subscription

    sdk, app, _base, _key = lago
    every, _ = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac",
                                                 event_types=["subscription.termination_alert"]))  # fmt: skip
    sdk.customers.create(Customer(external_id="c9", name="C9", currency="EUR"))
    sdk.plans.create(Plan(name="Team", code="team", interval="monthly", amount_cents=1000, amount_currency="EUR"))
    ends = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    sdk.subscriptions.create(Subscription(external_customer_id="c9", external_id="s9", plan_code="team",
                                          ending_at=ends.isoformat()))  # fmt: skip
    drain(dispatcher(app))
    (got,) = [orjson.loads(b) for _, b in every.requests]
    assert (got["webhook_type"], got["object_type"], got["subscription"]["external_id"]) == (
        "subscription.termination_alert", "subscription", "s9")  # fmt: skip
    assert got["subscription"]["ending_at"].startswith(f"{ends:%Y-%m-%dT%H:%M:%S}")


def test_subscription_changes_are_lagos_subscription_updated(lago, receivers) -> None:  # type: ignore[no-untyped-def]
    """Through the SDK: a rename (`subscriptions.update`) and an upgrade (`subscriptions.create` of the same
    external id with another plan: Lago's plan change) each send `subscription.updated`, the object as
    `subscriptions.find` answers it after the change; creating it sends none."""
    from lago_python_client.models import Customer, Plan, Subscription

    sdk, app, _base, _key = lago
    every, _ = receivers
    sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=every.url, signature_algo="hmac",
                                                 event_types=["subscription.updated"]))  # fmt: skip
    sdk.customers.create(Customer(external_id="c9", name="C9", currency="EUR"))
    for code, cents in (("team", 1000), ("scale", 5000)):
        sdk.plans.create(Plan(name=code.title(), code=code, interval="monthly", amount_cents=cents,
                              amount_currency="EUR"))  # fmt: skip
    sdk.subscriptions.create(Subscription(external_customer_id="c9", external_id="s9", plan_code="team"))
    drain(dispatcher(app))
    assert every.requests == []
    sdk.subscriptions.update(Subscription(name="Main account"), "s9")
    drain(dispatcher(app))
    sdk.subscriptions.create(Subscription(external_customer_id="c9", external_id="s9", plan_code="scale"))
    drain(dispatcher(app))
    got = [orjson.loads(b) for _, b in every.requests]
    assert [(m["webhook_type"], m["subscription"]["external_id"], m["subscription"]["name"]) for m in got] == [
        ("subscription.updated", "s9", "Main account"), ("subscription.updated", "s9", "Main account")]  # fmt: skip
    assert [m["subscription"]["plan_code"] for m in got] == ["team", "scale"]  # the upgrade is at once
