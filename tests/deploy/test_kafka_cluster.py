"""A real 3-node KRaft cluster (deploy/kafka_cluster.py, `meterstream kafka start --brokers 3`): our topics are
created with replication factor 3 and min.insync.replicas 2, acks=all writes go on while one node is killed, and
after it restarts every message is there exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from meterstream.deploy import kafka_cluster, kafka_local
from meterstream.ingest.topics import Topics, ensure_topics, entities_topic, replication
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka


def test_replication_by_cluster_size() -> None:
    # one broker: as before clusters (RF 1, no extra config); 2: both copies, one may be down; 3+: 3 copies, 2 in sync
    assert replication(1) == (1, {})
    assert replication(2) == (2, {"min.insync.replicas": "1"})
    assert replication(3) == (3, {"min.insync.replicas": "2"})
    assert replication(5) == (3, {"min.insync.replicas": "2"})


def test_node_properties_make_a_three_voter_quorum(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_port=40000, kafka_brokers=3, kafka_bootstrap=None)
    layout = kafka_cluster.Layout(3, 40000, "AAECAwQFBgcICQoLDA0ODw")
    props = dict(line.split("=", 1) for line in kafka_cluster.node_properties(settings, layout, 2).splitlines() if line)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:40001,2@127.0.0.1:40003,3@127.0.0.1:40005"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40002,CONTROLLER://127.0.0.1:40003"
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert settings.bootstrap == "127.0.0.1:40000,127.0.0.1:40002,127.0.0.1:40004"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("kafka-cluster")
    settings = Settings(home=home, kafka_port=kafka_cluster.free_port_block(6), kafka_brokers=3,
                        kafka_bootstrap=None, partitions=3, topic_prefix="kc-")  # fmt: skip
    try:
        st = kafka_local.start(settings, wait_seconds=120)
        assert st.answering and len(st.nodes) == 3
        yield settings
    finally:
        kafka_local.stop(settings, kill=True)  # throwaway data: no need for a controlled shutdown
    assert all(n.pid is None for n in kafka_cluster.status(settings))


def _produce(settings: Settings, topic: str, values: range) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 60_000, "log_level": 0})  # fmt: skip
    failed: list[str] = []

    def report(err, msg) -> None:
        if err is not None:
            failed.append(str(err))

    for v in values:
        producer.produce(topic, key=f"t/c{v % 7}", value=str(v).encode(), on_delivery=report)
    assert producer.flush(90) == 0, "messages still in flight"
    assert not failed, failed[:3]


def _consume_all(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list[int]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"check-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    consumer.subscribe([topic])
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    seen.append(int(msg.value()))
        for msg in consumer.consume(500, timeout=1.0):  # nothing more than expected
            if msg.error() is None:
                seen.append(int(msg.value()))
    finally:
        consumer.close()
    return seen


def _topic_min_isr(admin: AdminClient, names: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Each topic's min.insync.replicas. DescribeConfigs goes to any broker, and a broker may learn of a topic
    just created a moment after the one that answered the metadata (KRaft metadata is eventually consistent):
    UNKNOWN_TOPIC_OR_PART is retried until `timeout`, as a client would."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
            return {res.name: fut.result()["min.insync.replicas"].value for res, fut in configs.items()}
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _metadata_with(admin: AdminClient, names: list[str], wait_s: float = 30.0) -> Any:
    """The cluster's metadata once it lists every topic of `names` with a leader for each partition. The answering
    broker may be another than the one that created them, and KRaft metadata reaches each broker on its own
    schedule (a fresh-clone CI run saw a topic missing from a list taken right after `ensure_topics`)."""
    deadline = time.monotonic() + wait_s
    while True:
        md = admin.list_topics(timeout=10)
        led = {n for n, t in md.topics.items() if t.partitions and all(p.leader >= 0 for p in t.partitions.values())}
        if led.issuperset(names) or time.monotonic() > deadline:
            return md
        time.sleep(0.2)


def test_rf3_min_isr2_and_one_node_killed_and_restarted(cluster: Settings) -> None:
    settings = cluster
    assert ensure_topics(settings)  # created now, from the metadata's 3 brokers
    topics = Topics.from_settings(settings)
    ours = [*topics.all(), entities_topic(settings)]
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    md = _metadata_with(admin, ours)
    assert sorted(md.brokers) == [1, 2, 3]
    for name in ours:
        for p in md.topics[name].partitions.values():
            assert sorted(p.replicas) == [1, 2, 3], (name, p.id, p.replicas)
    min_isr = _topic_min_isr(admin, ours)
    assert min_isr == {name: "2" for name in ours}
    assert len(min_isr) == 5

    topic = topics.usage
    _produce(settings, topic, range(0, 300))
    # kill the leader of partition 0: its leadership must move, and acks=all writes go on with 2 of 3 in sync
    victim = md.topics[topic].partitions[0].leader
    assert kafka_local.stop(settings, node=victim, kill=True)
    assert kafka_cluster.status(settings)[victim - 1].pid is None
    _produce(settings, topic, range(300, 600))
    seen = _consume_all(settings, topic, 600)
    assert sorted(seen) == list(range(600))
    after = admin.list_topics(timeout=10).topics[topic].partitions[0]
    assert after.leader != victim and victim not in after.isrs and len(after.isrs) == 2

    kafka_local.start(settings, node=victim, wait_seconds=120)
    _produce(settings, topic, range(600, 800))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the restarted node catches up and is back in every ISR
        parts = admin.list_topics(timeout=10).topics[topic].partitions.values()
        if all(sorted(p.isrs) == [1, 2, 3] for p in parts):
            break
        time.sleep(0.5)
    assert all(sorted(p.isrs) == [1, 2, 3] for p in parts), [(p.id, p.isrs) for p in parts]
    seen = _consume_all(settings, topic, 800)
    assert sorted(seen) == list(range(800)), "every message there exactly once"
    # the broker's own count of what the topic holds, every partition summed: 800 records, no more
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "count"})
    try:
        total = 0
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p.id), timeout=10)
            total += high - low
    finally:
        consumer.close()
    assert total == 800
