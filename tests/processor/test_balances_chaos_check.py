"""The chaos run's balance check (deploy/chaos_balances.py) on a real broker, the embedded ClickHouse and a real
partition store: wallets seeded through the entity store and relayed, usage in rated_usage and debited by the
processor's balances module; reconciled, then a double debit and an undebited row are both caught.

By hand: wallets of 10.00 USD from 2026-11-01. Customer a: 3.333 + 3.333 + 3.334 = 10.000 -> balance 0.00 (and 5.00
of usage on 2026-10-31, before its wallet started: not drawn). Customer b: 1.005 -> 1.01 (half up) -> 8.99.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS
from meterstream.deploy.chaos_balances import check_balances, seed_wallets
from meterstream.ingest.dlq import read_topic
from meterstream.ingest.topics import ensure_topics, entities_topic
from meterstream.processor.balances import Balances
from meterstream.processor.live_catalog import EntityTable
from meterstream.processor.runner import state_dir
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.rated import row_of

pytestmark = pytest.mark.kafka
DATA = Path(__file__).resolve().parents[1] / "data"
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rated(customer: str, amount: str, day: int, offset: int, month: int = 11) -> dict:
    time = f"2026-{month:02d}-{day:02d}T10:00:00.000Z"
    return {"tenant": "t1", "id": f"{customer}{offset}", "customer": customer, "subject": "",
            "meter": "storage_gb_hours", "time": time, "period": time[:7], "quantity": "1", "amount": amount,
            "cumulative": "1", "currency": "USD", "plan": "basic", "line": "storage_gb_hours", "dimensions": {},
            "source": "", "src_partition": 0, "src_offset": offset}  # fmt: skip


def test_wallets_reconcile_and_a_double_debit_is_caught(kafka_settings, tmp_path, chdb_client) -> None:
    db = f"cb_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    run = kafka_settings.model_copy(update={
        "home": tmp_path, "topic_prefix": f"cb{uuid.uuid4().hex[:8]}.", "clickhouse_database": db,
        "database_url": f"sqlite:///{tmp_path / 'entities.db'}", "partitions": 1})  # fmt: skip
    ensure_topics(run)
    assert seed_wallets(run, load_catalog(DATA / "catalog.yaml"), [("t1", "a"), ("t1", "b")], "10", START) == 2

    rows = [rated("a", "5", 31, 1, month=10), rated("a", "3.333", 5, 2), rated("a", "3.333", 6, 3),
            rated("a", "3.334", 7, 4), rated("b", "1.005", 5, 5)]  # fmt: skip
    chdb_client.raw_insert(f"{db}.rated_usage", RATED_FIELDS, b"\n".join(orjson.dumps(r) for r in rows),
                           fmt="JSONEachRow")  # fmt: skip
    table = EntityTable()  # the processor's view of the wallets: from the entities topic, as relayed
    for m in read_topic(run, entities_topic(run)):
        table.apply_message(m.key(), m.value())
    assert {w.customer for w in table.wallets("t1", "a") + table.wallets("t1", "b")} == {"a", "b"}
    balances = Balances(run, table)
    store = PartitionStore(state_dir(run) / "p0")
    state = BatchState(store)
    out = balances.after_batch({0: state}, {0: [row_of(r) for r in rows]}, {0: 5}, int(NOW.timestamp() * 1000))
    state.commit(6, Counter())
    assert any(topic.endswith("provisioning") for topic, _, _ in out)  # a: exhausted
    store.close()

    check = check_balances(run, client=chdb_client, now=NOW)
    assert (check.wallets, check.customers, check.mismatched, check.processor_mismatched) == (2, 2, 0, 0), check.lines
    assert check.ok and check.verdict() == "balances: wallets=2 reconciled=2 mismatched=0 processor_mismatched=0"

    # a double debit in the processor's state (b's row debited again at a later offset): caught
    store = PartitionStore(state_dir(run) / "p0")
    state = BatchState(store)
    balances.after_batch({0: state}, {0: [row_of({**rows[4], "src_offset": 6})]}, {0: 6}, 0)
    state.commit(7, Counter())
    store.close()
    check = check_balances(run, client=chdb_client, now=NOW)
    assert (check.mismatched, check.processor_mismatched) == (0, 1)
    assert check.lines == ["t1/b: processor debited 2.01 != rated usage 1.005 USD"]
