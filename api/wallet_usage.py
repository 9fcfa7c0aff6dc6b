"""The wallets' read of rated usage: one customer's amounts in one currency per piece of time, through the API's
one query path to ClickHouse (api/queries.py: FINAL, scoped by tenant, values as parameters).

With the processor's latest balance snapshot of the customer (api/balance_feed.py, the compacted `balances`
topic), the read is current to the processor's commit rather than to the sink's: the snapshot's `consumed` (the
rated usage the processor debited since the customer's first wallet started) ahead of ClickHouse's sum over the
same time is usage rated but not yet written by the sink, counted in the newest piece. The ledger (top-ups,
voids, expiries, priorities) stays the SQL store's, read now, so a top-up shows at once; a snapshot behind
ClickHouse (the feed lagging) adds nothing.

`balances_now` is the one read of a customer's balances that the API's routes use (/v1 wallets and Lago's
wallets): the ledger, its usage through `usage_reader`, with the customer's snapshot from the app's feed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterstream.api.queries import UsageQueries
from meterstream.entities.wallets import CustomerBalances, UsageReader, customer_balances
from meterstream.rating.money import EXACT
from meterstream.schemas.provisioning import BalanceSnapshot


def _micros(at: datetime) -> int:
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def plan_pieces(
    db: str, tenant: str, customer: str, currency: str, bounds: list[datetime]
) -> tuple[str, dict[str, Any]]:
    """(SQL, parameters): the exact sum of `amount` per piece [bounds[i], bounds[i+1]), piece i+1 in the answer."""
    micros = [_micros(b) for b in bounds]
    if len(micros) < 2 or micros != sorted(micros):
        raise ValueError("bounds: at least two, sorted")
    sql = (
        "SELECT arrayCount(b -> b <= toUnixTimestamp64Micro(time), {bounds:Array(Int64)}) AS piece, "
        "sum(toDecimal256(amount, 18)) "
        f"FROM {db}.rated_usage FINAL "
        "WHERE tenant = {tenant:String} AND customer = {customer:String} AND currency = {currency:String} "
        "AND time >= fromUnixTimestamp64Micro({lo:Int64}, 'UTC') "
        "AND time < fromUnixTimestamp64Micro({hi:Int64}, 'UTC') "
        "GROUP BY piece ORDER BY piece"
    )
    return sql, {"bounds": micros, "tenant": tenant, "customer": customer, "currency": currency, "lo": micros[0],
                 "hi": micros[-1]}  # fmt: skip


def streamed_ahead(snapshot: BalanceSnapshot | None, currency: str, stored: Decimal) -> Decimal:
    """The usage the processor debited that ClickHouse's exact sum `stored` (same customer, same time) does not
    hold yet: the snapshot's `consumed` minus `stored`, never below zero; 0 without a snapshot in `currency`."""
    if snapshot is None or snapshot.currency != currency:
        return Decimal(0)
    ahead = EXACT.subtract(Decimal(snapshot.consumed), stored)
    return ahead if ahead > 0 else Decimal(0)


def usage_reader(queries: UsageQueries, tenant: str, customer: str,
                 snapshot: BalanceSnapshot | None = None) -> UsageReader:  # fmt: skip
    """The `UsageReader` of entities.wallets.customer_balances for one customer; with the processor's `snapshot`
    of the customer, current to the processor (module docstring)."""

    def read(currency: str, bounds: list[datetime]) -> list[Decimal]:
        sql, params = plan_pieces(queries.db, tenant, customer, currency, bounds)
        out = [Decimal(0)] * (len(bounds) - 1)
        for piece, amount in queries.query(sql, params):
            out[int(piece) - 1] = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        stored = Decimal(0)
        for amount in out:
            stored = EXACT.add(stored, amount)
        ahead = streamed_ahead(snapshot, currency, stored)
        if ahead:
            out[-1] = EXACT.add(out[-1], ahead)
        return out

    return read


def snapshot_of(state: Any, tenant: str, customer: str) -> BalanceSnapshot | None:
    """The processor's latest snapshot of the customer in the app's balance feed (`state.balance_feed`, filled
    by api/balance_feed.FeedReader); None without a feed or a snapshot."""
    feed = getattr(state, "balance_feed", None)
    return feed.get(tenant, customer) if feed is not None else None


def balances_now(state: Any, tenant: str, customer: str,
                 now: datetime | None = None) -> tuple[datetime, list[CustomerBalances]]:  # fmt: skip
    """(now, the customer's balances now) for an app's `state` (sessions, queries, balance_feed): the SQL ledger
    read now, its consumption from ClickHouse through the API's query path, current to the processor's snapshot
    when the feed has one (module docstring). ClickHouse unreachable: api.queries.ClickHouseUnavailable."""
    now = now or datetime.now(UTC)
    reader = usage_reader(state.queries, tenant, customer, snapshot_of(state, tenant, customer))
    return now, customer_balances(state.sessions, tenant, customer, reader, now=now)
