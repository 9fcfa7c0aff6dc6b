"""Session messages with a real broker and the native processor in a thread: a session reaching a `disconnect` cap
gets one `disconnect` command on the provisioning topic, and a session held behind a gap with no further record is
released by the processor's tick (its records carry Kafka timestamps 11 minutes old, so the 10 minutes have passed
when they are read), reported on the notifications topic and rated on the rated topic.

By hand (60/60, 0.10 connect fee, 0.06/min, one band `any`; cap 0.20 with `disconnect`): call `cut-1` is 30 s
(0.16) then 45 s (30..75 s: the second minute would make 0.22, charged 0.04, cut at 120 s). Call `held-1` is 30 s
(0.16), record 2 lost, record 3 of 60 s held, then released as if record 2 were empty: 30..90 s opens the second
minute, which the cap cuts to 0.04 as for `cut-1`: the release sends that session's `disconnect` too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import yaml
from balance_stream import Tail, balance_stream, start_processor
from test_sessions_kafka import CATALOG as UNCAPPED

from meterstream.ingest.dlq import read_topic
from meterstream.ingest.producer import make_producer
from meterstream.schemas.event import event_key, format_time
from meterstream.schemas.provisioning import NOTIFICATIONS, PROVISIONING, decode_command, decode_notification
from meterstream.schemas.rated import unpack

pytestmark = pytest.mark.kafka
T = "telco"
CAP = {"max_cost": [{"amount": "0.20", "strategy": "disconnect"}]}


def capped_catalog() -> str:
    """test_sessions_kafka's plan (60/60, 0.10 connect fee, 0.06/min, band `any`) with the session cap above."""
    data = yaml.safe_load(UNCAPPED)
    data["plans"][0]["telecom"]["sessions"] = CAP
    return yaml.safe_dump(data)


def call(eid: str, customer: str, session: str, seq: int, seconds: str, start: datetime) -> bytes:
    return orjson.dumps({"id": eid, "tenant": T, "customer": customer, "meter": "voice_seconds", "quantity": seconds,
                         "time": format_time(start + timedelta(seconds=30)), "dimensions": {"destination": "+4930123"},
                         "session": {"id": session, "sequence": seq, "start": format_time(start)}})  # fmt: skip


def test_disconnect_and_a_release_by_the_clock_reach_their_topics(kafka_settings, tmp_path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(capped_catalog())
    settings, topics, _ = balance_stream(kafka_settings, tmp_path, "sout", catalog=catalog)
    stop, thread = start_processor(settings)
    provisioning = Tail(settings, settings.topic(PROVISIONING))
    notifications = Tail(settings, settings.topic(NOTIFICATIONS))
    producer = make_producer(settings, **{"linger.ms": 0})
    try:
        now = datetime.now(UTC)
        old_ms = int((now - timedelta(minutes=11)).timestamp() * 1000)
        start = now - timedelta(minutes=12)
        for eid, customer, session, seq, seconds, ts in [
            ("a1", "line-1", "cut-1", 1, "30", None),
            ("a2", "line-1", "cut-1", 2, "45", None),
            ("b1", "line-2", "held-1", 1, "30", old_ms),
            ("b3", "line-2", "held-1", 3, "60", old_ms + 1),
        ]:
            value = call(eid, customer, session, seq, seconds, start)
            if ts is None:
                producer.produce(topics.usage, value, event_key(T, customer))
            else:
                producer.produce(topics.usage, value, event_key(T, customer), timestamp=ts)
        producer.flush(10)
        t0 = time.perf_counter()

        _, raw = provisioning.wait(
            lambda v: (c := decode_command(v)).command == "disconnect" and c.customer == "line-1"
        )
        cmd = decode_command(raw)
        assert (cmd.customer, cmd.reason) == ("line-1", "session_max_cost")
        assert (cmd.state["session_id"], cmd.state["band"], cmd.state["max_cost"]) == ("cut-1", "any", "0.20")
        assert (cmd.state["cost"], cmd.state["disconnect_at"]) == ("0.2000", "120")

        def note(kind: str):
            return lambda v: (n := decode_notification(v)).kind == kind and n.data["session_id"] == "held-1"

        _, raw = notifications.wait(note("session.held"))
        assert decode_notification(raw).data["sequences"] == [3]
        arrived, raw = notifications.wait(note("session.released"))
        released = decode_notification(raw)
        print(f"released by the tick {arrived - t0:.3f}s after the produce")
        assert released.data["sequences"] == [3] and released.data["missing"] == [2]
        assert released.data["amount"] == "0.0400"
        _, raw = provisioning.wait(lambda v: decode_command(v).customer == "line-2")
        assert decode_command(raw).state["session_id"] == "held-1" and decode_command(raw).command == "disconnect"
        deadline = time.monotonic() + 20
        while True:
            rows = {r["id"]: r for m in read_topic(settings, topics.rated, timeout=2) for r in unpack(m.value())}
            if "b3" in rows or time.monotonic() > deadline:
                break
        assert {k: rows[k]["amount"] for k in ("a1", "a2", "b1", "b3")} == {
            "a1": "0.1600", "a2": "0.0400", "b1": "0.1600", "b3": "0.0400"}  # fmt: skip
        time.sleep(1.0)  # later ticks release nothing more and the disconnect is not repeated
        assert sorted(decode_command(v).state["session_id"] for _, v in provisioning.seen) == ["cut-1", "held-1"]
        assert sum(decode_notification(v).kind == "session.released" for _, v in notifications.seen) == 1
    finally:
        stop.set()
        thread.join(30)
        provisioning.close()
        notifications.close()
