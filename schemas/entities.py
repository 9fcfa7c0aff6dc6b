"""Contracts of the billing entities (customers, plan versions, subscriptions), defined once.

These are the documents the entity store (entities/) writes to its outbox in the same transaction as
the change, the relay puts on the compacted `entities` topic, the stream processor keeps as a live,
effective-dated catalog, and the billing domain (billing/) and period close read. The API's pydantic
models are the edge; these are the inside. Encoded with msgspec (`encode_change`/`decode_change`):
instants as RFC 3339 UTC, money as decimal strings (Decimal inside, never float).

Identity on the topic (the Kafka key, so compaction keeps the newest document of each entity):
`customer|<tenant>|<external id>`, `plan|<tenant>|<code>|<version>`, `subscription|<tenant>|<external id>`,
`wallet|<tenant>|<wallet id>` (a prepaid wallet with its settled ledger: `WalletDoc`)
(the separator is U+001F, `KEY_SEP`). A deleted entity is sent as a document with `deleted=True` (kept,
so the processor learns of the deletion) and may later be compacted away with a tombstone.

Effective dating: a subscription is a list of phases, each a plan version over a half-open interval
[start, end) of instants. An upgrade, downgrade or scheduled change ends one phase and starts the next;
a cancellation sets the last phase's end. The plan in effect for an event is the one of the phase whose
interval contains the event's own time (not its arrival time).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

KEY_SEP = "\x1f"
DEFAULT_CUSTOMER = "*"  # the customer of a tenant's default subscription: every customer without one of its own

Interval = Literal["weekly", "monthly", "quarterly", "yearly"]
Timing = Literal["advance", "arrears"]
Anchor = Literal["calendar", "anniversary"]


class Address(msgspec.Struct, kw_only=True, omit_defaults=True):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    phone_number: str | None = None  # OpenMeter's billingAddress.phoneNumber


class CustomerDoc(msgspec.Struct, kw_only=True, tag="customer"):
    """A customer as billing knows it. `external_id` is the `customer` of its usage events."""

    tenant: str
    external_id: str
    name: str
    version: int  # optimistic lock: bumped by every change
    legal_name: str | None = None
    email: str | None = None
    tax_id: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    address: Address | None = None
    currency: str | None = None  # ISO 4217
    timezone: str = "UTC"  # IANA name: billing periods and due dates are computed in it
    invoice_grace_days: int = 0
    payment_terms_days: int = 0  # net days from issue to due date
    metadata: dict[str, str] = {}
    deleted: bool = False
    description: str | None = None  # free text (OpenMeter's customer description)

    @property
    def key(self) -> str:
        return KEY_SEP.join(("customer", self.tenant, self.external_id))


class FixedCharge(msgspec.Struct, kw_only=True):
    """A recurring fee: `amount` per `interval`, billed at the start (advance) or end (arrears) of it."""

    code: str
    name: str
    amount: Decimal
    interval: Interval = "monthly"
    timing: Timing = "advance"
    prorate: bool = True  # day-based proration on partial periods (docs/billing.md)


class OneTimeCharge(msgspec.Struct, kw_only=True):
    """Charged once, on the first invoice of the subscription phase that carries it."""

    code: str
    name: str
    amount: Decimal


class InstallmentCharge(msgspec.Struct, kw_only=True):
    """`total` split into `count` payments, one per billing period from the phase start; the last takes
    the rounding remainder so the payments add up to `total` exactly."""

    code: str
    name: str
    total: Decimal
    count: int


class PlanVersionDoc(msgspec.Struct, kw_only=True, tag="plan_version"):
    """One published, immutable version of a plan. A change publishes version + 1."""

    tenant: str
    code: str
    version: int
    name: str
    currency: str  # ISO 4217
    interval: Interval = "monthly"  # the billing period of subscriptions on this plan
    # meter -> price in the catalog's canonical shape (rating.parse_price), including free units,
    # minimums and every model of the tariff engine
    usage: dict[str, dict[str, Any]] = {}
    telecom: dict[str, Any] | None = None  # a telecom plan in the catalog's shape (rating.telecom)
    fixed: list[FixedCharge] = []
    one_time: list[OneTimeCharge] = []
    installments: list[InstallmentCharge] = []
    minimum_commitment: Decimal | None = None  # per billing period, trued up on the invoice
    addon: bool = False  # an add-on: attached to a subscription next to its main plan
    published_at: datetime | None = None
    deleted: bool = False

    @property
    def key(self) -> str:
        return KEY_SEP.join(("plan", self.tenant, self.code, str(self.version)))

    @property
    def rating_id(self) -> str:
        """The `plan` of usage rated with this version (rated records, invoices): `code@version`."""
        return f"{self.code}@{self.version}"


class Phase(msgspec.Struct, kw_only=True):
    """A plan version in effect over [start, end); `overrides` are this customer's own prices."""

    plan_code: str
    plan_version: int
    start: datetime
    end: datetime | None = None  # None: open-ended
    # meter -> price (canonical shape) replacing the plan's for this subscription; fixed charge code ->
    # amount replacing the plan's
    usage_overrides: dict[str, dict[str, Any]] = {}
    fixed_overrides: dict[str, Decimal] = {}
    addons: list[str] = []  # add-on plan codes (their newest version at the phase start)


