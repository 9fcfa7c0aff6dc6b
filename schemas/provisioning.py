"""Contracts of the `provisioning`, `notifications` and `balances` topics (each under the usual topic prefix).

Written once here; the stream processor (prepaid balances), the billing run (dunning) and the reference
consumer all use these types. Messages are JSON (`encode`), keyed by `customer_key(tenant, customer)`
so that every message of one customer lands on one partition, in order.

Provisioning commands
---------------------
`suspend`, `reactivate` or `limit`, each naming its `reason`. A customer may be suspended for more than one
reason at once (its prepaid balance ran out, and an invoice is overdue past the dunning policy): a consumer
keeps the set of active suspend reasons per customer and cuts access while that set is not empty; a
`reactivate` clears only its own reason (`reason` of a reactivate names the reason it lifts, `cause` why).
`id` is deterministic from what caused the command, so a producer that repeats itself after a crash sends
the same `id`, and a consumer applies each `id` once (idempotent). `state` carries the figures that caused it
(balance, limit, invoice number, days overdue) as strings, never floats.

`disconnect` (reason `session_max_cost`) cuts one telecom session, not the customer: the session's cost reached a
maximum-cost cap with strategy `disconnect` (rating/telecom/session_rules.py). `state` names the session
(`session_id`, `meter`, `destination`), the time `band` and its cap (`max_cost`), the session's `cost` and
`currency` when it was decided, and where usage stops being charged (`disconnect_at`, in the meter's base unit
from the session's start). One per session (its id is made from the session id); it is not part of the
customer's suspend reasons and nothing reverses it.

Notifications of telecom sessions (processor/sessions.py): `session.held` (a record behind a gap in its session's
sequence: `data.sequences` held, `waiting_for` the missing numbers), `session.released` (held records rated:
`sequences`, `missing` taken as empty, `reason`, `usage`, `amount`, `currency`), `session.release_failed` (the
clock's release could not rate them: `field`, `reason`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PROVISIONING = "provisioning"
NOTIFICATIONS = "notifications"
# Latest balance per customer, compacted: key = customer_key, value = BalanceSnapshot (readers keep the last).
BALANCES = "balances"
BALANCES_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}

Command = Literal["suspend", "reactivate", "limit", "disconnect"]
# Why access is cut or limited; a reactivate names the one it lifts. `session_max_cost`: a `disconnect` command
# (one telecom session, named in `state.session_id`, reached a `disconnect` cap of its plan's session rules).
# `credit_limit_soft`: a `limit` command (the period's usage reached the customer's `credit_limit_soft_percent` of
# its credit limit: throttle before the suspension), lifted by a `reactivate` naming it.
Reason = Literal[
    "balance_exhausted", "credit_limit_exceeded", "invoice_overdue", "session_max_cost", "credit_limit_soft"
]


class ProvisioningCommand(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # deterministic from the cause: the same cause gives the same id (consumers apply an id once)
    tenant: str
    customer: str  # the customer's external id
    command: Command
    reason: Reason
    cause: str  # what happened, e.g. "balance 0.00 EUR <= 0", "top-up", "invoice ACME-2026-000123 paid"
    state: dict[str, Any]  # the figures that caused it (amounts as decimal strings)
    at: str  # RFC 3339 UTC, when it was decided
    version: int = 1


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # deterministic from the cause, like a command's
    tenant: str
    customer: str
    kind: str  # e.g. "balance.threshold_crossed", "balance.exhausted", "dunning.reminder", "dunning.late_fee"
    data: dict[str, Any]  # amounts as decimal strings
    at: str
    version: int = 1


class BalanceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A prepaid customer's balance as the processor last committed it (the compacted `balances` topic)."""

    tenant: str
    customer: str
    currency: str
    balance: str  # decimal string, in `currency` (credits converted at the wallet's rate)
    consumed: str  # rated usage debited so far, decimal string
    as_of: str  # RFC 3339 UTC: the event time of the last usage debited
    wallets: list[dict[str, Any]] = []  # per wallet: id, balance, credits (decimal strings)
    version: int = 1


def customer_key(tenant: str, customer: str) -> bytes:
    return f"{tenant}\x1f{customer}".encode()


_encoder = msgspec.json.Encoder()


def encode(message: ProvisioningCommand | Notification | BalanceSnapshot) -> bytes:
    return _encoder.encode(message)


def decode_command(raw: bytes) -> ProvisioningCommand:
    return msgspec.json.decode(raw, type=ProvisioningCommand)


def decode_notification(raw: bytes) -> Notification:
    return msgspec.json.decode(raw, type=Notification)


def decode_balance(raw: bytes) -> BalanceSnapshot:
    return msgspec.json.decode(raw, type=BalanceSnapshot)
