"""An automatic top-up end to end with a real broker: the native processor sees the wallet cross its rule's line
and asks on the `notifications` topic, the notifications relay (as the API process runs it) writes the top-up in
the entity store, the outbox relay carries the wallet's new version to the `entities` topic, and the processor's
balance rises. The same request delivered again writes nothing more.

Amounts by hand: tests/data/catalog.yaml rates tenant t1's `storage_gb_hours` at 0.001 USD per unit, an event of
1000 units costs 1.00 USD. Wallet: 5 USD paid, rule "at or below 2 credits, add 10 paid". Balance 4.00, 3.00,
2.00 (at the line: one request), then 2.00 + 10.00 = 12.00 once the top-up is back.
"""

from __future__ import annotations

import time
import uuid

import pytest
from balance_stream import T, Tail, balance_stream, event, start_processor
from confluent_kafka import Producer

from meterstream.entities.customers import put_customer
from meterstream.entities.relay import OutboxRelay
from meterstream.entities.wallets import TopUp, WalletSpec, create_wallet, list_transactions
from meterstream.ingest.producer import make_producer
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.event import event_key
from meterstream.schemas.provisioning import BALANCES, NOTIFICATIONS, decode_balance, decode_notification
from meterstream.webhooks.notifications_relay import start_notifications_relay

pytestmark = pytest.mark.kafka


def test_a_crossing_tops_up_once_through_the_relay_and_comes_back(kafka_settings, tmp_path) -> None:
    settings, topics, sf = balance_stream(kafka_settings, tmp_path, "tu")
    put_customer(sf, CustomerDoc(tenant=T, external_id="auto", name="auto", version=0, currency="USD"))
    rule = {"trigger": "threshold", "threshold_credits": "2", "paid_credits": "10"}
    wallet, _ = create_wallet(sf, WalletSpec(T, "auto", "USD", rules=[rule]), [TopUp("paid", "5")])
    relay = OutboxRelay(settings, sf, replay=False).start()
    assert relay.flush(10.0)
    stop, thread = start_processor(settings)
    notes = start_notifications_relay(settings, sf, group=f"tu-{uuid.uuid4().hex[:6]}")
    balances = Tail(settings, settings.topic(BALANCES))
    requests = Tail(settings, settings.topic(NOTIFICATIONS))
    producer = make_producer(settings, **{"linger.ms": 0})

    def balance_is(want: str):  # type: ignore[no-untyped-def]
        return lambda v: (s := decode_balance(v)).customer == "auto" and s.balance == want

    try:
        for i, want in enumerate(["4.00", "3.00", "2.00"]):
            producer.produce(topics.usage, event(f"a{i}", "auto"), event_key(T, "auto"))
            producer.flush(10)
            crossed = time.perf_counter()
            balances.wait(balance_is(want), timeout=60)
        arrived, raw = requests.wait(lambda v: decode_notification(v).kind == "wallet.top_up_requested")
        request = decode_notification(raw)
        assert (request.data["wallet"], request.data["paid_credits"], request.data["balance"]) == (wallet.id, "10",
                                                                                                    "2.00")  # fmt: skip
        back, _ = balances.wait(balance_is("12.00"), timeout=30)  # the top-up came back through the entities topic
        print(f"crossing event -> request {arrived - crossed:.3f} s, -> topped-up balance {back - crossed:.3f} s")

        # the same request delivered again (a processor's repeat): nothing more is written
        p = Producer({"bootstrap.servers": settings.bootstrap})
        p.produce(settings.topic(NOTIFICATIONS), raw, b"t1\x1fauto")
        assert p.flush(10) == 0
        deadline = time.monotonic() + 20
        while notes.totals.get("top_up_repeated", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (notes.totals.get("top_up_written"), notes.totals.get("top_up_repeated")) == (1, 1), notes.totals
        autos = [t for t in list_transactions(sf, T, wallet.id) if (t.reference or "").startswith("auto:")]
        assert [(t.kind, str(t.credits), t.reference) for t in autos] == [("paid", "10", f"auto:{request.id}:paid")]
        kinds = [decode_notification(v).kind for _, v in requests.seen]
        assert kinds.count("wallet.top_up_requested") == 2  # the processor's one + the repeat this test sent
    finally:
        stop.set()
        thread.join(30)
        notes.stop()
        relay.stop()
        balances.close()
        requests.close()
