"""What the sink tests share (test_sink_arrow.py, test_sink_refusals.py, test_sink_tombstone.py, test_insert.py): a
rated-usage record ClickHouse takes as it is, a database of their own in the session's embedded ClickHouse, and the
sink's consumer with its commits counted."""

from __future__ import annotations

import uuid

from meterstream.aggregation.ddl import create_schema

RECORD = {
    "tenant": "cloudco", "id": "evt-1", "customer": "org-7", "subject": "user-3", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "quantity": "12.5", "amount": "1.25",
    "cumulative": "100", "currency": "USD", "plan": "cloud-standard", "line": "api_calls",
    "dimensions": {"region": "eu-west-1"}, "source": "gw-1", "src_partition": 3, "src_offset": 77,
}  # fmt: skip


def new_database(chdb_client, letter: str) -> str:  # type: ignore[no-untyped-def]
    """A fresh database with the tables (aggregation/ddl.py), named `letter` + a random tag: also a topic prefix."""
    name = f"{letter}_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    return name


class CountingConsumer:
    """The sink's consumer with its commits counted (confluent's Consumer cannot be patched)."""

    def __init__(self, consumer) -> None:
        self._consumer = consumer
        self.commits: list[list] = []

    def commit(self, *args, **kwargs):
        self.commits.append(kwargs.get("offsets"))
        return self._consumer.commit(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)
