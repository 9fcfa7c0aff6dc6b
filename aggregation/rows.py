"""Kafka messages to column-oriented ClickHouse rows (pure: no I/O)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import orjson

RATED_COLUMNS = (
    "tenant",
    "event_id",
    "customer",
    "subject",
    "meter",
    "time",
    "period",
    "quantity",
    "amount",
    "cumulative",
    "currency",
    "plan",
    "line",
    "dimensions",
    "source",
    "src_partition",
    "src_offset",
)
DEAD_LETTER_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "stage",
    "field",
    "reason",
    "tenant",
    "event_id",
    "kafka_key",
    "raw",
)


class ColumnBatch:
    """Columns for one table, filled one record at a time."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.names = columns
        self.columns: list[list] = [[] for _ in columns]

    def __len__(self) -> int:
        return len(self.columns[0])

    def clear(self) -> None:
        self.columns = [[] for _ in self.names]


def add_rated(batch: ColumnBatch, value: bytes) -> None:
    """Append one `rated-usage` record (schemas.rated.RatedUsage as JSON)."""
    r = orjson.loads(value)
    c = batch.columns
    c[0].append(r["tenant"])
    c[1].append(r["id"])
    c[2].append(r["customer"])
    c[3].append(r["subject"])
    c[4].append(r["meter"])
    c[5].append(datetime.fromisoformat(r["time"]))
    c[6].append(r["period"])
    c[7].append(Decimal(r["quantity"]))
    c[8].append(Decimal(r["amount"]))
    c[9].append(Decimal(r["cumulative"]))
    c[10].append(r["currency"])
    c[11].append(r["plan"])
    c[12].append(r["line"])
    c[13].append(r["dimensions"])
    c[14].append(r["source"])
    c[15].append(r["src_partition"])
    c[16].append(r["src_offset"])


def add_dead_letter(batch: ColumnBatch, value: bytes) -> None:
    """Append one dead letter (schemas.rated.DeadLetter as JSON)."""
    d = orjson.loads(value)
    c = batch.columns
    c[0].append(d["topic"])
    c[1].append(d["partition"])
    c[2].append(d["offset"])
    c[3].append(d["stage"])
    c[4].append(d["field"])
    c[5].append(d["reason"])
    c[6].append(d.get("tenant") or "")
    c[7].append(d.get("event_id") or "")
    c[8].append(d.get("key") or "")
    c[9].append(d["raw"])
