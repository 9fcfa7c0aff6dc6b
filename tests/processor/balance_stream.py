"""The set-up the prepaid-balance tests with a real broker share (test_balances_kafka.py, test_faust_balances.py,
test_balances_top_up_kafka.py): settings on a fresh topic prefix with 2 partitions and tests/data/catalog.yaml
(tenant t1's `storage_gb_hours` at 0.001 USD per unit: an event of 1000 units costs 1.00 USD), the topics, a
SQLite entity store, customers with a wallet, usage events, the native processor in a thread, and a reader that
notes when each message of a topic arrived."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from meterstream.entities.customers import put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.wallets import TopUp, WalletSpec, create_wallet
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.live_catalog import open_catalog_view
from meterstream.processor.runner import NativeProcessor
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.event import format_time
from meterstream.schemas.provisioning import decode_command
from meterstream.schemas.settings import Settings

T = "t1"
DATA = Path(__file__).resolve().parents[1] / "data"


class Stream(NamedTuple):
    settings: Settings
    topics: Topics
    sf: Any  # the entity store's session factory


def balance_stream(kafka_settings: Settings, tmp_path: Path, prefix: str, **update: Any) -> Stream:
    """Settings (home `tmp_path`, topic prefix `prefix` + a random tag, 2 partitions, the test catalog, `update`),
    their topics created, and a SQLite entity store in `tmp_path`."""
    tag = f"{prefix}{uuid.uuid4().hex[:8]}."
    settings = kafka_settings.model_copy(update={"home": tmp_path, "topic_prefix": tag, "partitions": 2,
                                                 "catalog": DATA / "catalog.yaml", **update})  # fmt: skip
    ensure_topics(settings)
    return Stream(settings, Topics.from_settings(settings), store(tmp_path))


def event(i: str, customer: str, quantity: str = "1000", at: datetime | None = None) -> bytes:
    """A `storage_gb_hours` usage event of tenant t1; by default timed a second from now (after the wallet's start,
    whatever the clock's resolution)."""
    at = at or datetime.now(UTC) + timedelta(seconds=1)
    return orjson.dumps({"id": i, "tenant": T, "customer": customer, "meter": "storage_gb_hours",
                         "quantity": quantity, "time": format_time(at)})  # fmt: skip


def start_processor(settings: Settings) -> tuple[threading.Event, threading.Thread]:
    """The native processor running in a thread until the event returned is set."""
    processor = NativeProcessor(settings, open_catalog_view(settings, load_catalog(settings.catalog)))
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


class Tail:
    """Reads a topic from the beginning in a thread, noting when each message arrived (perf_counter)."""

    def __init__(self, settings, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"tail-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})  # fmt: skip
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.seen: list[tuple[float, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            m = self.consumer.poll(0.01)
            if m is not None and m.error() is None:
                self.seen.append((time.perf_counter(), m.value()))
        self.consumer.close()

    def wait(self, match, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, value in list(self.seen):
                if match(value):
                    return arrived, value
            time.sleep(0.005)
        raise AssertionError("nothing matching arrived")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def command_of(customer: str, command: str):
    def match(value: bytes) -> bool:
        c = decode_command(value)
        return c.customer == customer and c.command == command and c.reason == "balance_exhausted"

    return match


def store(tmp_path: Path):
    engine = make_engine(url=f"sqlite:///{tmp_path / 'entities.db'}")
    migrate(engine=engine)
    return session_factory(engine)


def new_customer(sf, customer: str, credits: str) -> str:
    put_customer(sf, CustomerDoc(tenant=T, external_id=customer, name=customer, version=0, currency="USD"))
    wallet, _ = create_wallet(sf, WalletSpec(T, customer, "USD"), [TopUp("paid", credits)])
    return wallet.id
