"""The chaos run's balance check (issue 16): after kills, every wallet equals its top-ups minus the rated usage,
to the minor unit, and the stream processor's committed debit agrees.

Two steps the chaos run calls (deploy/chaos.py):

- `seed_wallets(run, catalog, customers, credits, start)` before the faulted phase: the customers and one wallet
  each in the entity store, back-dated to `start` (the phase's period start, so its usage is drawn), relayed
  to the `entities` topic and acknowledged before the first event of the phase is produced (the processor reads
  the topic to its end before each batch, so none of the phase's usage can be rated before its wallet is known);
- `check_balances(run)` once the processor and the sink are stopped: per customer with wallets,
  1. the expected balance from independent arithmetic: top-ups (settled, from SQL) minus the customer's rated
     usage since its first wallet started (ClickHouse `rated_usage FINAL`, summed exactly, rounded once to the
     minor unit), never below zero (a customer whose wallets have expiries, voids or terminations is checked
     with the one rule instead: entities.wallets.customer_balances);
  2. the API's balance (entities.wallets.customer_balances over the same ClickHouse usage) equals it;
  3. the processor's committed state (`w|` key of the partition store that owns the customer) holds exactly that
     usage (the exact sum of its pieces equals ClickHouse's exact sum since the wallet started), and its balance
     (processor.balances.evaluate over the wallets' documents) equals it to the minor unit.

The verdict line: `balances: wallets=N reconciled=K mismatched=M processor_mismatched=P`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterstream.schemas.settings import Settings

__all__ = ["BalanceCheck", "changelog_entries", "check_balances", "committed_entries", "seed_wallets"]

_AHEAD = timedelta(days=2)  # usage stamped a little ahead of this clock counts too (as the API's balance)


@dataclass
class BalanceCheck:
    wallets: int = 0
    customers: int = 0
    mismatched: int = 0  # the API's balance (SQL + ClickHouse) differs from top-ups - usage
    processor_mismatched: int = 0  # the processor's committed debit or balance differs
    lines: list[str] = field(default_factory=list)  # one per difference

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.processor_mismatched == 0

    def verdict(self) -> str:
        return (f"balances: wallets={self.wallets} reconciled={self.customers - self.mismatched} "
                f"mismatched={self.mismatched} processor_mismatched={self.processor_mismatched}")  # fmt: skip


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def seed_wallets(run: Settings, catalog: Any, customers: Sequence[tuple[str, str]], credits: str,
                 start: datetime, timeout: float = 30.0) -> int:  # fmt: skip
    """Create each (tenant, customer) in the entity store (in its plan's currency) with one wallet of `credits`
    paid credits (rate 1) started and settled at `start`, and relay them to the `entities` topic (returns when
    Kafka acknowledged them). Returns the number of wallets created."""
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.relay import OutboxRelay
    from meterstream.entities.wallets import TopUp, WalletSpec, create_wallet
    from meterstream.schemas.entities import CustomerDoc

    engine = make_engine(run)
    migrate(engine=engine)
    sf = session_factory(engine)
    n = 0
    for tenant, customer in customers:
        plan = catalog.plan_for(tenant, customer)
        if plan is None:
            continue
        put_customer(sf, CustomerDoc(tenant=tenant, external_id=customer, name=customer, version=0,
                                     currency=plan.currency))  # fmt: skip
        create_wallet(sf, WalletSpec(tenant, customer, plan.currency, name="chaos"), [TopUp("paid", credits)],
                      at=start)  # fmt: skip
        n += 1
    relay = OutboxRelay(run, sf, replay=False).start()
    try:
        if not relay.flush(timeout):
            raise RuntimeError(f"the wallets were not relayed to the entities topic within {timeout} s")
    finally:
        relay.stop()
        engine.dispose()
    return n


def _entries_of(store: Any) -> dict[str, Any]:
    from meterstream.processor.balances import BALANCE_PREFIX
    from meterstream.processor.store import decode_value

    found: dict[str, Any] = {}
    prefix = BALANCE_PREFIX.encode()
    for key, raw in store.db.items(from_key=prefix):
        if not key.startswith(prefix):
            break
        found[key.decode()] = decode_value(raw)
    return found


def committed_entries(run: Settings) -> dict[str, Any]:
    """Every `w|` entry of the processor's local partition stores under `run.home` (only while none runs)."""
    from meterstream.processor.runner import state_dir
    from meterstream.processor.store import PartitionStore

    found: dict[str, Any] = {}
    for path in sorted(state_dir(run).glob("p*")):
        store = PartitionStore(path)
        try:
            found.update(_entries_of(store))
        finally:
            store.close()
    return found


def changelog_entries(run: Settings, partitions: int, scratch: Path) -> dict[str, Any]:
    """Every `w|` entry as the processors' changelog holds it (each partition restored into an empty store under
    `scratch`, removed afterwards): what any instance taking the partitions over would hold (several instances
    with homes of their own: the cluster chaos mode)."""
    from meterstream.processor.changelog import restored_from_changelog

    found: dict[str, Any] = {}
    for store in restored_from_changelog(run, partitions, scratch):
        found.update(_entries_of(store))
    return found


def check_balances(run: Settings, client: Any = None, now: datetime | None = None,
                   entries: dict[str, Any] | None = None) -> BalanceCheck:  # fmt: skip
    """Reconcile every wallet of the entity store (see the module docstring). `entries`: the processor's
    committed `w|` entries (default: `committed_entries(run)`, the local stores; `changelog_entries` when the
    processors kept homes of their own)."""
    from sqlalchemy import select

    from meterstream.aggregation.client import connect
    from meterstream.api.queries import UsageQueries
    from meterstream.api.wallet_usage import plan_pieces, usage_reader
    from meterstream.billing.allocation import from_units, to_units
    from meterstream.entities.db import make_engine, session_factory
    from meterstream.entities.wallets import SETTLED, WalletRow, WalletTransactionRow, customer_balances, wallet_doc
    from meterstream.processor.balances import balance_key, evaluate
    from meterstream.rating.money import EXACT, round_money

    now = now or datetime.now(UTC)
    client = client or connect(run)
    queries = UsageQueries(run, client)
    engine = make_engine(run)
    sf = session_factory(engine)
    entries = committed_entries(run) if entries is None else entries
    out = BalanceCheck()
    try:
        with sf() as s:
            rows = list(s.scalars(select(WalletRow).order_by(WalletRow.id)))
            docs = {r.wallet_id: wallet_doc(s, r) for r in rows}
            txs = list(s.scalars(select(WalletTransactionRow)))
        out.wallets = len(rows)
        by_customer: dict[tuple[str, str], list[WalletRow]] = {}
        for r in rows:
            by_customer.setdefault((r.tenant, r.customer), []).append(r)
        for (tenant, customer), mine in sorted(by_customer.items()):
            out.customers += 1
            currency = mine[0].currency
            refs = {r.id for r in mine}
            own = [t for t in txs if t.wallet_ref in refs and t.status == SETTLED]
            start = min(docs[r.wallet_id].started_at for r in mine)
            sql, params = plan_pieces(queries.db, tenant, customer, currency, [start, max(now, start) + _AHEAD])
            usage = Decimal(0)
            for _piece, amount in queries.query(sql, params):
                usage = EXACT.add(usage, amount if isinstance(amount, Decimal) else Decimal(str(amount)))
            usage_units = to_units(round_money(usage, currency), currency)
            simple = all(r.expires_at is None and r.terminated_at is None for r in mine) and all(
                t.direction == "inbound" and t.expires_at is None for t in own) and len(mine) == 1  # fmt: skip
            api = customer_balances(sf, tenant, customer, usage_reader(queries, tenant, customer), now=now)
            api_units = sum(w.ongoing.balance for cb in api if cb.currency == currency for w in cb.wallets)
            if simple:
                expected = max(0, sum(t.units for t in own) - usage_units)
            else:
                expected = api_units  # the one rule decides expiries, voids and priorities
            name = f"{tenant}/{customer}"
            if api_units != expected:
                out.mismatched += 1
                out.lines.append(f"{name}: API balance {from_units(api_units, currency)} != top-ups - usage "
                                 f"{from_units(expected, currency)} {currency}")  # fmt: skip
            entry = entries.get(balance_key(tenant, customer))
            debited = Decimal(0)
            for v in (entry or {}).get("u", {}).values():
                debited = EXACT.add(debited, Decimal(v))
            if debited != usage:
                out.processor_mismatched += 1
                out.lines.append(f"{name}: processor debited {_text(debited)} != rated usage {_text(usage)} {currency}")
                continue
            ev = evaluate([docs[r.wallet_id] for r in mine], (entry or {}).get("u", {}), now)
            if ev.balance != expected:
                out.processor_mismatched += 1
                out.lines.append(f"{name}: processor balance {from_units(ev.balance, currency)} != "
                                 f"{from_units(expected, currency)} {currency}")  # fmt: skip
    finally:
        engine.dispose()
    return out
