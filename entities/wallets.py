"""Prepaid wallets of customers and their ledger, in the entity store (docs/wallets.md).

A wallet (`WalletRow`) belongs to one customer (its external id), in a currency (the customer's when it has
one) with a `rate_amount`: the price of one credit in that currency (1: the wallet counts money). It has a
name, an optional code, a `priority` (lowest is consumed first), an optional `expires_at` (its credits expire
then) and a status: active, or terminated (its credits end at `terminated_at`).

Its ledger (`WalletTransactionRow`): inbound transactions (a `paid` top-up or `granted` credits), each with
its credits, their amount in integer minor units (credits x rate_amount: it must be a whole number of minor
units, or the top-up is refused naming the field), `pending` or `settled` (only settled ones count), an
optional expiry; outbound `void` transactions (credits taken back by hand). Every write may carry a client
`reference`: repeating a write with the same reference answers the first one (same content) or `Conflict`
naming `reference` (other content), so a retried top-up is never counted twice.

Consumption and expiry are never stored: they are DERIVED from the ledger and the customer's rated usage by
the one pure rule of billing/wallet_balance.py (`customer_balances` here wires the two), so a recomputation
can never debit twice. Every write also puts the wallet with its settled ledger (`wallet_doc`) on the entity
outbox, in the same transaction, so the relay carries it to the `entities` topic and the stream processor
(processor/balances.py) debits with the same rule on its own state.

Automatic top-ups (`TopUpRule`, Lago's `recurring_transaction_rules` with trigger `threshold`): a wallet may
carry one rule "when the ongoing balance falls to or below `threshold_credits`, add `paid_credits` and/or
`granted_credits`". The rules travel with the wallet's document; the stream processor sees each crossing and
puts one request on the `notifications` topic (kind `wallet.top_up_requested`, a deterministic id); the API
process's notifications relay calls `recurring_top_up`, which writes the top-up with the reference
`auto:<request id>:<kind>`: a request delivered twice writes one top-up. A rule with trigger `interval` tops up on
the calendar instead (weekly ... yearly, billing/wallet_intervals.py): the billing run calls `interval_top_ups`,
which writes each anniversary due once (references `interval:<rule id>:<day>:<kind>`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.billing.allocation import from_units, to_units
from meterstream.billing.wallet_balance import Draw, Lot, WalletBalance, WalletTerms, balances, usage_draws
from meterstream.billing.wallet_intervals import INTERVALS, anniversaries
from meterstream.entities import outbox
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.customers import find_customer_row
from meterstream.entities.db import Base
from meterstream.rating.money import EXACT, ROUNDING, minor_units, round_money
from meterstream.schemas.entities import TopUpRuleDoc, WalletDoc, WalletEntryDoc
from meterstream.webhooks import events

__all__ = [
    "ACTIVE",
    "TERMINATED",
    "CustomerBalances",
    "StoredTransaction",
    "StoredWallet",
    "TopUp",
    "TopUpRule",
    "WalletSpec",
    "WalletState",
    "check_rules",
    "create_wallet",
    "credits_of",
    "customer_balances",
    "due_anniversaries",
    "get_transaction",
    "get_wallet",
    "interval_top_ups",
    "list_transactions",
    "list_wallets",
    "recurring_top_up",
    "settle_transaction",
    "terminate_wallet",
    "top_up",
    "transaction_source",
    "update_wallet",
    "void_credits",
]

ACTIVE = "active"
TERMINATED = "terminated"
PENDING = "pending"
SETTLED = "settled"
CREDIT_DECIMALS = 5  # credits shown with at most 5 decimals (Lago's precision), rounded half up
MAX_PRIORITY = 50
_CREDITS_Q = Decimal(1).scaleb(-CREDIT_DECIMALS)


class WalletRow(Base):
    __tablename__ = "wallets"
    __table_args__ = (Index("ix_wallets_tenant_customer", "tenant", "customer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))  # the customer's external id
    code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    rate_amount: Mapped[str] = mapped_column(String(40))  # decimal text: one credit in `currency`
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    recurring_rules: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list (migration 0012)


class WalletTransactionRow(Base):
    __tablename__ = "wallet_transactions"
    __table_args__ = (UniqueConstraint("wallet_ref", "reference", name="uq_wallet_transactions_reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    tenant: Mapped[str] = mapped_column(String(128))
    wallet_ref: Mapped[int] = mapped_column(Integer, ForeignKey("wallets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    kind: Mapped[str] = mapped_column(String(16))  # paid | granted | void
    credits: Mapped[str] = mapped_column(String(40))  # decimal text
    units: Mapped[int] = mapped_column(BigInteger)  # the amount in minor units of the wallet's currency
    status: Mapped[str] = mapped_column(String(16))  # pending | settled
    reference: Mapped[str | None] = mapped_column(String(256), nullable=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# --- values --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletSpec:
    tenant: str
    customer: str
    currency: str | None = None  # None: the customer's
    rate_amount: Decimal = Decimal(1)
    name: str | None = None
    code: str | None = None
    priority: int = MAX_PRIORITY
    expires_at: datetime | None = None
    rules: Sequence[Mapping[str, Any]] | None = None  # automatic top-up rules as given (checked: `check_rules`)


@dataclass(frozen=True)
class TopUpRule:
    """An automatic top-up, method `fixed`: add `paid_credits` and `granted_credits` (0: none of that kind) when
    the wallet's ongoing balance falls to or below `threshold_credits` (trigger `threshold`), or on each
    anniversary of `started_at` (else of the wallet's creation) every `interval` (trigger `interval`:
    billing/wallet_intervals.py; `threshold_credits` None)."""

    id: str
    threshold_credits: Decimal | None
    paid_credits: Decimal
    granted_credits: Decimal
    created_at: datetime
    started_at: datetime | None = None
    expiration_at: datetime | None = None
    trigger: str = "threshold"
    method: str = "fixed"
    interval: str | None = None  # weekly, monthly, quarterly, semiannual, yearly (trigger `interval`)


@dataclass(frozen=True)
class StoredWallet:
    id: str
    tenant: str
    customer: str
    code: str | None
    name: str | None
    currency: str
    rate_amount: Decimal
    priority: int
    status: str
    expires_at: datetime | None
    created_at: datetime
    terminated_at: datetime | None
    rules: tuple[TopUpRule, ...] = ()


@dataclass(frozen=True)
class TopUp:
    kind: Literal["paid", "granted"]
    credits: Any  # a Decimal, or decimal text; checked by `check_credits`
    status: Literal["pending", "settled"] = SETTLED
    reference: str | None = None
    expires_at: datetime | None = None
    name: str | None = None
    field: str | None = None  # the name of `credits` in the caller's request (default: paid_credits, ...)


@dataclass(frozen=True)
class StoredTransaction:
    id: str
    wallet: str
    direction: str
    kind: str
    credits: Decimal
    units: int
    status: str
    reference: str | None
    name: str | None
    expires_at: datetime | None
    created_at: datetime
    settled_at: datetime | None


def _wallet(row: WalletRow) -> StoredWallet:
    return StoredWallet(
        id=row.wallet_id, tenant=row.tenant, customer=row.customer, code=row.code, name=row.name,
        currency=row.currency, rate_amount=Decimal(row.rate_amount), priority=row.priority, status=row.status,
        expires_at=aware(row.expires_at), created_at=aware(row.created_at), terminated_at=aware(row.terminated_at),  # type: ignore[arg-type]
        rules=_rules_of(row),
    )  # fmt: skip


def _rules_of(row: WalletRow) -> tuple[TopUpRule, ...]:
    if not row.recurring_rules:
        return ()
    out = []
    for r in json.loads(row.recurring_rules):
        times = {k: datetime.fromisoformat(r[k]) if r.get(k) else None for k in ("started_at", "expiration_at")}
        threshold = Decimal(r["threshold_credits"]) if r.get("threshold_credits") is not None else None
        amounts = [Decimal(r[k]) for k in ("paid_credits", "granted_credits")]
        out.append(TopUpRule(r["id"], threshold, *amounts, datetime.fromisoformat(r["created_at"]), **times,  # type: ignore[misc]
                             trigger=r.get("trigger", "threshold"), interval=r.get("interval")))  # fmt: skip
    return tuple(out)


def _rules_text(rules: Sequence[TopUpRule]) -> str | None:
    if not rules:
        return None
    return json.dumps([{"id": r.id, "trigger": r.trigger, "method": r.method, "interval": r.interval,
                        "threshold_credits": None if r.threshold_credits is None else str(r.threshold_credits),
                        "paid_credits": str(r.paid_credits),
                        "granted_credits": str(r.granted_credits), "created_at": r.created_at.isoformat(),
                        "started_at": r.started_at.isoformat() if r.started_at else None,
                        "expiration_at": r.expiration_at.isoformat() if r.expiration_at else None}
                       for r in rules])  # fmt: skip


def transaction_source(reference: str | None) -> str:
    """What wrote a transaction, from its reference: `threshold` (an automatic top-up the processor asked for,
    `auto:...`), `interval` (the billing run's, `interval:...`), else `manual` (Lago's wallet transaction `source`)."""
    if reference is not None and reference.startswith(("auto:", "interval:")):
        return "threshold" if reference.startswith("auto:") else "interval"
    return "manual"


def _tx(row: WalletTransactionRow, wallet_id: str) -> StoredTransaction:
    return StoredTransaction(
        id=row.transaction_id, wallet=wallet_id, direction=row.direction, kind=row.kind,
        credits=Decimal(row.credits), units=row.units, status=row.status, reference=row.reference, name=row.name,
        expires_at=aware(row.expires_at), created_at=aware(row.created_at), settled_at=aware(row.settled_at),  # type: ignore[arg-type]
    )  # fmt: skip


# --- checks --------------------------------------------------------------------------------------------------


def _decimal(field: str, value: Any) -> Decimal:
    if isinstance(value, (float, bool)):
        raise Invalid(field, f'a decimal string such as "10.50" (got the JSON {type(value).__name__} {value!r})')
    if isinstance(value, str):
        if len(value) > 40:
            raise Invalid(field, "at most 40 characters of decimal text")
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid(field, f"not a decimal number: {value!r}") from None
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise Invalid(field, f"a finite decimal number (got {value!r})")
    if len(str(value)) > 40:
        raise Invalid(field, "at most 40 characters of decimal text")
    if value and (value.adjusted() >= 24 or value.as_tuple().exponent < -20):  # type: ignore[operator]
        raise Invalid(field, f"out of range: below 10^24, at most 20 decimals (got {value})")
    return value


def check_credits(field: str, value: Any, rate_amount: Decimal, currency: str) -> tuple[Decimal, int]:
    """(credits, their amount in minor units) of a top-up or void, or `Invalid` naming `field`: a positive
    decimal with at most 5 decimals whose amount (credits x rate_amount) is a whole number of minor units."""
    credits = _decimal(field, value)
    if credits <= 0:
        raise Invalid(field, f"must be more than 0 (got {credits})")
    if credits.as_tuple().exponent < -CREDIT_DECIMALS:  # type: ignore[operator]
        raise Invalid(field, f"at most {CREDIT_DECIMALS} decimals (got {credits})")
    amount = EXACT.multiply(credits, rate_amount)
    try:
        units = to_units(amount, currency, field)
    except ValueError:
        raise Invalid(field, f"{credits} credits x rate_amount {rate_amount} = {amount} {currency}: not a whole "
                             f"number of {currency} minor units") from None  # fmt: skip
    return credits, units


def credits_of(units: int, wallet: StoredWallet) -> Decimal:
    """Minor units of a wallet's currency as credits: units / (rate_amount x 10^minor), 5 decimals half up."""
    value = ROUNDING.divide(from_units(units, wallet.currency), wallet.rate_amount)
    if not value:
        return Decimal(0)
    value = value.quantize(_CREDITS_Q, context=ROUNDING).normalize(ROUNDING)
    # a whole number keeps its digits: 10, not 1E+1 (what str() of a normalized 10 would print)
    return value.quantize(Decimal(1), context=ROUNDING) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


