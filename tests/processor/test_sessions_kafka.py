"""Session records through the native processor on a real broker, killed mid-stream: every session is charged
once. By hand: each call is 90 s sent as three records of 30 s (sequence 1, 2, final 3) under 60/60 increments,
a 0.10 connect fee and 0.06 a minute in every band: 0.16, 0.00 and 0.06, 0.22 a call; 3,000 calls, 660.00 EUR.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from native_child import native_env, start_native

from meterstream.ingest.dlq import read_topic
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.runner import state_dir
from meterstream.processor.sessions import session_key
from meterstream.processor.store import PartitionStore
from meterstream.schemas.event import event_key, format_time
from meterstream.schemas.rated import unpack

pytestmark = pytest.mark.kafka
T = "telco"
CATALOG = """
version: 1
plans:
  - id: tel
    currency: EUR
    telecom:
      version: 1
      timezone: Europe/Berlin
      rounding: {decimals: 4, method: half_up}
      time_bands: {default: any, periods: []}
      destinations: {DE_FIXED: {group: national, prefixes: ["49"]}}
      rates: {RT: {connect_fee: "0.10", increments: "60/60", groups: [{price: "0.06", per: 60}]}}
      meters: {voice_seconds: {kind: voice, rates: [{destination: DE_FIXED, rate: RT}]}}
assignments:
  - {tenant: telco, customer: "*", plan: tel}
"""
CALLS = 3_000
CUSTOMERS = 20


def records() -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    start = format_time(now - timedelta(minutes=5))
    out = []
    for seq in (1, 2, 3):  # interleaved: every call's first record, then every second, then every final
        for c in range(CALLS):
            customer = f"line-{c % CUSTOMERS}"
            session = {"id": f"call-{c}", "sequence": seq, "start": start, "final": seq == 3}
            doc = {"id": f"call-{c}-{seq}", "tenant": T, "customer": customer, "meter": "voice_seconds",
                   "quantity": "30", "time": format_time(now), "dimensions": {"destination": "+4930123456"},
                   "session": session}  # fmt: skip
            out.append((orjson.dumps(doc), event_key(T, customer)))
    return out


def test_a_processor_killed_mid_stream_charges_every_session_once(kafka_settings, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    prefix = f"sess{uuid.uuid4().hex[:8]}."
    settings = kafka_settings.model_copy(update={"home": tmp_path, "topic_prefix": prefix, "partitions": 2,
                                                 "catalog": catalog})  # fmt: skip
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    env = native_env(settings, catalog, tmp_path)

    def read_rated() -> list[dict]:
        return [r for m in read_topic(settings, topics.rated) for r in unpack(m.value())]

    child = start_native(env)
    messages = records()
    try:
        producer = make_producer(settings)
        for value, key in messages[: 2 * CALLS]:  # every call's first two records
            producer.produce(topics.usage, value, key)
        producer.flush(30)
        deadline = time.monotonic() + 120
        watch = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
        try:
            while not any(watch.get_watermark_offsets(TopicPartition(topics.rated, p), 5)[1] for p in (0, 1)):
                assert time.monotonic() < deadline, "the processor rated nothing"
                time.sleep(0.005)
        finally:
            child.send_signal(signal.SIGKILL)  # as soon as something was rated: later batches in flight
            watch.close()
        child.wait(30)
        at_kill = len(read_rated())
        for value, key in messages[2 * CALLS :]:  # the final records, for a processor restarted from its state
            producer.produce(topics.usage, value, key)
        producer.flush(30)
        child = start_native(env)
        deadline = time.monotonic() + 120
        rated = read_rated()
        while len({r["id"] for r in rated}) < 3 * CALLS and time.monotonic() < deadline:
            time.sleep(0.5)
            rated = read_rated()
        time.sleep(2)  # the last batch's state commit
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(60)
    print(f"rated before the kill: {at_kill} records; after: {len(rated)} records, {len({r['id'] for r in rated})} ids")
    by_id: dict[str, str] = {}
    for r in rated:  # a record re-sent after the crash carries the same amount
        assert by_id.setdefault(r["id"], r["amount"]) == r["amount"], r["id"]
    assert len(by_id) == 3 * CALLS
    assert {by_id[f"call-{c}-{s}"] for c in range(CALLS) for s in (1,)} == {"0.1600"}
    assert {by_id[f"call-{c}-{s}"] for c in range(CALLS) for s in (2,)} == {"0.0000"}
    assert {by_id[f"call-{c}-{s}"] for c in range(CALLS) for s in (3,)} == {"0.0600"}
    assert sum(Decimal(a) for a in by_id.values()) == Decimal("660.00")
    dead = list(read_topic(settings, topics.dead_letters, timeout=5))
    assert dead == []
    # the committed session states: every call closed at sequence 3, 90 s, 0.22 charged
    finals = {}
    for p in (0, 1):
        store = PartitionStore(state_dir(settings) / f"p{p}")
        try:
            for c in range(CALLS):
                entry = store.get(session_key(T, f"line-{c % CUSTOMERS}", f"call-{c}"))
                if entry is not None:
                    finals[c] = entry[0]
        finally:
            store.close()
    expected = {"closed": 3, "missing": [], "usage": "90", "cost": "0.2200"}  # what is kept of a finished call
    assert all(v == expected for v in finals.values()) and len(finals) == CALLS
