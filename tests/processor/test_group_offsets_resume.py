"""A restarted processor whose state is ahead of the consumer group's committed offsets brings the group up to it.

The input position that counts is the one in the state store; the group's offset is committed after it (step 5 of
processor/checkpoint.py, asynchronously) for the tools that read the group: the lag probes, `up`, the demo and the
chaos run wait for it. An instance killed between the two leaves the group behind; before this test, an instance
started on that state found nothing left to read, so it committed nothing, and the group stayed behind for ever
(CI, session 15: tests/e2e/test_pipeline.py waited 240 s at "processed 3000/6000"). Here the group's offsets are put
back to 0 while no instance runs, and a new instance on the same state must bring the group's lag to 0 with no new
event (and rate nothing twice).
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from test_group import CUSTOMERS, Instance, event, wait_for

from meterstream.ingest.dlq import read_topic
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.runner import app_id
from meterstream.schemas.rated import unpack
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
PARTITIONS = 4
EVENTS = 200


def test_a_restart_on_state_ahead_of_the_group_commits_the_group_up_to_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(
        update={"home": tmp_path / "tools", "topic_prefix": f"gor{uuid.uuid4().hex[:8]}.", "partitions": PARTITIONS}
    )
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    producer = make_producer(settings)
    for i in range(EVENTS):
        customer = CUSTOMERS[i % len(CUSTOMERS)]
        producer.produce(topics.usage, event(i, customer), f"t1/{customer}".encode())
    assert producer.flush(30) == 0
    probe = LagProbe(settings)
    base = tmp_path / "instances"
    base.mkdir()
    first = Instance("a", settings, base)
    second = None
    try:
        wait_for("drained", lambda: probe.group_lag(app_id(settings), [topics.usage]) == 0, [first])
        first.stop(signal.SIGTERM)

        # the group behind the state, as after a kill between the state's commit and the group's
        rewind = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": app_id(settings)})
        rewind.commit(offsets=[TopicPartition(topics.usage, p, 0) for p in range(PARTITIONS)], asynchronous=False)
        rewind.close()
        assert probe.group_lag(app_id(settings), [topics.usage]) == EVENTS

        second = Instance("a", settings, base)  # the same home: the same local state, at the topic's end
        wait_for(
            "the group brought up to the state with no new event",
            lambda: probe.group_lag(app_id(settings), [topics.usage]) == 0,
            [second],
            timeout=45.0,
        )
    finally:
        for inst in (second, first):
            if inst is not None:
                inst.stop()
        probe.close()
    ids = [r["id"] for m in read_topic(settings, topics.rated) for r in unpack(m.value())]
    assert len(ids) == EVENTS and len(set(ids)) == EVENTS  # nothing rated twice