MAX_RULES = 1  # as Lago: one recurring rule per wallet
_RULES = "recurring_transaction_rules"
_RULE_FIELDS = {"id", "trigger", "method", "threshold_credits", "paid_credits", "granted_credits",
                "started_at", "expiration_at", "interval"}  # fmt: skip
_IGNORED_RULE_FIELDS = {"created_at", "status", "target_ongoing_balance", "transaction_metadata",
                        "transaction_name", "invoice_requires_successful_payment", "ignore_paid_top_up_limits",
                        "grants_target_top_up", "purchase_order_number", "payment_method",
                        "invoice_custom_section", "applied_invoice_custom_sections"}  # fmt: skip


def _optional_credits(field: str, value: Any, rate_amount: Decimal, currency: str) -> Decimal:
    """A rule's paid or granted credits: absent, empty or zero is 0; else checked like a top-up's."""
    if value is None or value == "":
        return Decimal(0)
    if not isinstance(value, (float, bool)) and _decimal(field, value) == 0:
        return Decimal(0)
    return check_credits(field, value, rate_amount, currency)[0]


def _rule_time(field: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str):
        try:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(field, f"an ISO 8601 time with its UTC offset (got {value!r})") from None
    else:
        raise Invalid(field, f"an ISO 8601 time with its UTC offset (got {value!r})")
    if found.tzinfo is None:
        raise Invalid(field, "a time with its UTC offset (2026-12-31T23:59:59Z)")
    return found.astimezone(UTC)


