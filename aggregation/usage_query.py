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
    subject: str = ""  # the user the event is attributed to ("" : none), for the invoice's per-user section


_RECORD_COLUMNS = "tenant, customer, meter, quantity, time, dimensions, amount, subject"  # a UsageRecord's, in order


def _records(rows: list) -> list[UsageRecord]:
    """UsageRecords from rows of `_RECORD_COLUMNS` (times are UTC)."""
    return [UsageRecord(t, c, m, q, ts.replace(tzinfo=UTC), dict(d), a, s) for t, c, m, q, ts, d, a, s in rows]


def period_records(client: Client, db: str, period: str, plans: list[str]) -> list[UsageRecord]:
    """Every deduplicated record of `plans` in the period, in arrival order (the order the stream rated)."""
    if not plans:
        return []
    result = client.query(
        f"""
        SELECT {_RECORD_COLUMNS}
        FROM {db}.rated_usage FINAL
        WHERE period = {{period:String}} AND plan IN {{plans:Array(String)}}
        ORDER BY tenant, customer, src_partition, src_offset
        """,
        parameters={"period": period, "plans": plans},
        settings=_FINAL,
    )
    return _records(result.result_rows)


# --- time-range reads (subscriptions: billing periods in the customer's time zone, phases) ---------------


def _micros(at: datetime) -> int:
    """Microseconds since the epoch of an aware instant (exact: no float)."""
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class PieceUsage(NamedTuple):
    """One customer's usage of one meter, rated with one plan, in one piece [bounds[piece-1], bounds[piece])."""

    piece: int
    meter: str
    plan: str
    quantity: Decimal
    events: int
    streamed_amount: Decimal


def usage_by_piece(
    client: Client, db: str, tenant: str, customer: str, bounds: list[datetime], skip_plans: list[str]
) -> list[PieceUsage]:
    """The customer's deduplicated usage by event TIME between consecutive `bounds` (sorted instants), per
    piece, meter and the plan the stream rated it with; rows rated with one of `skip_plans` are left out.

    Piece i (1-based) is [bounds[i-1], bounds[i]); rows outside [bounds[0], bounds[-1]) are not read.
    """
    if len(bounds) < 2:
        return []
    micros = [_micros(b) for b in bounds]
    if micros != sorted(micros):
        raise ValueError("bounds: must be sorted")
    result = client.query(
        f"""
        SELECT arrayCount(b -> b <= toUnixTimestamp64Micro(time), {{bounds:Array(Int64)}}) AS piece,
               meter, plan, sum(quantity), count(), sum(amount)
        FROM {db}.rated_usage FINAL
        WHERE tenant = {{tenant:String}} AND customer = {{customer:String}}
          AND time >= fromUnixTimestamp64Micro({{lo:Int64}}, 'UTC')
          AND time < fromUnixTimestamp64Micro({{hi:Int64}}, 'UTC')
          AND plan NOT IN {{skip:Array(String)}}
        GROUP BY piece, meter, plan
        ORDER BY piece, meter, plan
        """,
        parameters={"bounds": micros, "tenant": tenant, "customer": customer, "lo": micros[0], "hi": micros[-1],
                    "skip": skip_plans},
        settings=_FINAL,
    )  # fmt: skip
    return [PieceUsage(int(p), m, pl, q, n, a) for p, m, pl, q, n, a in result.result_rows]


def records_between(
    client: Client,
    db: str,
    tenant: str,
    customer: str,
    start: datetime,
    end: datetime,
    meters: list[str],
    skip_plans: list[str],
) -> list[UsageRecord]:
    """The customer's deduplicated records of `meters` with event time in [start, end), in arrival order (the
    order the stream rated them: telecom bundles are consumed in it); rows rated with `skip_plans` left out."""
    if not meters or end <= start:
        return []
    result = client.query(
        f"""
        SELECT {_RECORD_COLUMNS}
        FROM {db}.rated_usage FINAL
        WHERE tenant = {{tenant:String}} AND customer = {{customer:String}}
          AND time >= fromUnixTimestamp64Micro({{lo:Int64}}, 'UTC')
          AND time < fromUnixTimestamp64Micro({{hi:Int64}}, 'UTC')
          AND meter IN {{meters:Array(String)}} AND plan NOT IN {{skip:Array(String)}}
        ORDER BY src_partition, src_offset
        """,
        parameters={"tenant": tenant, "customer": customer, "lo": _micros(start), "hi": _micros(end),
                    "meters": meters, "skip": skip_plans},
        settings=_FINAL,
    )  # fmt: skip
    return _records(result.result_rows)


def rated_customers(
    client: Client, db: str, start: datetime, end: datetime, skip_plans: list[str]
) -> list[tuple[str, str, str]]:
    """(tenant, customer, plan) of every deduplicated row with event time in [start, end), except those rated
    with `skip_plans`, sorted (the close checks that each has a subscription to bill it)."""
    result = client.query(
        f"""
        SELECT DISTINCT tenant, customer, plan FROM {db}.rated_usage FINAL
        WHERE time >= fromUnixTimestamp64Micro({{lo:Int64}}, 'UTC')
          AND time < fromUnixTimestamp64Micro({{hi:Int64}}, 'UTC')
          AND plan NOT IN {{skip:Array(String)}}
        ORDER BY tenant, customer, plan
        """,
        parameters={"lo": _micros(start), "hi": _micros(end), "skip": skip_plans},
        settings=_FINAL,
    )
    return [(t, c, p) for t, c, p in result.result_rows]
