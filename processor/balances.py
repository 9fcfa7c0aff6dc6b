"""Prepaid balances in the stream processor: debit rated usage as it is rated, and tell provisioning.

After each batch is rated (`ColumnarStep.run` calls `Balances.after_batch`), the rated rows of every customer
that has a wallet or a credit limit (the live catalog's `WalletDoc`s and customer metadata,
billing/thresholds.py) are added to a state entry of that customer in the partition's own buffer
(`store.BatchState`), key `w|<tenant>\\x1f<customer>`, so it is committed in the same RocksDB WriteBatch as the
dedup entries, the running totals and the input offset (and copied by a changelog like any other key). A crash
before the commit replays the batch from the committed state: the debit is recomputed, never added twice; the
entry also keeps the last input offset it debited (`o`) and skips any row at or before it.

Usage is kept exact (Decimal under `rating.money.EXACT`) per *piece*: the time from one wallet mark (a wallet's
start or end, a top-up's settlement or expiry, a void) to the next, keyed by the mark at its start. The balance
is then billing/wallet_balance.py's one rule (the API's rule too): cumulative usage rounded to minor units at
each mark, drawn by priority then soonest expiry, never below zero. Usage stamped before the customer's first
wallet started is not drawn (`pre`). A mark that arrives later (a top-up) applies to usage debited after it.

Outputs, produced with the batch's other outputs before its state commit (so they are repeated, byte for byte
but for `at`, after a crash, and carry deterministic ids):

- a `BalanceSnapshot` on the compacted `balances` topic for every customer with wallets whose balance was
  evaluated in the batch;
- `suspend` (reason `balance_exhausted`) on the `provisioning` topic when the customer's usage has drawn its
  wallets to zero, `reactivate` when a top-up brings the balance back above zero; `suspend` with reason
  `credit_limit_exceeded` when a customer's usage of a period passes its `credit_limit`, `reactivate` when it
  no longer does (a new period, a higher limit);
- `Notification`s on the `notifications` topic: `balance.exhausted`, `balance.threshold_crossed` (once per
  crossing: the levels the customer is past are kept in the state, and only levels entering that set are
  notified), `credit_limit.exceeded`, and `wallet.top_up_requested` when a wallet with an automatic top-up rule
  (`WalletDoc.top_up_rules`, Lago's `recurring_transaction_rules`, trigger `threshold`) falls to or below its
  `threshold_credits`: once per crossing (the rules at or below their line are kept in the state, `tu`, like the
  levels; a rule leaves the set when a top-up brings the wallet back above its line). The API process's
  notifications relay writes the top-up (webhooks/notifications_relay.py -> entities.wallets.recurring_top_up,
  idempotent by the request's id), which comes back here as a new version of the wallet.

Wallet changes without usage (a top-up) are handled by `tick`, which the processor loop calls once per
iteration: it evaluates the changed customers owned by this worker's partitions (the partition of the usage
key `tenant/customer`, librdkafka's default partitioner: CRC-32 of the key modulo the partition count) as a
batch of its own that commits the state with the partition's current offset.
"""

from __future__ import annotations

import hashlib
import logging
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from meterstream.billing import thresholds as th
from meterstream.billing.allocation import from_units, to_units
from meterstream.billing.wallet_balance import Draw, Lot, WalletTerms, balances, usage_draws
from meterstream.processor import metrics, sessions
from meterstream.processor.checkpoint import InFlight
from meterstream.processor.rate import RatingError
from meterstream.processor.store import BatchState
from meterstream.rating.money import EXACT, ROUNDING, round_money
from meterstream.schemas.entities import CustomerDoc, TopUpRuleDoc, WalletDoc
from meterstream.schemas.event import partition_of
from meterstream.schemas.provisioning import (
    BALANCES,
    NOTIFICATIONS,
    PROVISIONING,
    BalanceSnapshot,
    Notification,
    ProvisioningCommand,
    customer_key,
    encode,
)
from meterstream.schemas.rated import pack_rows, row_of
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.processor.balances")

BALANCE_PREFIX = "w|"
EXHAUSTED = "balance_exhausted"
CREDIT_LIMIT = "credit_limit_exceeded"
SOFT_LIMIT = "credit_limit_soft"  # the `limit` command's reason: usage at the soft level of the credit limit
SOFT_NOTE = "credit_limit.soft_reached"
LIMIT_LEVEL = "credit_limit.threshold_crossed"
COMMITMENT_LEVEL = "commitment.threshold_crossed"
_PERIODS_KEPT = 3
_SKIP_LOG_S = 60.0  # a customer whose decisions fail is logged at most this often
# rated row fields (schemas.rated.RATED_FIELDS order)
_TENANT, _CUSTOMER, _TIME, _PERIOD, _AMOUNT, _CURRENCY, _OFFSET = 0, 2, 5, 6, 8, 10, 16

Output = tuple[str, bytes, bytes]  # (topic, key, value)
Due = dict[str, tuple[WalletDoc, TopUpRuleDoc]]  # rule id -> (its wallet, the rule)


def balance_key(tenant: str, customer: str) -> str:
    return f"{BALANCE_PREFIX}{tenant}\x1f{customer}"