class SubscriptionDoc(msgspec.Struct, kw_only=True, tag="subscription"):
    tenant: str
    external_id: str
    customer: str  # the customer's external id
    phases: list[Phase]  # ordered by start, non-overlapping, contiguous or with gaps
    version: int  # optimistic lock
    billing_anchor: Anchor = "calendar"  # calendar: periods start on the 1st; anniversary: on the start day
    trial_end: datetime | None = None  # no fixed fees before it
    status: Literal["pending", "active", "canceled", "terminated"] = "active"
    name: str | None = None
    deleted: bool = False

    @property
    def key(self) -> str:
        return KEY_SEP.join(("subscription", self.tenant, self.external_id))

    def phase_at(self, when: datetime) -> Phase | None:
        """The phase in effect at `when` (start <= when < end), or None."""
        for phase in self.phases:
            if phase.start <= when and (phase.end is None or when < phase.end):
                return phase
        return None


class WalletEntryDoc(msgspec.Struct, kw_only=True):
    """One settled transaction of a wallet's ledger: a `paid`/`granted` top-up (a lot) or a `void`."""

    id: str
    kind: Literal["paid", "granted", "void"]
    units: int  # minor units of the wallet's currency, > 0
    settled_at: datetime
    expires_at: datetime | None = None  # a lot's own expiry


class TopUpRuleDoc(msgspec.Struct, kw_only=True):
    """A wallet's automatic top-up rule (entities/wallets.py, Lago's `recurring_transaction_rules`, trigger
    `threshold`): when the wallet's ongoing balance falls to or below `threshold_credits`, add the credits."""

    id: str
    threshold_credits: Decimal
    paid_credits: Decimal = Decimal(0)
    granted_credits: Decimal = Decimal(0)
    started_at: datetime | None = None
    expiration_at: datetime | None = None


class WalletDoc(msgspec.Struct, kw_only=True, tag="wallet"):
    """A prepaid wallet with its settled ledger (entities/wallets.py), for the processor's real-time debit.

    One whole document per wallet (its terms and every settled transaction), so the newest version is the whole
    state; `version` grows with every change of the wallet or its ledger (the store's `updated_at` in
    microseconds, bumped by each write)."""

    tenant: str
    id: str  # the wallet id (ULID)
    customer: str  # the customer's external id
    currency: str
    rate_amount: Decimal  # one credit in `currency`
    priority: int  # lowest first
    started_at: datetime
    ends_at: datetime | None = None  # its expiry or termination, whichever is first
    status: Literal["active", "terminated"] = "active"
    version: int
    entries: list[WalletEntryDoc] = []
    deleted: bool = False
    top_up_rules: list[TopUpRuleDoc] = []  # automatic top-ups (processor/balances.py decides each crossing)

    @property
    def key(self) -> str:
        return KEY_SEP.join(("wallet", self.tenant, self.id))


EntityDoc = CustomerDoc | PlanVersionDoc | SubscriptionDoc | WalletDoc

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(EntityDoc)


def encode_change(doc: EntityDoc) -> tuple[bytes, bytes]:
    """(Kafka key, value) of an entity document for the outbox and the compacted topic."""
    return doc.key.encode(), _encoder.encode(doc)


def decode_change(value: bytes) -> EntityDoc:
    """The document of a value from the outbox or the `entities` topic (tagged by `type`)."""
    return _decoder.decode(value)


__all__ = [
    "KEY_SEP",
    "Address",
    "CustomerDoc",
    "EntityDoc",
    "FixedCharge",
    "InstallmentCharge",
    "OneTimeCharge",
    "Phase",
    "PlanVersionDoc",
    "SubscriptionDoc",
    "TopUpRuleDoc",
    "WalletDoc",
    "WalletEntryDoc",
    "decode_change",
    "encode_change",
]
