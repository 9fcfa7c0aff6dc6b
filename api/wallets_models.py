"""Pydantic models of /v1/customers/{id}/wallets and /v1/wallets (docs/wallets.md): the edge.

Credits and money are decimal strings (a JSON number is refused naming the field: a float cannot carry a
decimal exactly). The tenant is never in a body: it is the API key's. The store (entities/wallets.py) checks
amounts (positive, at most 5 decimals, a whole number of minor units) and answers errors naming the field.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, WithJsonSchema

from meterstream.api.entities_models import Code, Name, _In
from meterstream.billing.allocation import from_units
from meterstream.billing.wallet_balance import WalletBalance
from meterstream.entities.wallets import (
    CustomerBalances,
    StoredTransaction,
    StoredWallet,
    TopUpRule,
    WalletSpec,
    WalletState,
    credits_of,
)

# checked by the store, which names the field: a JSON number that is not whole (a float) is refused there
Credits = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]{1,5})?$",
            "description": "A decimal string (never a JSON number).",
        }
    ),
]


class TopUpRuleIn(_In):
    """An automatic top-up (Lago's `recurring_transaction_rules`): add `paid_credits` and/or `granted_credits` when
    the wallet's ongoing balance falls to or below `threshold_credits` (trigger `threshold`), or on each
    anniversary of `started_at` (default: the wallet's creation) every `interval` (trigger `interval`; the billing
    run writes them), docs/wallets.md."""

    id: str | None = Field(default=None, max_length=64, description="An existing rule's id: that rule, changed.")
    trigger: str = Field(default="threshold", description="`threshold` or `interval`.")
    method: str = Field(default="fixed", description="`fixed` (`target` is not supported).")
    threshold_credits: Credits | None = Field(default=None, description="Trigger `threshold` (required there): the "
                                              "line, in credits; at or below it, the top-up is made.")  # fmt: skip
    interval: str | None = Field(default=None, description="Trigger `interval` (required there): weekly, monthly, "
                                 "quarterly, semiannual or yearly.")  # fmt: skip
    paid_credits: Credits | None = None
    granted_credits: Credits | None = None
    started_at: AwareDatetime | None = None
    expiration_at: AwareDatetime | None = None


def rules_in(rules: list[TopUpRuleIn] | None) -> list[dict[str, Any]] | None:
    """The rules as the store checks them (entities.wallets.check_rules names any bad field)."""
    return None if rules is None else [r.model_dump(exclude_none=True) for r in rules]


class WalletCreate(_In):
    name: Name | None = None
    code: Code | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3, description="Default: the customer's.")
    rate_amount: str = Field(default="1", max_length=40, description="The price of one credit in `currency`.")
    priority: int = Field(default=50, ge=1, le=50, description="Lowest is consumed first.")
    expires_at: AwareDatetime | None = None
    paid_credits: Credits | None = Field(default=None, description="A first paid top-up (settled).")
    granted_credits: Credits | None = Field(default=None, description="First granted credits.")
    recurring_transaction_rules: list[TopUpRuleIn] | None = Field(default=None, description="At most one rule.")

    def to_spec(self, tenant: str, customer: str) -> WalletSpec:
        try:
            rate = Decimal(self.rate_amount)
        except ArithmeticError:
            rate = self.rate_amount  # type: ignore[assignment]  # the store names the field
        return WalletSpec(tenant, customer, self.currency, rate, self.name, self.code, self.priority,
                          self.expires_at, rules_in(self.recurring_transaction_rules))  # fmt: skip


class WalletUpdate(_In):
    name: Name | None = None
    priority: int | None = Field(default=None, ge=1, le=50)
    expires_at: AwareDatetime | None = None
    recurring_transaction_rules: list[TopUpRuleIn] | None = Field(
        default=None, description="Replaces the rules (a rule with an existing `id` keeps it; `[]` removes them)."
    )


class TransactionCreate(_In):
    kind: Literal["paid", "granted", "void"]
    credits: Credits = Field(description="A positive decimal string; at most 5 decimals.")
    status: Literal["pending", "settled"] = "settled"
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The client's reference: a repeat answers the first transaction.",
    )
    expires_at: AwareDatetime | None = Field(default=None, description="Inbound: the credits expire then.")
    name: str | None = Field(default=None, max_length=256)


class TopUpRuleOut(BaseModel):
    id: str
    trigger: Literal["threshold", "interval"]
    method: Literal["fixed"]
    interval: Literal["weekly", "monthly", "quarterly", "semiannual", "yearly"] | None
    threshold_credits: str | None
    paid_credits: str
    granted_credits: str
    started_at: datetime | None
    expiration_at: datetime | None
    created_at: datetime


class WalletOut(BaseModel):
    id: str
    customer: str
    code: str | None
    name: str | None
    currency: str
    rate_amount: str
    priority: int
    status: Literal["active", "terminated"]
    expires_at: datetime | None
    created_at: datetime
    terminated_at: datetime | None
    recurring_transaction_rules: list[TopUpRuleOut] = []


class WalletList(BaseModel):
    items: list[WalletOut]


class TransactionOut(BaseModel):
    id: str
    wallet_id: str
    direction: Literal["inbound", "outbound"]
    kind: Literal["paid", "granted", "void"]
    credits: str
    amount: str = Field(description="credits x rate_amount, in the wallet's currency.")
    status: Literal["pending", "settled"]
    reference: str | None
    name: str | None
    expires_at: datetime | None
    created_at: datetime
    settled_at: datetime | None


class TransactionList(BaseModel):
    items: list[TransactionOut]


class HistoryOut(BaseModel):
    at: datetime
    kind: Literal["inbound", "consumed", "voided", "expired"]
    amount: str
    credits: str
    balance: str


class BalanceOut(BaseModel):
    wallet: WalletOut
    at: datetime
    balance: str = Field(description="Ongoing: settled inbound - consumed - voided - expired, all usage so far.")
    credits_balance: str
    billed_balance: str = Field(description="The balance after the usage of the months before this one only.")
    inbound: str
    consumed: str
    voided: str
    expired: str
    last_consumed_at: datetime | None
    history: list[HistoryOut] | None = None


class CurrencyBalances(BaseModel):
    currency: str
    usage: str = Field(description="The customer's rated usage since its first wallet of this currency started.")
    uncovered: str = Field(description="Usage no wallet could cover (invoiced as usual).")
    wallets: list[BalanceOut]


class CustomerBalancesOut(BaseModel):
    customer: str
    at: datetime
    currencies: list[CurrencyBalances]


def wallet_out(w: StoredWallet) -> dict[str, Any]:
    return {
        "id": w.id, "customer": w.customer, "code": w.code, "name": w.name, "currency": w.currency,
        "rate_amount": str(w.rate_amount), "priority": w.priority, "status": w.status, "expires_at": w.expires_at,
        "created_at": w.created_at, "terminated_at": w.terminated_at,
        "recurring_transaction_rules": [rule_out(r) for r in w.rules],
    }  # fmt: skip


def rule_out(r: TopUpRule) -> dict[str, Any]:
    threshold = None if r.threshold_credits is None else format(r.threshold_credits, "f")
    return {"id": r.id, "trigger": r.trigger, "method": r.method, "interval": r.interval,
            "threshold_credits": threshold, "paid_credits": format(r.paid_credits, "f"),
            "granted_credits": format(r.granted_credits, "f"),
            "started_at": r.started_at, "expiration_at": r.expiration_at, "created_at": r.created_at}  # fmt: skip


def transaction_out(t: StoredTransaction, w: StoredWallet) -> dict[str, Any]:
    return {
        "id": t.id, "wallet_id": t.wallet, "direction": t.direction, "kind": t.kind, "credits": str(t.credits),
        "amount": str(from_units(t.units, w.currency)), "status": t.status, "reference": t.reference,
        "name": t.name, "expires_at": t.expires_at, "created_at": t.created_at, "settled_at": t.settled_at,
    }  # fmt: skip


def _money(units: int, currency: str) -> str:
    return str(from_units(units, currency))


def balance_out(s: WalletState, at: datetime, *, history: bool) -> dict[str, Any]:
    w, b = s.wallet, s.ongoing
    out: dict[str, Any] = {
        "wallet": wallet_out(w), "at": at, "balance": _money(b.balance, w.currency),
        "credits_balance": str(credits_of(b.balance, w)), "billed_balance": _money(s.billed.balance, w.currency),
        "inbound": _money(b.inbound, w.currency), "consumed": _money(b.consumed, w.currency),
        "voided": _money(b.voided, w.currency), "expired": _money(b.expired, w.currency),
        "last_consumed_at": s.last_consumed_at,
    }  # fmt: skip
    if history:
        out["history"] = _history(b, w)
    return out


def _history(b: WalletBalance, w: StoredWallet) -> list[dict[str, Any]]:
    return [{"at": h.at, "kind": h.kind, "amount": _money(h.units, w.currency), "credits": str(credits_of(h.units, w)),
             "balance": _money(h.balance, w.currency)} for h in b.history]  # fmt: skip


def customer_balances_out(customer: str, at: datetime, found: list[CustomerBalances]) -> dict[str, Any]:
    return {"customer": customer, "at": at, "currencies": [
        {"currency": c.currency, "usage": _money(c.usage, c.currency), "uncovered": _money(c.uncovered, c.currency),
         "wallets": [balance_out(s, at, history=False) for s in c.wallets]} for c in found]}  # fmt: skip