def _first_day(period: str) -> str:
    """A period label's first day, comparable as text (billing/periods.py `Schedule.label`: `YYYY-MM` for a
    calendar month, else `YYYY-MM-DD`; "" for none)."""
    return f"{period}-01" if len(period) == 7 else period


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _id(*parts: Any) -> str:
    """A deterministic id from the cause (the same cause after a crash gives the same id)."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def _marks(wallets: Sequence[WalletDoc]) -> list[datetime]:
    """Every instant at which what usage may draw from changes (as entities.wallets.customer_balances)."""
    marks: set[datetime] = set()
    for w in wallets:
        marks.add(w.started_at)
        if w.ends_at is not None:
            marks.add(w.ends_at)
        for e in w.entries:
            marks.add(e.settled_at)
            if e.expires_at is not None:
                marks.add(e.expires_at)
    return sorted(marks)


@dataclass(frozen=True)
class Evaluation:
    currency: str
    balance: int  # minor units, over the customer's wallets of `currency`
    inbound: int  # settled top-ups put in so far
    used: int  # usage since the first wallet started, rounded to minor units
    uncovered: int
    wallets: list[dict[str, Any]]


def evaluate(wallets: Sequence[WalletDoc], pieces: dict[str, str], now: datetime) -> Evaluation:
    """The customer's balance from its wallets (one currency) and its usage pieces (mark -> exact amount)."""
    currency = wallets[0].currency
    terms = [WalletTerms(w.id, w.priority, w.started_at, w.ends_at) for w in wallets]
    lots, voids = [], []
    for w in wallets:
        for e in w.entries:
            if e.kind == "void":
                voids.append(Draw(e.settled_at, e.units, "void", w.id))
            else:
                lots.append(Lot(e.id, w.id, e.units, e.settled_at, e.expires_at))
    bounds = sorted(_when(k) for k in pieces)
    cumulative, running = [], Decimal(0)
    by_time = {_when(k): v for k, v in pieces.items()}
    for b in bounds:
        running = EXACT.add(running, Decimal(by_time[b]))
        cumulative.append(to_units(round_money(running, currency), currency))
    draws = usage_draws([*bounds, now], cumulative) if bounds else []
    out, uncovered = balances(terms, lots, [*voids, *draws], now)
    total = sum(b.balance for b in out.values())
    inbound = sum(b.inbound for b in out.values())
    rows = [{"id": w.id, "balance": str(from_units(out[w.id].balance, currency)),
             "consumed": str(from_units(out[w.id].consumed, currency)),
             "credits": format(_credits(out[w.id].balance, w), "f")} for w in wallets]  # fmt: skip
    return Evaluation(currency, total, inbound, cumulative[-1] if cumulative else 0, uncovered, rows)


def _credits(units: int, w: WalletDoc) -> Decimal:
    if w.rate_amount == 1:  # a wallet that counts money: its credits are its amount
        return from_units(units, w.currency).normalize(ROUNDING) if units else Decimal(0)
    value = ROUNDING.divide(from_units(units, w.currency), w.rate_amount)
    return value.quantize(Decimal("0.00001"), context=ROUNDING).normalize(ROUNDING) if value else Decimal(0)