def check_rules(raw: Any, rate_amount: Decimal, currency: str, existing: Sequence[TopUpRule] = (),
                now: datetime | None = None) -> tuple[TopUpRule, ...]:  # fmt: skip
    """The automatic top-up rules of a wallet from a request's list (Lago's `recurring_transaction_rules`), or
    `Invalid` naming the field (`recurring_transaction_rules[0].threshold_credits`). A rule that names the `id`
    of an existing rule keeps its id and creation time; any other is new. Triggers `threshold` (with
    `threshold_credits`) and `interval` (with `interval`: weekly, monthly, quarterly, semiannual or yearly), method
    `fixed`; `target` is refused naming the field."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise Invalid(_RULES, "a list of rules")
    if len(raw) > MAX_RULES:
        raise Invalid(_RULES, f"at most {MAX_RULES} rule per wallet (got {len(raw)})")
    now = now or datetime.now(UTC)
    known = {r.id: r for r in existing}
    out = []
    for i, item in enumerate(raw):
        at = f"{_RULES}[{i}]"
        if not isinstance(item, Mapping):
            raise Invalid(at, "a JSON object")
        unknown = sorted(set(item) - _RULE_FIELDS - _IGNORED_RULE_FIELDS)
        if unknown:
            raise Invalid(f"{at}.{unknown[0]}", "not a field of a recurring transaction rule")
        trigger = item.get("trigger")
        if trigger not in ("threshold", "interval"):
            raise Invalid(f"{at}.trigger", f"`threshold` or `interval` (got {trigger!r})")
        method = item.get("method") or "fixed"
        if method != "fixed":
            raise Invalid(f"{at}.method", f"only `fixed` is supported (got {method!r})")
        threshold: Decimal | None = None
        interval = item.get("interval")
        if trigger == "interval":
            if interval not in INTERVALS:
                raise Invalid(
                    f"{at}.interval", f"one of {', '.join(INTERVALS)} for trigger `interval` (got {interval!r})"
                )
            if item.get("threshold_credits") not in (None, ""):
                raise Invalid(f"{at}.threshold_credits", "only for trigger `threshold`")
        else:
            if interval not in (None, ""):
                raise Invalid(f"{at}.interval", "only for trigger `interval`")
            interval = None
            if item.get("threshold_credits") in (None, ""):
                raise Invalid(f"{at}.threshold_credits", "required for trigger `threshold`")
            threshold = _decimal(f"{at}.threshold_credits", item["threshold_credits"])
            if threshold < 0 or threshold.as_tuple().exponent < -CREDIT_DECIMALS:  # type: ignore[operator]
                raise Invalid(f"{at}.threshold_credits",
                              f"0 or more, at most {CREDIT_DECIMALS} decimals (got {threshold})")  # fmt: skip
        paid = _optional_credits(f"{at}.paid_credits", item.get("paid_credits"), rate_amount, currency)
        granted = _optional_credits(f"{at}.granted_credits", item.get("granted_credits"), rate_amount, currency)
        if not paid and not granted:
            raise Invalid(f"{at}.paid_credits", "give paid_credits or granted_credits (more than 0)")
        started = _rule_time(f"{at}.started_at", item.get("started_at"))
        ends = _rule_time(f"{at}.expiration_at", item.get("expiration_at"))
        if started is not None and ends is not None and ends <= started:
            raise Invalid(f"{at}.expiration_at", "after started_at")
        given = item.get("id")
        before = known.get(given) if isinstance(given, str) else None
        out.append(TopUpRule(before.id if before else new_ulid(), threshold, paid, granted,
                             before.created_at if before else now, started, ends, trigger, "fixed",
                             interval))  # fmt: skip
    return tuple(out)


def _check_spec(spec: WalletSpec, customer_currency: str | None) -> WalletSpec:
    currency = spec.currency.upper() if isinstance(spec.currency, str) else customer_currency
    if currency is None:
        raise Invalid("currency", "required: the customer has no currency")
    try:
        minor_units(currency)
    except ValueError as exc:
        raise Invalid("currency", str(exc)) from None
    if customer_currency is not None and currency != customer_currency:
        raise Invalid("currency", f"the customer is billed in {customer_currency}, not {currency}")
    rate = _decimal("rate_amount", spec.rate_amount)
    if rate <= 0:
        raise Invalid("rate_amount", f"must be more than 0 (got {rate})")
    if isinstance(spec.priority, bool) or not isinstance(spec.priority, int) or not 1 <= spec.priority <= MAX_PRIORITY:
        raise Invalid("priority", f"a whole number from 1 to {MAX_PRIORITY} (got {spec.priority!r})")
    if spec.name is not None and not (isinstance(spec.name, str) and len(spec.name) <= 256):
        raise Invalid("name", "at most 256 characters")
    if spec.code is not None and not (isinstance(spec.code, str) and 0 < len(spec.code) <= 128):
        raise Invalid("code", "1-128 characters")
    if spec.expires_at is not None and spec.expires_at.tzinfo is None:
        raise Invalid("expires_at", "a time with its UTC offset (2026-12-31T23:59:59Z)")
    return replace(spec, currency=currency, rate_amount=rate)


def _check_reference(reference: str | None) -> None:
    if reference is not None and not (isinstance(reference, str) and 0 < len(reference) <= 256):
        raise Invalid("reference", "1-256 characters")


# --- the entities topic --------------------------------------------------------------------------------------


def _touch(row: WalletRow, now: datetime) -> None:
    """Bump `updated_at` (the published document's version) strictly past its last value."""
    last = aware(row.updated_at) if row.updated_at is not None else None
    row.updated_at = now if last is None or now > last else last + timedelta(microseconds=1)


def wallet_doc(s: Session, row: WalletRow) -> WalletDoc:
    """The wallet with its settled ledger as the `entities` topic carries it (schemas.entities.WalletDoc)."""
    wallet = _wallet(row)
    ends = [t for t in (wallet.expires_at, wallet.terminated_at) if t is not None]
    txs = s.scalars(select(WalletTransactionRow).where(WalletTransactionRow.wallet_ref == row.id,
                                                       WalletTransactionRow.status == SETTLED)
                    .order_by(WalletTransactionRow.id))  # fmt: skip
    entries = [WalletEntryDoc(id=t.transaction_id, kind=t.kind, units=t.units, settled_at=aware(t.settled_at),  # type: ignore[arg-type]
                              expires_at=aware(t.expires_at)) for t in txs]  # fmt: skip
    updated = aware(row.updated_at)
    version = (updated - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)  # type: ignore[operator]
    # the threshold rules only: the processor watches the balance for them; interval rules run on the calendar
    # (`interval_top_ups`, in the billing run)
    rules = [TopUpRuleDoc(id=r.id, threshold_credits=r.threshold_credits, paid_credits=r.paid_credits,
                          granted_credits=r.granted_credits, started_at=r.started_at, expiration_at=r.expiration_at)
             for r in wallet.rules if r.threshold_credits is not None]  # fmt: skip
    return WalletDoc(
        tenant=row.tenant, id=row.wallet_id, customer=row.customer, currency=row.currency,
        rate_amount=wallet.rate_amount, priority=row.priority, started_at=wallet.created_at,
        ends_at=min(ends) if ends else None, status=row.status, version=version, entries=entries,  # type: ignore[arg-type]
        top_up_rules=rules,
    )  # fmt: skip


def _publish(s: Session, row: WalletRow) -> None:
    """Put the wallet's new state on the outbox, in the writing transaction (after `outbox.begin_write`)."""
    s.flush()
    outbox.append(s, [wallet_doc(s, row)])


# --- wallets -------------------------------------------------------------------------------------------------


def _row(s: Session, tenant: str, wallet_id: str, *, lock: bool = False) -> WalletRow:
    stmt = select(WalletRow).where(WalletRow.tenant == tenant, WalletRow.wallet_id == wallet_id)
    row = s.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound(f"wallet {wallet_id!r} not found")
    return row


def create_wallet(sf: sessionmaker, spec: WalletSpec, top_ups: Sequence[TopUp] = (),
                  *, at: datetime | None = None) -> tuple[StoredWallet, list[StoredTransaction]]:  # fmt: skip
    """A new active wallet of the customer, with its first top-ups, in one transaction. `NotFound` for an
    unknown customer; `Invalid` naming the field."""
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        customer = find_customer_row(s, spec.tenant, spec.customer)
        if customer is None:
            raise NotFound(f"customer {spec.customer!r} not found")
        spec = _check_spec(spec, customer.currency)
        rules = check_rules(spec.rules, spec.rate_amount, spec.currency, now=now)  # type: ignore[arg-type]
        row = WalletRow(
            wallet_id=new_ulid(), tenant=spec.tenant, customer=spec.customer, code=spec.code, name=spec.name,
            currency=spec.currency, rate_amount=str(spec.rate_amount), priority=spec.priority, status=ACTIVE,
            expires_at=spec.expires_at, created_at=now, updated_at=now, terminated_at=None,
            recurring_rules=_rules_text(rules),
        )  # fmt: skip
        s.add(row)
        s.flush()
        wallet = _wallet(row)
        txs = [_top_up(s, row, wallet, t, now)[0] for t in top_ups]
        _publish(s, row)
        return wallet, txs


def get_wallet(sf: sessionmaker, tenant: str, wallet_id: str) -> StoredWallet:
    with sf() as s:
        return _wallet(_row(s, tenant, wallet_id))


def list_wallets(sf: sessionmaker, tenant: str, customer: str, status: str | None = None) -> list[StoredWallet]:
    """The customer's wallets (one status), oldest first."""
    if status is not None and status not in (ACTIVE, TERMINATED):
        raise Invalid("status", f"active or terminated (got {status!r})")
    where: list[Any] = [WalletRow.tenant == tenant, WalletRow.customer == customer]
    if status is not None:
        where.append(WalletRow.status == status)
    with sf() as s:
        return [_wallet(r) for r in s.scalars(select(WalletRow).where(*where).order_by(WalletRow.id))]


def update_wallet(sf: sessionmaker, tenant: str, wallet_id: str, *, name: Any = ..., priority: Any = ...,
                  expires_at: Any = ..., rules: Any = ..., at: datetime | None = None) -> StoredWallet:  # fmt: skip
    """Change an active wallet's name, priority, expiry or automatic top-up rules (arguments left out stay;
    `rules` replaces the list: a rule naming an existing rule's `id` keeps it, `[]` removes them all). `at`: the
    time of the change (default now), a new rule's creation time."""
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _row(s, tenant, wallet_id, lock=True)
        if row.status != ACTIVE:
            raise Conflict("status", f"wallet {wallet_id!r} is terminated")
        current = _wallet(row)
        spec = WalletSpec(tenant, row.customer, row.currency, current.rate_amount,
                          row.name if name is ... else name, row.code,
                          row.priority if priority is ... else priority,
                          current.expires_at if expires_at is ... else expires_at)  # fmt: skip
        spec = _check_spec(spec, row.currency)
        if rules is not ...:
            row.recurring_rules = _rules_text(check_rules(rules, current.rate_amount, row.currency, current.rules,
                                                          now=now))  # fmt: skip
        row.name, row.priority, row.expires_at = spec.name, spec.priority, spec.expires_at
        _touch(row, now)
        _publish(s, row)
        return _wallet(row)


def terminate_wallet(sf: sessionmaker, tenant: str, wallet_id: str, *, at: datetime | None = None) -> StoredWallet:
    """Terminate a wallet: what is left of its credits ends now (counted as expired). Repeating it is a no-op."""
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _row(s, tenant, wallet_id, lock=True)
        if row.status == ACTIVE:
            now = at or datetime.now(UTC)
            row.status, row.terminated_at = TERMINATED, now
            _touch(row, now)
            _publish(s, row)
        return _wallet(row)


# --- transactions --------------------------------------------------------------------------------------------


def _by_reference(s: Session, row: WalletRow, reference: str | None) -> WalletTransactionRow | None:
    if reference is None:
        return None
    return s.scalar(select(WalletTransactionRow).where(WalletTransactionRow.wallet_ref == row.id,
                                                        WalletTransactionRow.reference == reference))  # fmt: skip


def _top_up(s: Session, row: WalletRow, wallet: StoredWallet, t: TopUp,
            now: datetime) -> tuple[StoredTransaction, bool]:  # fmt: skip
    if t.kind not in ("paid", "granted"):
        raise Invalid("kind", f"paid or granted (got {t.kind!r})")
    if t.status not in (PENDING, SETTLED):
        raise Invalid("status", f"pending or settled (got {t.status!r})")
    field = t.field or f"{t.kind}_credits"
    credits, units = check_credits(field, t.credits, wallet.rate_amount, wallet.currency)
    _check_reference(t.reference)
    if t.expires_at is not None and t.expires_at.tzinfo is None:
        raise Invalid("expires_at", "a time with its UTC offset (2026-12-31T23:59:59Z)")
    if t.name is not None and len(t.name) > 256:
        raise Invalid("name", "at most 256 characters")
    same = _by_reference(s, row, t.reference)
    if same is not None:
        if (same.kind, Decimal(same.credits), aware(same.expires_at)) != (t.kind, credits, t.expires_at):
            raise Conflict("reference", f"reference {t.reference!r} was used for another transaction of this wallet")
        return _tx(same, wallet.id), False
    if row.status != ACTIVE:
        raise Conflict("status", f"wallet {wallet.id!r} is terminated")
    tx = WalletTransactionRow(
        transaction_id=new_ulid(), tenant=row.tenant, wallet_ref=row.id, direction="inbound", kind=t.kind,
        credits=str(credits), units=units, status=t.status, reference=t.reference, name=t.name,
        expires_at=t.expires_at, created_at=now, settled_at=now if t.status == SETTLED else None,
    )  # fmt: skip
    s.add(tx)
    s.flush()
    events.wallet_transaction_event(s, tx, row, transaction_source(t.reference))
    return _tx(tx, wallet.id), True


def top_up(sf: sessionmaker, tenant: str, wallet_id: str, t: TopUp,
           *, at: datetime | None = None) -> tuple[StoredTransaction, bool]:  # fmt: skip
    """Add paid or granted credits to an active wallet: (the transaction, whether it is new). A repeat of the
    same `reference` answers the first transaction; `Invalid` naming the field for a bad amount."""
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _row(s, tenant, wallet_id, lock=True)
        tx, new = _top_up(s, row, _wallet(row), t, now)
        if new:
            _touch(row, now)
            _publish(s, row)
        return tx, new


def void_credits(
    sf: sessionmaker, tenant: str, wallet_id: str, credits: Any, *, reference: str | None = None,
    at: datetime | None = None, field: str = "voided_credits",
) -> tuple[StoredTransaction, bool]:  # fmt: skip
    """Take credits back from a wallet (an outbound `void`, settled at once; what is there to take: the rule's)."""
    _check_reference(reference)
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _row(s, tenant, wallet_id, lock=True)
        wallet = _wallet(row)
        amount, units = check_credits(field, credits, wallet.rate_amount, wallet.currency)
        same = _by_reference(s, row, reference)
        if same is not None:
            if (same.kind, Decimal(same.credits)) != ("void", amount):
                raise Conflict("reference", f"reference {reference!r} was used for another transaction of this wallet")
            return _tx(same, wallet.id), False
        if row.status != ACTIVE:
            raise Conflict("status", f"wallet {wallet_id!r} is terminated")
        tx = WalletTransactionRow(
            transaction_id=new_ulid(), tenant=tenant, wallet_ref=row.id, direction="outbound", kind="void",
            credits=str(amount), units=units, status=SETTLED, reference=reference, name=None, expires_at=None,
            created_at=now, settled_at=now,
        )  # fmt: skip
        s.add(tx)
        s.flush()
        events.wallet_transaction_event(s, tx, row, transaction_source(reference))
        _touch(row, now)
        _publish(s, row)
        return _tx(tx, wallet.id), True


def settle_transaction(sf: sessionmaker, tenant: str, wallet_id: str, transaction_id: str,
                       *, at: datetime | None = None) -> StoredTransaction:  # fmt: skip
    """Mark a pending top-up settled (its payment arrived): it counts from now. Settled already: a no-op."""
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _row(s, tenant, wallet_id)
        tx = s.scalar(select(WalletTransactionRow).where(WalletTransactionRow.wallet_ref == row.id,
                                                         WalletTransactionRow.transaction_id == transaction_id)
                      .with_for_update())  # fmt: skip
        if tx is None:
            raise NotFound(f"transaction {transaction_id!r} of wallet {wallet_id!r} not found")
        if tx.status == PENDING:
            tx.status, tx.settled_at = SETTLED, at or datetime.now(UTC)
            s.flush()
            source = transaction_source(tx.reference)
            events.wallet_transaction_event(s, tx, row, source, events.WALLET_TRANSACTION_SETTLED)
            _touch(row, tx.settled_at)
            _publish(s, row)
        return _tx(tx, wallet_id)


def recurring_top_up(sf: sessionmaker, tenant: str, wallet_id: str, rule_id: str, request_id: str,
                     paid_credits: Any, granted_credits: Any, *, at: datetime | None = None) -> str:  # fmt: skip
    """Apply an automatic top-up the processor requested (one crossing of rule `rule_id`): its paid and granted
    credits as settled top-ups with the references `auto:<request_id>:paid` / `:granted`, in one transaction, so
    the same request applied twice writes them once. Returns `written`, `repeated`, or why nothing was written:
    `wallet_gone` (no such wallet), `wallet_terminated`, `rule_gone` (the rule was removed or replaced since).
    `Invalid` naming the field for an unusable amount."""
    now = at or datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = s.scalar(select(WalletRow).where(WalletRow.tenant == tenant, WalletRow.wallet_id == wallet_id)
                       .with_for_update())  # fmt: skip
        if row is None:
            return "wallet_gone"
        wallet = _wallet(row)
        wanted = [TopUp(kind, credits, reference=f"auto:{request_id}:{kind}", name="automatic top-up")  # type: ignore[arg-type]
                  for kind, credits in (("paid", paid_credits), ("granted", granted_credits))
                  if credits is not None and Decimal(str(credits)) > 0]  # fmt: skip
        if all(_by_reference(s, row, t.reference) is not None for t in wanted):
            return "repeated"
        if row.status != ACTIVE:
            return "wallet_terminated"
        if rule_id not in {r.id for r in wallet.rules}:
            return "rule_gone"
        new = [_top_up(s, row, wallet, t, now)[1] for t in wanted]
        if not any(new):
            return "repeated"
        _touch(row, now)
        _publish(s, row)
        return "written"


INTERVAL_CATCH_UP_MAX = 100  # anniversaries one rule writes in one run at most (the rest: the next runs)


def _local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def due_anniversaries(wallet: StoredWallet, rule: TopUpRule, zone: ZoneInfo, now: datetime) -> list[date]:
    """The anniversaries of an interval rule due by `now` (local days of `zone`, the customer's time zone), as
    Lago counts them: of `started_at`, else of the wallet's creation; never the wallet's own creation day; from
    the day the rule was made (earlier ones were never owed); before `expiration_at` and before the wallet
    expires or ends. Each is written once (`interval_top_ups`), so one the run missed is written by the next."""
    if rule.interval is None:
        return []
    anchor = _local_day(rule.started_at or wallet.created_at, zone)
    first = max(anchor, _local_day(rule.created_at, zone))
    created = _local_day(wallet.created_at, zone)
    ends = [t for t in (rule.expiration_at, wallet.expires_at, wallet.terminated_at) if t is not None]
    days = []
    for day in anniversaries(anchor, rule.interval, first, _local_day(now, zone)):
        start = datetime(day.year, day.month, day.day, tzinfo=zone)  # the local day's first instant
        if day != created and all(start < t for t in ends):
            days.append(day)
    return days


def interval_top_ups(sf: sessionmaker, now: datetime | None = None, tenant: str | None = None) -> Counter[str]:
    """Write the interval top-ups due by `now` (`due_anniversaries`) of every active wallet (of `tenant`, if
    given): each anniversary's paid and granted credits as settled top-ups with the references
    `interval:<rule id>:<day>:paid` / `:granted`, one transaction per wallet, so a run repeated (or two at once)
    writes each once. At most INTERVAL_CATCH_UP_MAX anniversaries per rule per run. Counts: `written` and
    `repeated` anniversaries, `wallets` touched."""
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    with sf() as s:
        stmt = select(WalletRow.tenant, WalletRow.wallet_id).where(WalletRow.status == ACTIVE,
                                                                   WalletRow.recurring_rules.is_not(None))  # fmt: skip
        if tenant is not None:
            stmt = stmt.where(WalletRow.tenant == tenant)
        candidates = [(t, w) for t, w in s.execute(stmt.order_by(WalletRow.id))]
    for wallet_tenant, wallet_id in candidates:
        with sf.begin() as s:
            outbox.begin_write(s)
            row = s.scalar(select(WalletRow).where(WalletRow.tenant == wallet_tenant, WalletRow.wallet_id == wallet_id)
                           .with_for_update())  # fmt: skip
            if row is None or row.status != ACTIVE:
                continue
            wallet = _wallet(row)
            rules = [r for r in wallet.rules if r.interval is not None]
            if not rules:
                continue
            customer = find_customer_row(s, row.tenant, row.customer)
            zone = ZoneInfo(customer.timezone if customer is not None and customer.timezone else "UTC")
            wrote = False
            for rule in rules:
                for day in due_anniversaries(wallet, rule, zone, now)[:INTERVAL_CATCH_UP_MAX]:
                    wanted = [TopUp(kind, credits, reference=f"interval:{rule.id}:{day.isoformat()}:{kind}",  # type: ignore[arg-type]
                                    name=f"automatic top-up ({rule.interval}, {day.isoformat()})")
                              for kind, credits in (("paid", rule.paid_credits), ("granted", rule.granted_credits))
                              if credits > 0]  # fmt: skip
                    new = [_top_up(s, row, wallet, t, now)[1] for t in wanted]
                    counts["written" if any(new) else "repeated"] += 1
                    wrote = wrote or any(new)
            if wrote:
                counts["wallets"] += 1
                _touch(row, now)
                _publish(s, row)
    return counts


def get_transaction(sf: sessionmaker, tenant: str, transaction_id: str) -> tuple[StoredTransaction, StoredWallet]:
    """One of the tenant's wallet transactions with its wallet; NotFound when there is none."""
    with sf() as s:
        found = s.execute(select(WalletTransactionRow, WalletRow)
                          .join(WalletRow, WalletRow.id == WalletTransactionRow.wallet_ref)
                          .where(WalletTransactionRow.tenant == tenant,
                                 WalletTransactionRow.transaction_id == transaction_id)).first()  # fmt: skip
        if found is None:
            raise NotFound(f"wallet transaction {transaction_id!r} not found")
        tx, row = found
        return _tx(tx, row.wallet_id), _wallet(row)


def list_transactions(sf: sessionmaker, tenant: str, wallet_id: str) -> list[StoredTransaction]:
    """A wallet's written transactions, oldest first (consumption and expiry are derived: `customer_balances`)."""
    with sf() as s:
        row = _row(s, tenant, wallet_id)
        txs = s.scalars(select(WalletTransactionRow).where(WalletTransactionRow.wallet_ref == row.id)
                        .order_by(WalletTransactionRow.id))  # fmt: skip
        return [_tx(t, row.wallet_id) for t in txs]


# --- balances ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletState:
    """A wallet with its balance (minor units) now, after all usage so far (`ongoing`) and after the usage of
    the months before this one (`billed`: what closed periods invoiced)."""

    wallet: StoredWallet
    ongoing: WalletBalance
    billed: WalletBalance
    last_consumed_at: datetime | None


@dataclass(frozen=True)
class CustomerBalances:
    customer: str
    currency: str
    wallets: list[WalletState]
    uncovered: int  # usage (minor units) the wallets could not cover
    usage: int  # the customer's usage since its first wallet started, rounded to minor units
    at: datetime


# (currency, bounds) -> the customer's usage in that currency in each piece [bounds[i], bounds[i+1]), exact
UsageReader = Callable[[str, list[datetime]], list[Decimal]]


def _month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def customer_balances(sf: sessionmaker, tenant: str, customer: str, usage: UsageReader,
                      *, now: datetime | None = None) -> list[CustomerBalances]:  # fmt: skip
    """The balances of the customer's wallets, per currency, from the ledger and `usage` (the customer's rated
    usage, read through the API's query path). One usage read per currency."""
    now = now or datetime.now(UTC)
    with sf() as s:
        rows = list(s.scalars(select(WalletRow).where(WalletRow.tenant == tenant, WalletRow.customer == customer)
                              .order_by(WalletRow.id)))  # fmt: skip
        if not rows:
            return []
        txs = list(s.scalars(select(WalletTransactionRow).where(
            WalletTransactionRow.wallet_ref.in_([r.id for r in rows])).order_by(WalletTransactionRow.id)))  # fmt: skip
    ids = {r.id: r.wallet_id for r in rows}
    out = []
    for currency in sorted({r.currency for r in rows}):
        wallets = [_wallet(r) for r in rows if r.currency == currency]
        terms = []
        for w in wallets:
            ends = [t for t in (w.expires_at, w.terminated_at) if t is not None]
            terms.append(WalletTerms(w.id, w.priority, w.created_at, min(ends) if ends else None))
        mine = {w.id for w in wallets}
        lots, voids = [], []
        for t in txs:
            wallet = ids[t.wallet_ref]
            if wallet not in mine or t.status != SETTLED:
                continue
            if t.direction == "inbound":
                lots.append(Lot(t.transaction_id, wallet, t.units, aware(t.settled_at), aware(t.expires_at)))  # type: ignore[arg-type]
            else:
                voids.append(Draw(aware(t.settled_at), t.units, "void", wallet))  # type: ignore[arg-type]
        start = min(w.started_at for w in terms)
        month = _month_start(now)
        marks = {start, month, now}
        for w in terms:
            marks.update(t for t in (w.started_at, w.ends_at) if t is not None)
        # every instant at which what usage may draw from changes is a bound: a piece is drawn at its start
        marks.update(lot.expires_at for lot in lots if lot.expires_at is not None)
        marks.update(lot.settled_at for lot in lots)
        marks.update(v.at for v in voids)
        bounds = sorted(m for m in marks if start <= m <= now)
        bounds.append(now + timedelta(days=1))  # events stamped a little ahead of this clock count too
        totals = usage(currency, bounds) if len(bounds) > 1 else []  # no wallet had started yet: no usage
        cumulative, running = [], Decimal(0)
        for piece in totals:
            running = EXACT.add(running, piece)
            cumulative.append(to_units(round_money(running, currency), currency))
        draws = usage_draws(bounds, cumulative)
        ongoing, uncovered = balances(terms, lots, [*voids, *draws], now)
        billed, _ = balances(terms, lots, [*voids, *(d for d in draws if d.at < month)], now)
        states = []
        for w in wallets:
            consumed = [h.at for h in ongoing[w.id].history if h.kind == "consumed"]
            states.append(WalletState(w, ongoing[w.id], billed[w.id], max(consumed) if consumed else None))
        out.append(CustomerBalances(customer, currency, states, uncovered, cumulative[-1] if cumulative else 0, now))
    return out
