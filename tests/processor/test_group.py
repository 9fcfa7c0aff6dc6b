"""Processor instances in one consumer group, with changelog-backed state, on a real broker.

Each instance is its own OS process with its own home (its own local RocksDB stores), as on separate
machines. Two share the partitions; the first is killed (SIGKILL) and its home deleted, so the other can
only get the moved partitions' state from the changelog; a third joins and takes partitions over. Duplicates
of events seen before each move are sent after it: only restored dedup state recognizes them. At the end every
event is counted once, every id is rated once (replays are byte-identical copies), and each customer's
amounts add up to the graduated price of its quantity, worked out by hand (running totals survived the moves).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from meterstream.deploy.ports import free_port
from meterstream.ingest.dlq import read_topic
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.changelog import ChangelogReader
from meterstream.processor.runner import app_id
from meterstream.processor.store import PartitionStore
from meterstream.schemas.rated import unpack
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"
PARTITIONS = 4
CUSTOMERS = [f"c{i}" for i in range(8)]
RUN = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
from meterstream.processor.runner import run_native
from meterstream.schemas.settings import Settings
run_native(Settings(), 0)
"""


def graduated(q: int) -> Decimal:
    """tests/data/catalog.yaml, plan basic, api_calls: 10 free, up to 100 at 0.5, then 0.25."""
    return Decimal("0.5") * min(max(q - 10, 0), 90) + Decimal("0.25") * max(q - 100, 0)


class Instance:
    def __init__(self, name: str, settings: Settings, base: Path) -> None:
        self.name = name
        self.home = base / name
        self.log = base / f"{name}.log"
        env = dict(os.environ)
        env.update({
            "METERSTREAM_HOME": str(self.home),
            "METERSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
            "METERSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "METERSTREAM_CATALOG": str(CATALOG),
            "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
            "METERSTREAM_PROCESSOR_ENGINE": "native",
        })  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", RUN], env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def members(settings: Settings) -> dict[str, set[int]]:
    """The group's members (by member id) and the partitions the group gave each."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    try:
        group = admin.describe_consumer_groups([app_id(settings)])[app_id(settings)].result(timeout=10)
    except KafkaException:  # e.g. NOT_COORDINATOR while a fresh broker loads the group: ask again
        return {}
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in group.members}


def wait_for(what: str, cond, instances: list[Instance], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for inst in instances:
            assert inst.proc.poll() is None, f"{inst.name} exited {inst.proc.returncode}:\n{inst.tail()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s\n" + "\n".join(i.tail() for i in instances)
        time.sleep(0.5)


AT = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # one period for every event


def event(i: int, customer: str) -> bytes:
    return orjson.dumps({"id": f"e{i}", "tenant": "t1", "customer": customer, "meter": "api_calls",
                         "quantity": "1", "time": AT})  # fmt: skip


def test_instances_share_move_and_restore_partitions(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(
        update={"home": tmp_path / "tools", "topic_prefix": f"grp{uuid.uuid4().hex[:8]}.", "partitions": PARTITIONS}
    )
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    producer = make_producer(settings)
    sent: list[tuple[int, str]] = []  # (event number, customer), duplicates included
    per_customer: Counter[str] = Counter()  # distinct events per customer
    n = 0

    def send(new: int, repeat: list[tuple[int, str]] = (), bad: int = 0) -> None:
        nonlocal n
        for _ in range(new):
            customer = CUSTOMERS[n % len(CUSTOMERS)]
            producer.produce(topics.usage, event(n, customer), f"t1/{customer}".encode())
            sent.append((n, customer))
            per_customer[customer] += 1
            n += 1
        for i, customer in repeat:  # the same id and customer again: lands on the same partition
            producer.produce(topics.usage, event(i, customer), f"t1/{customer}".encode())
            sent.append((i, customer))
        for j in range(bad):
            producer.produce(topics.usage, b'{"id": "bad%d", "tenant": "t1"}' % j, b"t1/c0")
            sent.append((-1, "bad"))
        assert producer.flush(30) == 0

    probe = LagProbe(settings)

    def drained() -> bool:
        return probe.group_lag(app_id(settings), [topics.usage]) == 0

    base = tmp_path / "instances"
    base.mkdir()
    a = Instance("a", settings, base)
    b = None
    c = None
    try:
        send(400, bad=3)
        wait_for("a takes every partition", lambda: list(members(settings).values()) == [set(range(PARTITIONS))], [a])
        b = Instance("b", settings, base)
        wait_for("a and b share the partitions", lambda: sorted(map(len, members(settings).values())) == [2, 2], [a, b])
        send(400, repeat=sent[:50])
        wait_for("drained with a and b", drained, [a, b])

        # a dies without a word; its disk goes with it: b can get its partitions' state only from the changelog
        a.stop(signal.SIGKILL)
        shutil.rmtree(a.home)
        send(300, repeat=[s for s in sent[:400] if s[0] >= 0][50:150])
        wait_for("b takes every partition", lambda: list(members(settings).values()) == [set(range(PARTITIONS))], [b])
        wait_for("drained with b alone", drained, [b])
        assert "restored" in b.tail()

        # a third instance joins mid-stream and takes partitions over
        c = Instance("c", settings, base)
        send(200, repeat=[s for s in sent[:800] if s[0] >= 0][150:250])
        wait_for("b and c share the partitions", lambda: sorted(map(len, members(settings).values())) == [2, 2], [b, c])
        send(300, repeat=[s for s in sent[:1000] if s[0] >= 0][250:300], bad=2)
        wait_for("drained with b and c", drained, [b, c])
        assert "restored" in c.tail()
    finally:
        for inst in (c, b, a):
            if inst is not None:
                inst.stop()
        probe.close()

    distinct = n
    assert distinct == 1600 and len(sent) == 1600 + 50 + 100 + 100 + 50 + 5
    # every id rated once: copies of a record (a batch replayed after the kill) are byte-identical
    records: dict[str, set[bytes]] = defaultdict(set)
    for m in read_topic(settings, topics.rated):
        for r in unpack(m.value()):
            records[r["id"]].add(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    assert len(records) == distinct
    assert all(len(copies) == 1 for copies in records.values())
    amounts: Counter[str] = Counter()
    for copies in records.values():
        r = orjson.loads(next(iter(copies)))
        amounts[r["customer"]] += Decimal(r["amount"])
    assert {c: amounts[c] for c in CUSTOMERS} == {c: graduated(per_customer[c]) for c in CUSTOMERS}
    assert per_customer["c0"] == 200 and graduated(200) == Decimal("70")  # 90 x 0.5 + 100 x 0.25

    # the changelog alone holds every partition's state: its counters say each message was counted once
    totals: Counter[str] = Counter()
    reader = ChangelogReader(settings)
    try:
        for p in range(PARTITIONS):
            store = PartitionStore(tmp_path / "from-changelog" / f"p{p}")
            assert reader.catch_up(p, store) is not None
            totals += store.counts
            store.close()
    finally:
        reader.close()
    assert totals["rated"] == distinct
    assert totals["duplicate"] == 300
    assert totals["dead_letter"] == 5
    assert sum(totals.values()) == len(sent)