class Balances:
    """The processor's prepaid debit and provisioning decisions (see the module docstring)."""

    def __init__(self, settings: Settings, table: Any) -> None:
        self.table = table  # processor.live_catalog.EntityTable (wallets, customers)
        self.provisioning = settings.topic(PROVISIONING)
        self.notifications = settings.topic(NOTIFICATIONS)
        self.balances = settings.topic(BALANCES)
        self._watch: dict[tuple[str, str], tuple[bool, th.Rules]] = {}
        self.dirty: set[tuple[str, str]] = set()  # wallet or customer changes not yet evaluated by `tick`
        self._any: bool | None = None  # whether any customer has wallets or a credit limit (None: not known)
        self.partitions: int | None = None
        self.catalog: Any = None  # the processor's catalog (set by `install`): rates sessions released by the clock
        self.first_held: dict[str, int] = {}  # sessions held without a Kafka timestamp: when first seen held
        self._skip_logged: dict[tuple[str, str, str], float] = {}  # (tenant, customer, what) -> last logged
        self.stream_ms: dict[int, int] = {}  # partition -> newest Kafka timestamp read (`observe`)
        self._upgraded: dict[int, Any] = {}  # partition -> its store, once seen without an earlier version's index
        # partition -> (its store, the store's `held_version`, `sessions.hold_summary` of its held index then)
        self._held_summary: dict[int, tuple[Any, int, tuple[float, bool]]] = {}

    @classmethod
    def of_catalog(cls, settings: Settings, catalog: Any) -> Balances | None:
        """For a processor's catalog view with live entities; None without (no wallets can reach it)."""
        live = getattr(catalog, "live", None)
        table = getattr(live, "table", live)
        return cls(settings, table) if table is not None and hasattr(table, "wallets") else None

    # --- which customers ------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        changed = self.table.take_wallet_changes()
        if changed:
            for c in changed:
                self._watch.pop(c, None)
            self.dirty |= changed
            self._any = None

    def needs_rows(self) -> bool:
        """Whether a batch's rated rows are to be debited (`after_batch`): entity changes taken first, as it takes
        them."""
        self._refresh()
        return self.any_watched()

    def any_watched(self) -> bool:
        """Whether any customer has a wallet or a credit limit (else a batch costs nothing here)."""
        if self._any is None:
            self._any = any(self.table.has_wallets(t, c) or self._watched(t, c)[0] for t, c in self._customers())
        return self._any

    def _customers(self) -> set[tuple[str, str]]:
        found = {(d.tenant, d.customer) for d in self.table.docs.values() if isinstance(d, WalletDoc)}
        found |= {(d.tenant, d.external_id) for d in self.table.docs.values()
                  if isinstance(d, CustomerDoc) and (th.CREDIT_LIMIT in d.metadata
                                                     or th.COMMITMENT_PERCENT in d.metadata)}  # fmt: skip
        return found

    def _watched(self, tenant: str, customer: str) -> tuple[bool, th.Rules]:
        slot = (tenant, customer)
        found = self._watch.get(slot)
        if found is None:
            doc = self.table.customer(tenant, customer)
            rules, errors = th.rules_from_metadata(doc.metadata if doc is not None and not doc.deleted else None)
            for error in errors:
                log.error("customer %s/%s: %s (left out)", tenant, customer, error)
            found = (self.table.has_wallets(tenant, customer) or rules.postpaid, rules)
            if len(self._watch) > 100_000:
                self._watch.clear()
            self._watch[slot] = found
        return found

    def _wallets(self, tenant: str, customer: str) -> list[WalletDoc]:
        """The customer's wallets in one currency (its first wallet's: a customer is billed in one currency; a
        wallet in another one, which the store refuses for a customer with a currency, is left out)."""
        wallets = self.table.wallets(tenant, customer)
        return [w for w in wallets if w.currency == wallets[0].currency] if wallets else wallets

    # --- after a rated batch --------------------------------------------------------------------------------
    def after_batch(self, states: dict[int, Any], rated: dict[int, list[tuple]], last: dict[int, int],
                    now_ms: int) -> list[Output]:  # fmt: skip
        """Debit the batch's rated rows (per partition, in input order) and decide; the outputs to produce.
        (`last`, the batch's last offset per partition, is not needed: each row carries its own offset.)"""
        self._refresh()
        out: list[Output] = self.session_messages(states)
        if not self.any_watched():
            return out
        for p, rows in rated.items():
            mine: dict[tuple[str, str], list[tuple]] = {}
            for row in rows:
                slot = (row[_TENANT], row[_CUSTOMER])
                if slot in mine:
                    mine[slot].append(row)
                elif self._watched(*slot)[0]:
                    mine[slot] = [row]
            for (tenant, customer), own in mine.items():
                out += self._guarded(self._customer, states[p], tenant, customer, own, now_ms)
        return out

    def _guarded(self, decide: Any, state: Any, tenant: str, customer: str, *args: Any, **kw: Any) -> list[Output]:
        """`decide(state, tenant, customer, ...)`, one customer's debit and decisions: any exception is logged
        (`_skipped`) and the customer left as it was for this batch, never failing the batch (one bad customer
        must not stall every tenant's rating: a failed batch is replayed, and would fail again)."""
        try:
            return decide(state, tenant, customer, *args, **kw)
        except Exception as exc:
            self._skipped(tenant, customer, "debit and decisions", exc)
            return []

    def _skipped(self, tenant: str, customer: str, what: str, exc: Exception) -> None:
        """Count (`meterstream_processor_balance_skips_total`) and log a customer's skipped `what`, the log at most
        once per `_SKIP_LOG_S` seconds per customer and `what`."""
        metrics.BALANCE_SKIPS.labels(what).inc()
        now, slot = time.monotonic(), (tenant, customer, what)
        if now - self._skip_logged.get(slot, -_SKIP_LOG_S) < _SKIP_LOG_S:
            return
        if len(self._skip_logged) > 10_000:
            self._skip_logged.clear()
        self._skip_logged[slot] = now
        log.error("customer %s/%s: %s skipped: %s: %s", tenant, customer, what, type(exc).__name__, exc,
                  exc_info=exc)  # fmt: skip

    def session_messages(self, states: dict[int, Any]) -> list[Output]:
        """The hold, release and disconnect messages the batch's session records left in their partitions'
        outboxes (processor/sessions.py), taken out of the batch's state: produced with the batch, and again,
        the same, if a crash repeats it. A partition's outbox is read only if the batch wrote it (a state that
        cannot tell, the faust engine's view, is not read: that engine sends no session messages)."""
        out: list[Output] = []
        for state in states.values():
            written = state.pending if isinstance(state, BatchState) else state if isinstance(state, dict) else ()
            if sessions.OUTBOX_KEY in written:
                out += [self._message(m) for m in sessions.take_outbox(state)]
        return out

    def _message(self, m: dict[str, Any]) -> Output:
        """An outbox message (processor/sessions.py) as the output it stands for, its id made from its `key`."""
        tenant, customer = m["tenant"], m["customer"]
        if m["topic"] == "provisioning":
            cmd = ProvisioningCommand(id=_id(tenant, customer, *m["key"]), tenant=tenant, customer=customer,
                                      command=m["command"], reason=m["reason"], cause=m["cause"], state=m["state"],
                                      at=m["at"])  # fmt: skip
            return (self.provisioning, customer_key(tenant, customer), encode(cmd))
        note = Notification(id=_id(tenant, customer, *m["key"]), tenant=tenant, customer=customer, kind=m["kind"],
                            data=m["data"], at=m["at"])  # fmt: skip
        return (self.notifications, customer_key(tenant, customer), encode(note))

    def _customer(self, state: Any, tenant: str, customer: str, rows: Iterable[tuple], now_ms: int,
                  replayable: bool = True) -> list[Output]:  # fmt: skip
        key = balance_key(tenant, customer)
        current = state.get(key)
        entry: dict[str, Any] = dict(current) if current is not None else {"o": -1}
        wallets = self._wallets(tenant, customer)
        currency = wallets[0].currency if wallets else None
        marks = _marks(wallets)
        mark_text = [_iso(m) for m in marks]
        pieces = dict(entry.get("u", {}))
        periods = dict(entry.get("m", {}))
        pre = Decimal(entry.get("pre", "0"))
        last = entry["o"]
        as_of = entry.get("as")
        debited = False
        for row in rows:
            offset = row[_OFFSET]
            if replayable:  # else a row released by the clock, committed with this debit (never replayed)
                if offset <= last:
                    continue  # debited already (a replay of a committed position)
                last = offset
            amount = Decimal(row[_AMOUNT])
            ptext = f"{row[_PERIOD]}|{row[_CURRENCY]}"
            periods[ptext] = str(EXACT.add(Decimal(periods.get(ptext, "0")), amount))
            if _first_day(row[_PERIOD]) >= _first_day(entry.get("pl", "").partition("|")[0]):
                entry["pl"] = ptext  # only forward: a session's row (released late) is dated at its start
            as_of = row[_TIME]
            debited = True
            if row[_CURRENCY] != currency:
                continue
            i = bisect_right(marks, _when(row[_TIME])) - 1
            if i < 0:
                pre = EXACT.add(pre, amount)
            else:
                k = mark_text[i]
                pieces[k] = str(EXACT.add(Decimal(pieces.get(k, "0")), amount))
        if not debited:
            return []
        if len(periods) > _PERIODS_KEPT:
            periods = dict(sorted(periods.items())[-_PERIODS_KEPT:])
        entry.update(o=last, u=pieces, m=periods, pre=str(pre), **({"as": as_of} if as_of else {}))
        return self._decide(state, key, entry, tenant, customer, wallets, now_ms)

    def _decide(self, state: Any, key: str, entry: dict[str, Any], tenant: str, customer: str,
                wallets: list[WalletDoc], now_ms: int, at: str | None = None) -> list[Output]:  # fmt: skip
        """Evaluate the customer's entry, write it into `state` and return the outputs of any change; `at`: when
        it was decided (default: the event time of the last usage debited)."""
        out: list[Output] = []
        _, rules = self._watched(tenant, customer)
        ckey = customer_key(tenant, customer)
        suspended = set(entry.get("sus", []))
        counters = dict(entry.get("n", {}))
        at = at or entry.get("as") or _iso(datetime.fromtimestamp(now_ms / 1000, UTC))
        if wallets:
            marks = _marks(wallets)
            now = max(datetime.fromtimestamp(now_ms / 1000, UTC), marks[-1])
            if entry.get("as"):
                now = max(now, _when(entry["as"]))
            ev = evaluate(wallets, entry.get("u", {}), now)
            cur = ev.currency
            balance_text = str(from_units(ev.balance, cur))
            figures = {"balance": balance_text, "currency": cur, "used": str(from_units(ev.used, cur)),
                       "credits_in": str(from_units(ev.inbound, cur))}  # fmt: skip
            snap = BalanceSnapshot(tenant=tenant, customer=customer, currency=cur, balance=balance_text,
                                   consumed=str(from_units(ev.used, cur)), as_of=at, wallets=ev.wallets)  # fmt: skip
            out.append((self.balances, ckey, encode(snap)))
            exhausted = ev.balance <= 0 and ev.used > 0
            out += self._suspension(tenant, customer, EXHAUSTED, exhausted, suspended, counters, figures, at,
                                    f"balance {balance_text} {cur} <= 0", "balance.exhausted", "top-up")  # fmt: skip
            now_crossed = th.crossed(rules, cur, ev.balance, ev.inbound, ev.used)
            for level in th.entered(entry.get("th", []), now_crossed):
                n = counters[level] = counters.get(level, 0) + 1
                out.append(self._note(tenant, customer, "balance.threshold_crossed", n,
                                      {**figures, "threshold": level}, at, level))  # fmt: skip
            entry["th"] = sorted(now_crossed)
            due = self._top_ups_due(wallets, ev, _when(at))
            for rule_id in th.entered(entry.get("tu", []), set(due)):
                w, rule = due[rule_id]
                n = counters[f"tu:{rule_id}"] = counters.get(f"tu:{rule_id}", 0) + 1
                out.append(self._note(tenant, customer, th.TOP_UP_REQUESTED, n,
                                      top_up_request(w, rule, ev), at, rule_id))  # fmt: skip
            if due or entry.get("tu"):
                entry["tu"] = sorted(due)
        try:  # on copies, applied only whole: a failure leaves the levels as they were, and no output half made
            tried, sus, cnt = dict(entry), set(suspended), dict(counters)
            out += self._limits(tenant, customer, rules, tried, sus, cnt, at)
            entry.update(tried)
            suspended, counters = sus, cnt
        except Exception as exc:  # one customer's levels never stop the batch (its debit is still kept)
            self._skipped(tenant, customer, "levels", exc)
        entry["sus"] = sorted(suspended)
        entry["n"] = counters
        state[key] = entry
        return out

    def _limits(self, tenant: str, customer: str, rules: th.Rules, entry: dict[str, Any], suspended: set[str],
                counters: dict[str, int], at: str) -> list[Output]:  # fmt: skip
        """The postpaid decisions of a customer's entry: levels, the soft `limit`, the credit limit's suspension
        (updates `entry`, `suspended` and `counters` in place)."""
        out: list[Output] = []
        limit = rules.credit_limit
        used_period = Decimal(entry.get("m", {}).get(entry.get("pl", ""), "0"))
        if rules.postpaid or entry.get("pth"):
            out += self._postpaid_levels(tenant, customer, rules, entry, used_period, counters, at)
        soft = th.soft_limited(rules, used_period)
        if soft or SOFT_LIMIT in suspended:
            figures = {"period": entry.get("pl", "").split("|")[0], "usage": str(used_period),
                       "credit_limit": str(limit) if limit is not None else None,
                       "soft_percent": None if rules.credit_soft_percent is None
                       else str(rules.credit_soft_percent)}  # fmt: skip
            out += self._suspension(tenant, customer, SOFT_LIMIT, soft, suspended, counters, figures, at,
                                    f"usage {used_period} >= {rules.credit_soft_percent}% of credit limit {limit}",
                                    SOFT_NOTE, "usage under the soft level of the credit limit",
                                    command="limit")  # fmt: skip
        over = limit is not None and used_period > limit
        if over or CREDIT_LIMIT in suspended:
            figures = {"period": entry.get("pl", "").split("|")[0], "usage": str(used_period),
                       "credit_limit": str(limit) if limit is not None else None}  # fmt: skip
            out += self._suspension(tenant, customer, CREDIT_LIMIT, over, suspended, counters, figures, at,
                                    f"usage {used_period} > credit limit {limit}", "credit_limit.exceeded",
                                    "usage within the credit limit")  # fmt: skip
        return out

    def _postpaid_levels(self, tenant: str, customer: str, rules: th.Rules, entry: dict[str, Any], used: Decimal,
                         counters: dict[str, int], at: str) -> list[Output]:  # fmt: skip
        """The period's usage against percentages of the credit limit and of the subscriptions' minimum commitment:
        one notification per level entering the set kept in the entry (`pth`), as the prepaid levels."""
        period, _, currency = entry.get("pl", "").partition("|")
        commitment = self._commitment(tenant, customer, currency, at) if rules.commitment_percent else None
        now = th.postpaid_crossed(rules, used, commitment)
        out = []
        for level in th.entered(entry.get("pth", []), now):
            n = counters[f"p:{level}"] = counters.get(f"p:{level}", 0) + 1
            kind = LIMIT_LEVEL if level.startswith("limit:") else COMMITMENT_LEVEL
            data = {"threshold": level, "period": period, "usage": str(used), "currency": currency,
                    "credit_limit": None if rules.credit_limit is None else str(rules.credit_limit),
                    "commitment": None if commitment is None else str(commitment)}  # fmt: skip
            out.append(self._note(tenant, customer, kind, n, data, at, level))
        entry["pth"] = sorted(now)
        return out

    def _commitment(self, tenant: str, customer: str, currency: str, at: str) -> Decimal | None:
        """The minimum commitment per billing period of the customer's subscriptions in effect at `at` (their plan
        versions' `minimum_commitment` in `currency`, summed; not prorated); None when none has one."""
        when = _when(at)
        total = None
        for sub in self.table.subscriptions(tenant, customer):
            phase = sub.phase_at(when)
            doc = None if phase is None else self.table.plan_version(tenant, phase.plan_code, phase.plan_version)
            if doc is not None and doc.minimum_commitment and doc.currency == currency:
                total = EXACT.add(total or Decimal(0), doc.minimum_commitment)
        return total

    @staticmethod
    def _top_ups_due(wallets: list[WalletDoc], ev: Evaluation, at: datetime) -> Due:
        """rule id -> (wallet, rule) for every automatic top-up rule in effect at `at` whose active wallet's
        balance is at or below its threshold (threshold_credits x rate_amount, exact)."""
        due: Due = {}
        balance = {row["id"]: Decimal(row["balance"]) for row in ev.wallets}
        for w in wallets:
            if not w.top_up_rules or w.status != "active" or (w.ends_at is not None and w.ends_at <= at):
                continue
            for rule in w.top_up_rules:
                if (rule.started_at is not None and at < rule.started_at) or (
                        rule.expiration_at is not None and at >= rule.expiration_at):  # fmt: skip
                    continue
                if balance[w.id] <= EXACT.multiply(rule.threshold_credits, w.rate_amount):
                    due[rule.id] = (w, rule)
        return due

    def _suspension(self, tenant: str, customer: str, reason: str, holds: bool, suspended: set[str],
                    counters: dict[str, int], figures: dict[str, Any], at: str, cause: str, note_kind: str,
                    lifted: str, command: str = "suspend") -> list[Output]:  # fmt: skip
        """When `reason` starts to hold: the `command` (suspend, or limit) and the `note_kind` notification (its
        counter + 1, so each episode has its own ids); when it stops: the reactivate command (`lifted`); else
        nothing. Updates `suspended` (the active reasons, suspend and limit) and `counters` in place."""
        if holds and reason not in suspended:
            n = counters[reason] = counters.get(reason, 0) + 1
            suspended.add(reason)
            return [self._command(tenant, customer, command, reason, n, cause, figures, at),
                    self._note(tenant, customer, note_kind, n, figures, at)]  # fmt: skip
        if not holds and reason in suspended:
            suspended.discard(reason)
            return [self._command(tenant, customer, "reactivate", reason, counters.get(reason, 0), lifted, figures, at)]
        return []

    def _command(self, tenant: str, customer: str, command: str, reason: str, n: int, cause: str,
                 figures: dict[str, Any], at: str) -> Output:  # fmt: skip
        msg = ProvisioningCommand(id=_id(tenant, customer, command, reason, n), tenant=tenant, customer=customer,
                                  command=command, reason=reason, cause=cause, state=figures, at=at)  # type: ignore[arg-type]  # fmt: skip
        return (self.provisioning, customer_key(tenant, customer), encode(msg))

    def _note(self, tenant: str, customer: str, kind: str, n: int, data: dict[str, Any], at: str,
              level: str = "") -> Output:  # fmt: skip
        msg = Notification(id=_id(tenant, customer, kind, level, n), tenant=tenant, customer=customer, kind=kind,
                           data=data, at=at)  # fmt: skip
        return (self.notifications, customer_key(tenant, customer), encode(msg))

    def after_lines(self, states: dict[int, Any], lines: dict[int, list[bytes]], now_ms: int) -> list[Output]:
        """`after_batch` for the legacy engine, whose rated records are JSON lines (decoded only when some
        customer has a wallet or a credit limit)."""
        self._refresh()
        if not self.any_watched():
            return self.session_messages(states)
        loads = orjson.loads
        return self.after_batch(states, {p: [row_of(loads(x)) for x in xs] for p, xs in lines.items()}, {}, now_ms)

    # --- wallet changes without usage -----------------------------------------------------------------------
    def reevaluate(self, state: Any, tenant: str, customer: str, now_ms: int) -> list[Output]:
        """Decide again for a customer whose wallets or rules changed (no new usage): e.g. a top-up reactivates."""
        key = balance_key(tenant, customer)
        current = state.get(key)
        entry = dict(current) if current is not None else {"o": -1}
        wallets = self._wallets(tenant, customer)
        at = entry.get("as")
        if wallets:  # the newest wallet change (a top-up's settlement) is what decides now
            newest = _marks(wallets)[-1]
            at = _iso(newest) if at is None or _when(at) < newest else at
        return self._decide(state, key, entry, tenant, customer, wallets, now_ms, at)

    def tick(self, processor: Any) -> Any:
        """Once per loop iteration: release the telecom sessions held too long (processor/sessions.py, by the wall
        clock) and evaluate the customers whose wallets changed (a top-up, a new wallet), for the partitions of
        this worker, as a batch of its own (`checkpoint.InFlight`) whose outputs (rated records, debits,
        notifications, commands) are produced and whose state commits with the partition's current offset;
        None when there is nothing to do. A release by the clock is decided first, in a batch without outputs
        that the tick adds to the checkpoint and commits itself (`_decide_releases`), then performed."""
        self._refresh()
        if not processor.stores:  # no partition assigned yet: keep the changes for later
            return None
        now_ms = int(time.time() * 1000)
        legacy = self._legacy_indexes(processor)
        expired = self._held_too_long(processor, now_ms)
        decided = self._releases_decided(processor)
        mine: list[tuple[tuple[str, str], int]] = []
        if self.dirty:
            changed, self.dirty = self.dirty, set()
            if self.partitions is None:
                topic = processor.topics.usage
                self.partitions = len(processor.consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            mine = [(c, partition_of(*c, self.partitions)) for c in sorted(changed)]
            mine = [(c, p) for c, p in mine if p in processor.stores and self._watched(*c)[0]]
        if not mine and not expired and not decided and not legacy:
            return None
        processor.checkpoint.commit_delivered(keep=0)  # a tick's buffer chains on a committed state only
        if expired:  # phase one, committed before any output depends on it
            self._decide_releases(processor, expired)
            decided = self._releases_decided(processor)
        batch = InFlight(time.perf_counter(), 0)
        outputs: list[Output] = []
        scratch: dict[int, BatchState] = {}  # partitions never processed: no position to commit a state with
        for p in legacy:  # an earlier version's held index and outbox, moved to this version's keys
            state = self._tick_state(processor, batch, scratch, p)
            for key, value in sessions.upgrade(state, batch.last.get(p, -1)):
                state[key] = value
            outputs += self.session_messages({p: state})
            if p not in batch.states:  # never committed (no position): not looked at again
                self._upgraded[p] = processor.stores[p]
        for p, skeys in decided.items():  # phase two: every decision here is committed (commit_delivered above)
            state = self._tick_state(processor, batch, scratch, p)
            outputs += self._release(processor, batch, state, p, skeys, now_ms)
        for (tenant, customer), p in mine:
            state = self._tick_state(processor, batch, scratch, p)
            outputs += self._guarded(self.reevaluate, state, tenant, customer, now_ms)
        for topic, key, value in outputs:
            processor.checkpoint.produce(topic, key, value, -1, batch)
        return batch

    @staticmethod
    def _tick_state(processor: Any, batch: InFlight, scratch: dict[int, BatchState], p: int) -> BatchState:
        """Partition p's buffer in the tick's batch, committed with its current offset (a scratch buffer, never
        committed, for a partition that has no position yet)."""
        state = batch.states.get(p) or scratch.get(p)
        if state is None:
            nxt = processor.stores[p].next_offset()  # exact: every batch before this one is committed
            if nxt is None:
                state = scratch[p] = BatchState(processor.stores[p])
            else:
                state = batch.states[p] = processor.latest[p] = BatchState(processor.stores[p],
                                                                           processor.latest.get(p))  # fmt: skip
                batch.last[p], batch.outcomes[p] = nxt - 1, Counter()
        return state

    def observe(self, msgs: Iterable[Any]) -> None:
        """Keep each partition's stream time: the newest Kafka timestamp (`timestamp_ms`) of the messages read
        (`columnar.Message`s of any partitions; a message without one, None, leaves it)."""
        by_partition: dict[int, list[int | None]] = {}
        for m in msgs:
            by_partition.setdefault(m.partition, []).append(m.timestamp_ms)
        for p, timestamps in by_partition.items():
            self.observe_partition(p, timestamps)

    def observe_partition(self, p: int, timestamps: Sequence[int | None]) -> None:
        """`observe` for one partition's messages, given their Kafka timestamps (None: none), in C-level calls (the
        columnar step calls it per partition of every batch, before rating them)."""
        newest = max(filter(None, timestamps), default=-1)
        if newest > self.stream_ms.get(p, -1):
            self.stream_ms[p] = newest

    def _legacy_indexes(self, processor: Any) -> list[int]:
        """The partitions whose state still has an earlier version's held index and outbox (`sessions.LEGACY_KEY`),
        each store read once: a store without it (or moved from it by a committed tick) is not read again."""
        found = []
        self._upgraded = {p: s for p, s in self._upgraded.items() if processor.stores.get(p) is s}  # revoked: let go
        for p, store in processor.stores.items():
            if self._upgraded.get(p) is store:
                continue
            if store.get(sessions.LEGACY_KEY) is None:  # committed without it: never looked at again
                self._upgraded[p] = store
            elif (latest := processor.latest.get(p)) is None or latest.get(sessions.LEGACY_KEY) is not None:
                found.append(p)  # (else a batch in flight moves it: looked at again once that commits or drops)
        return found

    def _held_too_long(self, processor: Any, now_ms: int) -> dict[int, list[str]]:
        """partition -> its sessions held `sessions.HOLD_TIMEOUT_MS` or more (the store's committed held index,
        each candidate confirmed in the partition's latest state): by
        stream time (a record of the session produced within the timeout would have been read before the
        partition's newest timestamp passed it: a busy partition never waits to be caught up), or by the wall
        clock once the partition is caught up (an idle partition; a session held without a Kafka timestamp)."""
        if self.catalog is None:
            return {}
        found, held = {}, set()
        self.stream_ms = {p: ms for p, ms in self.stream_ms.items() if p in processor.stores}  # revoked: forgotten
        self._held_summary = {p: v for p, v in self._held_summary.items() if p in processor.stores}
        for p, store in processor.stores.items():
            index = store.held
            newest = max(now_ms, self.stream_ms.get(p, -1))
            if not index or newest - self._summary(p, store)[0] < sessions.HOLD_TIMEOUT_MS:
                continue  # none due (an unchanged index is not read again)
            latest = processor.latest.get(p)
            state = latest if latest is not None else store
            caught_up = (nxt := store.next_offset()) is not None and self._caught_up(processor, p, nxt)
            if not caught_up and self.stream_ms.get(p, -1) - self._summary(p, store)[0] < sessions.HOLD_TIMEOUT_MS:
                continue  # a backlog: only stream time decides, and it has not passed any
            due = set(sessions.timed_out(index, state, self.stream_ms[p], None)) if p in self.stream_ms else set()
            # not caught up: the wall clock decides nothing, so nothing is confirmed (a backlog reads no state here)
            clock = sessions.timed_out(index, state if caught_up else None, now_ms, self.first_held)
            if self.first_held:
                held |= sessions.held_keys(index)
            due.update(clock)
            if due:
                found[p] = sorted(due)
        if self.first_held:  # sessions released by a record, or of a revoked partition: no longer timed here
            self.first_held = {k: ms for k, ms in self.first_held.items() if k in held}
        return found

    def _summary(self, p: int, store: Any) -> tuple[float, bool]:
        """`sessions.hold_summary` of partition p's held index, derived again only when the index changed."""
        found = self._held_summary.get(p)
        if found is None or found[0] is not store or found[1] != store.held_version:
            found = self._held_summary[p] = (store, store.held_version, sessions.hold_summary(store.held))
        return found[2]

    def _releases_decided(self, processor: Any) -> dict[int, list[str]]:
        """partition -> its sessions whose release by the clock is decided (`sessions.decide_release`): the store's
        committed held index, confirmed in the partition's latest state."""
        found = {}
        for p, store in processor.stores.items():
            if not store.held or not self._summary(p, store)[1]:
                continue
            latest = processor.latest.get(p)
            if keys := sessions.decided(store.held, latest if latest is not None else store):
                found[p] = keys
        return found

    def _decide_releases(self, processor: Any, expired: dict[int, list[str]]) -> None:
        """Phase one of the release by the clock: record in each session's state that it is to be released, and
        under which identity (`sessions.decide_release`), as a batch of its own with no output, committed now.
        The wall clock is read only here: once this is committed, whatever releases the session (the next phase,
        repeated after a crash, or a record of the session read first) names its row alike."""
        batch = InFlight(time.perf_counter(), 0)
        scratch: dict[int, BatchState] = {}
        for p, skeys in expired.items():
            state = self._tick_state(processor, batch, scratch, p)
            for skey in skeys:
                self.first_held.pop(skey, None)
                for key, value in sessions.decide_release(state, skey, batch.last[p]):
                    state[key] = value
        processor.checkpoint.add(batch)
        processor.checkpoint.commit_delivered(keep=0)

    @staticmethod
    def _caught_up(processor: Any, p: int, nxt: int) -> bool:
        """Whether partition p's committed position reached its high watermark as last fetched: a partition with
        records still to read (a backlog after a stop) may hold the missing record, so its sessions wait."""
        _, high = processor.consumer.get_watermark_offsets(TopicPartition(processor.topics.usage, p), cached=True)
        return high < 0 or nxt >= high

    def _release(self, processor: Any, batch: InFlight, state: BatchState, p: int, skeys: list[str],
                 now_ms: int) -> list[Output]:  # fmt: skip
        """Release the sessions `skeys` of partition p by the clock: their rated records go to the rated topic,
        their cost is debited (a customer with wallets or a credit limit), their notes go out; all committed
        with the tick's batch. Each session's messages are taken from the outbox as it goes (one session's at a time
        in it, however many are released), and go out after the debits."""
        offset = batch.last[p]
        rows, messages = [], []
        for skey in skeys:
            try:
                result = sessions.release_timed_out(self.catalog, state, skey, p, offset, now_ms)
            except RatingError as exc:  # reported, and out of the index: a later record of the session decides
                _, tenant, customer = state.get(sessions.held_key(skey))[0][:3]
                log.error("session %r of %s/%s not released by the clock: %s: %s", skey, tenant, customer, exc.field,
                          exc.reason)  # fmt: skip
                note = {"topic": "notifications", "kind": sessions.RELEASE_FAILED, "tenant": tenant,
                        "customer": customer, "key": [sessions.RELEASE_FAILED, skey, offset],
                        "at": _iso(datetime.fromtimestamp(now_ms / 1000, UTC)),
                        "data": {"session": skey.split("\x1f")[-1], "field": exc.field,
                                 "reason": exc.reason}}  # fmt: skip
                for key, value in (sessions.drop_held(skey), sessions.outbox_write(state, [note], offset)):
                    state[key] = value
                messages += self.session_messages({p: state})
                continue
            for key, value in result.writes:  # committed with this batch only: no replay to guard against
                state[key] = value
            messages += self.session_messages({p: state})
            if result.record is not None:
                rows.append(row_of(result.record))
        out: list[Output] = []
        if rows:
            for value in pack_rows(rows):
                processor.checkpoint.produce(processor.topics.rated, None, value, p, batch)
            mine: dict[tuple[str, str], list[tuple]] = {}
            for row in rows:
                if self._watched(row[_TENANT], row[_CUSTOMER])[0]:
                    mine.setdefault((row[_TENANT], row[_CUSTOMER]), []).append(row)
            for (tenant, customer), own in mine.items():
                out += self._guarded(self._customer, state, tenant, customer, own, now_ms, replayable=False)
        return out + messages


def top_up_request(w: WalletDoc, rule: TopUpRuleDoc, ev: Evaluation) -> dict[str, Any]:
    """The data of a `wallet.top_up_requested` notification: what to add (credits as decimal text), and why."""
    row = next(r for r in ev.wallets if r["id"] == w.id)
    return {"wallet": w.id, "rule": rule.id, "currency": w.currency, "paid_credits": format(rule.paid_credits, "f"),
            "granted_credits": format(rule.granted_credits, "f"),
            "threshold_credits": format(rule.threshold_credits, "f"), "balance": row["balance"],
            "credits_balance": row["credits"]}  # fmt: skip


def install(processor: Any) -> Balances | None:
    """Wire prepaid balances into a native processor (processor/runner.py calls it once, in `__init__`): the
    columnar step debits after each batch; the runner produces `BatchOutput.balances` with the batch's outputs
    and adds `tick(processor)`'s batch to the checkpoint once per loop iteration (the legacy engine calls
    `after_lines` on its JSON lines). None when the processor has no live entities (no wallets can reach it)."""
    found = Balances.of_catalog(processor.settings, processor.catalog)
    if found is not None:
        from meterstream.ingest.topics import ensure_provisioning_topics

        ensure_provisioning_topics(processor.settings)  # an older deployment's topics may predate them
        found.catalog = processor.catalog
        processor.columnar.balances = found  # it debits, and feeds stream time (`observe_partition`), per batch
    return found


__all__ = [
    "BALANCE_PREFIX",
    "Balances",
    "Evaluation",
    "balance_key",
    "evaluate",
    "install",
    "partition_of",
    "top_up_request",
]
