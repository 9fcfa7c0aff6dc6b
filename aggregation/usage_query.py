"""Reads of deduplicated usage for period close (always FINAL: exact, whatever merges have run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

_FINAL = {"do_not_merge_across_partitions_select_final": 1}


class MeterUsage(NamedTuple):
    """One customer's period total for one meter (a tuple: half a million of them are built per large close)."""

    tenant: str
    customer: str
    plan: str
    currency: str
    meter: str
    quantity: Decimal
    events: int
    streamed_amount: Decimal  # sum of the streaming deltas, for reconciliation with the invoice


def period_usage(client: Client, db: str, period: str) -> list[MeterUsage]:
    """Per customer, plan and meter: the period's deduplicated quantity and streamed amount."""
    result = client.query(
        f"""
        SELECT tenant, customer, plan, currency, meter, sum(quantity), count(), sum(amount)
        FROM {db}.rated_usage FINAL
        WHERE period = {{period:String}}
        GROUP BY tenant, customer, plan, currency, meter
        ORDER BY tenant, customer, plan, meter
        """,
        parameters={"period": period},
        settings=_FINAL,
    )
    return list(map(MeterUsage._make, result.result_rows))


@dataclass(frozen=True)
class UsageRecord:
    tenant: str
    customer: str
    meter: str
    quantity: Decimal
    time: datetime
    dimensions: dict[str, str]
    streamed_amount: Decimal


def period_records(client: Client, db: str, period: str, plans: list[str]) -> list[UsageRecord]:
    """Every deduplicated record of `plans` in the period, in arrival order (the order the stream rated)."""
    if not plans:
        return []
    result = client.query(
        f"""
        SELECT tenant, customer, meter, quantity, time, dimensions, amount
        FROM {db}.rated_usage FINAL
        WHERE period = {{period:String}} AND plan IN {{plans:Array(String)}}
        ORDER BY tenant, customer, src_partition, src_offset
        """,
        parameters={"period": period, "plans": plans},
        settings=_FINAL,
    )
    return [UsageRecord(t, c, m, q, ts.replace(tzinfo=UTC), dict(d), a) for t, c, m, q, ts, d, a in result.result_rows]
