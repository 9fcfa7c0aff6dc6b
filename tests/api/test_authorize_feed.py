"""The API's balance feed on a real broker: a snapshot on the `balances` topic answers /v1/authorize from memory
(balance_source "stream"), a newer one replaces it, a tombstone forgets it; a final rated record of a held
session on `rated-usage` releases the hold. Figures by hand (plan of test_authorize.py: 0.10 connect fee,
0.06/min peak, 60/60; bench/authorize_setup.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from by_path import load
from confluent_kafka import Producer
from test_authorize import TUE_10

from meterstream.api.routes.authorize import feed_of
from meterstream.entities import holds
from meterstream.ingest.topics import RATED
from meterstream.schemas.provisioning import BALANCES, BalanceSnapshot, customer_key, encode
from meterstream.schemas.rated import dumps, pack

setup = load("bench/authorize_setup.py")  # the plan and app of bench/authorize.py
NAT, add_customer, write_catalog = setup.NAT, setup.add_customer, setup.write_catalog

pytestmark = pytest.mark.kafka


def wait_for(check: Callable[[], object], timeout: float = 20.0, every: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        if every is not None:
            every()
        time.sleep(0.2)


def test_snapshots_and_final_records_from_kafka(api_settings, make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = api_settings.model_copy(update={"catalog": write_catalog(tmp_path)})
    client = make_client(settings)  # owns its producer: the relay and the balance feed run
    app = client.app
    add_customer(app, "c1")
    ingest = {"Authorization": f"Bearer {app.state.keys.create('t1', 'ingest', 'i')[1]}"}
    producer = Producer({"bootstrap.servers": settings.bootstrap})

    def snapshot(balance: str) -> None:
        snap = BalanceSnapshot(tenant="t1", customer="c1", currency="EUR", balance=balance, consumed="0",
                               as_of="2026-12-01T10:00:00Z")  # fmt: skip
        producer.produce(settings.topic(BALANCES), encode(snap), key=customer_key("t1", "c1"))
        producer.flush(10)

    def authorize(**body):  # type: ignore[no-untyped-def]
        call = {"customer": "c1", "meter": "voice_seconds", "dimensions": NAT, "start": TUE_10, **body}
        r = client.post("/v1/authorize", headers=ingest, json=call)
        assert r.status_code == 200, r.text
        return r.json()

    feed = feed_of(app)
    snapshot("1.00")
    wait_for(lambda: feed.get("t1", "c1") is not None)
    a = authorize()  # 0.10 + 15 x 0.06 = 1.00: 900 s
    assert (a["balance"], a["balance_source"], a["allowed"]) == ("1.00", "stream", "900")
    snapshot("0.40")  # 0.10 + 5 x 0.06: 300 s
    wait_for(lambda: feed.get("t1", "c1").balance == "0.40")
    held = authorize(hold=True, session_id="call-1")
    assert (held["allowed"], held["hold"]["amount"]) == ("300", "0.4000")
    assert authorize()["allowed"] == "0"  # all of it is held

    final = {"tenant": "t1", "id": "e1", "customer": "c1", "subject": "", "meter": "voice_seconds",
             "time": "2026-12-01T10:05:00.000Z", "period": "2026-12", "quantity": "300", "amount": "0.40",
             "cumulative": "300", "currency": "EUR", "plan": "prepaid", "line": "voice", "source": "",
             "dimensions": {"session_id": "call-1", "final": "true"}, "src_partition": 0, "src_offset": 1}  # fmt: skip

    def send_final() -> None:  # again until seen: the reader starts rated-usage at its end offsets
        for value in pack([dumps(final)]):
            producer.produce(settings.topic(RATED), value, key=b"t1/c1")
        producer.flush(10)

    hold_id = held["hold"]["id"]
    wait_for(lambda: holds.get_hold(app.state.sessions, "t1", hold_id).status == "released", every=send_final)
    got = orjson.loads(client.get(f"/v1/authorize/holds/{hold_id}", headers=ingest).content)
    assert (got["status"], got["reason"]) == ("released", "final record")
    assert authorize()["allowed"] == "300"  # released: the 0.40 is available again
    producer.produce(settings.topic(BALANCES), None, key=customer_key("t1", "c1"))  # tombstone
    producer.flush(10)
    wait_for(lambda: feed.get("t1", "c1") is None)
