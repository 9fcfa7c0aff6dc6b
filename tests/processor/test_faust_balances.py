"""The faust engine debits prepaid wallets through the same `Balances` as the native engine (processor/balances.py):
a real broker, the faust worker in a child process (`faust_engine.run_worker`), a wallet created in the entity
store and carried to the `entities` topic by the outbox relay.

Amounts by hand: tests/data/catalog.yaml rates tenant t1's `storage_gb_hours` at 0.001 USD per unit, so an event
of 1000 units costs 1.00 USD. A wallet of 5 USD credits (rate 1) falls 4.00, 3.00, 2.00 (a duplicate of the third
event, dropped by dedup, debits nothing), 1.00, 0.00: then `suspend` (balance_exhausted) on the provisioning topic.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from balance_stream import DATA, T, Tail, balance_stream, command_of, event, new_customer
from native_child import native_env

from meterstream.entities.relay import OutboxRelay
from meterstream.ingest.producer import make_producer
from meterstream.schemas.event import event_key
from meterstream.schemas.provisioning import BALANCES, PROVISIONING, decode_balance, decode_command

pytest.importorskip("faust")
pytestmark = pytest.mark.kafka


def test_the_faust_engine_debits_the_wallet_and_suspends_at_zero(kafka_settings, tmp_path) -> None:
    settings, topics, sf = balance_stream(kafka_settings, tmp_path, "fb")
    relay = OutboxRelay(settings, sf, replay=False).start()
    new_customer(sf, "pre", "5")
    assert relay.flush(10.0)
    balances = Tail(settings, settings.topic(BALANCES))
    provisioning = Tail(settings, settings.topic(PROVISIONING))
    env = native_env(settings, DATA / "catalog.yaml", tmp_path)
    code = "from meterstream.processor.faust_engine import run_worker; " \
           "from meterstream.schemas.settings import Settings; run_worker(Settings())"  # fmt: skip
    log = tmp_path / "faust.log"
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=tmp_path)  # fmt: skip
    producer = make_producer(settings, **{"linger.ms": 0})
    try:
        at = datetime.now(UTC) + timedelta(seconds=1)  # after the wallet's start
        seen = []
        for i, eid in enumerate(["e0", "e1", "e2", "e2", "e3", "e4"]):
            producer.produce(topics.usage, event(eid, "pre", at=at + timedelta(seconds=i)), event_key(T, "pre"))
            producer.flush(10)
            if i == 3:
                continue  # the duplicate: nothing new to wait for
            want = f"{4 - len(seen)}.00"
            try:
                balances.wait(lambda v, want=want: (s := decode_balance(v)).customer == "pre" and s.balance == want,
                              timeout=120 if not seen else 30)  # fmt: skip
            except AssertionError:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"no balance {want}; worker log:\n{tail}") from None
            seen.append(want)
        assert seen == ["4.00", "3.00", "2.00", "1.00", "0.00"]
        _, raw = provisioning.wait(command_of("pre", "suspend"))
        suspend = decode_command(raw)
        assert (suspend.state["balance"], suspend.state["used"], suspend.state["credits_in"]) == ("0.00", "5.00",
                                                                                                   "5.00")  # fmt: skip
        time.sleep(1.0)  # nothing more comes: the duplicate debited nothing
        snaps = [decode_balance(v) for _, v in balances.seen]
        assert [s.balance for s in snaps if s.customer == "pre"] == ["4.00", "3.00", "2.00", "1.00", "0.00"]
    finally:
        child.terminate()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        relay.stop()
        balances.close()
        provisioning.close()
