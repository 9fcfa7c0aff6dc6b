"""`POST /v1/authorize`: how much usage a prepaid customer's balance allows now, and the hold that reserves it.

The steps (docs/authorization.md):

1. the customer (stored, of the key's tenant) and the plan pricing the meter at `start` (api/plan_source.py:
   the processor's rule: subscriptions, then the file catalog);
2. the balance in the plan's currency: the latest snapshot from the `balances` topic (api/balance_feed.py,
   in memory), else the wallets' ledger with the rated usage in ClickHouse (api/wallet_usage.py);
3. available = balance - what the customer's other active holds still reserve (entities/holds.py);
4. the allowance, exact: a telecom meter's longest session (rating/telecom/authorize.py `max_duration`: connect
   fee, increments, time bands, rate groups, bundles, the plan's session rules), a usage meter's largest
   quantity (rating/allowance.py); the charge of that allowance;
5. with `hold`, a hold of that charge for the session until it expires: steps 3 to 5 then run in one transaction
   under the customer's hold lock (entities/holds.py `reserving`), so concurrent authorizations of one customer,
   in any number of API processes, never reserve more than the balance between them.

Everything here but the reads in `Context` is pure; errors are `AuthorizeError(status, field, message)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterstream.entities import holds
from meterstream.rating.allowance import allowed_quantity, depends_on_before
from meterstream.rating.catalog import Plan
from meterstream.rating.money import EXACT
from meterstream.rating.telecom.authorize import max_duration
from meterstream.rating.telecom.errors import NoRate
from meterstream.rating.telecom.model import BUNDLE_UNITS
from meterstream.rating.telecom.sessions import SessionError, SessionRecord, rate_session_record

ZERO = Decimal(0)


class AuthorizeError(Exception):
    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


@dataclass(frozen=True)
class Request:
    customer: str
    meter: str
    dimensions: Mapping[str, str]
    quantity: Decimal | None = None  # requested (None: as much as the balance allows)
    duration_seconds: Decimal | None = None  # the same, for a voice meter
    start: datetime | None = None  # when the session starts (time bands); default now
    hold: bool = False
    session_id: str | None = None
    hold_ttl: timedelta = timedelta(hours=1)
    bundle_used: Mapping[str, Decimal] | None = None  # None: every bundle counted as used up
    quantity_step: Decimal = Decimal(1)


@dataclass(frozen=True)
class Balance:
    amount: Decimal
    source: str  # "stream" (the balances topic) | "ledger" (wallets + ClickHouse)
    as_of: str | None


@dataclass(frozen=True)
class Context:
    """The reads authorize needs (the API wires them to the store, the feed and ClickHouse)."""

    customer_known: Callable[[str, str], bool]
    plan_for: Callable[[str, str, str, datetime], Plan | None]
    balance: Callable[[str, str, str], Balance | None]  # (tenant, customer, currency)
    period_quantity: Callable[[str, str, str, datetime], Decimal | None]  # before this usage in the period
    sessions: Any  # the entity store's sessionmaker (holds)


@dataclass(frozen=True)
class Answer:
    customer: str
    meter: str
    currency: str
    kind: str  # voice | sms | data | usage
    balance: Balance
    held: Decimal
    available: Decimal
    requested: Decimal | None
    allowed: Decimal  # Infinity: the balance never runs out
    charge: Decimal
    start: datetime
    hold: holds.StoredHold | None


def used_up(plan: Any) -> dict[str, Decimal]:
    """Every bundle of a telecom plan counted as used up (base units): the safe assumption when the bundle
    use of the period is not known, so an answer never exceeds what the balance pays for."""
    return {b.id: b.amount * BUNDLE_UNITS[b.unit][1] for b in plan.bundles if b.unit in BUNDLE_UNITS}


def authorize(ctx: Context, tenant: str, req: Request, *, now: datetime | None = None) -> Answer:
    now = now or datetime.now(UTC)
    start = req.start or now
    if req.quantity is not None and req.duration_seconds is not None:
        raise AuthorizeError(422, "duration_seconds", "give quantity or duration_seconds, not both")
    if not ctx.customer_known(tenant, req.customer):
        raise AuthorizeError(404, "customer", f"unknown customer {req.customer!r}")
    plan = ctx.plan_for(tenant, req.customer, req.meter, start)
    if plan is None:
        raise AuthorizeError(422, "customer", f"customer {req.customer!r} has no plan at {start.isoformat()}")
    if not plan.rates(req.meter):
        raise AuthorizeError(422, "meter", f"plan {plan.id!r} of customer {req.customer!r} does not price "
                                           f"meter {req.meter!r}")  # fmt: skip
    balance = ctx.balance(tenant, req.customer, plan.currency)
    if balance is None:
        raise AuthorizeError(422, "customer", f"customer {req.customer!r} has no prepaid wallet in {plan.currency}")
    before = None  # the period's quantity so far, for a usage price whose charge depends on it (read outside the lock)
    if req.meter not in plan.telecom_meters and depends_on_before(plan.prices[req.meter]):
        before = ctx.period_quantity(tenant, req.customer, req.meter, start)
    if not req.hold:  # nothing reserved: a read of what is held is enough
        held = holds.held(ctx.sessions, tenant, req.customer, plan.currency, now=now, except_session=req.session_id)
        return _answer(req, tenant, plan, balance, held, before, start, now, None)
    # the read of what is held, the allowance and the hold in one transaction under the customer's hold lock
    # (entities/holds.py `reserving`): a concurrent authorization of this customer, in any API process, waits
    with holds.reserving(ctx.sessions, tenant, req.customer) as r:
        held = r.held(plan.currency, now=now, except_session=req.session_id)
        return _answer(req, tenant, plan, balance, held, before, start, now, r)


def _answer(req: Request, tenant: str, plan: Plan, balance: Balance, held: Decimal, before: Decimal | None,
            start: datetime, now: datetime, reservation: holds.Reservation | None) -> Answer:  # fmt: skip
    available = EXACT.subtract(balance.amount, held)
    room = max(available, ZERO)
    requested = req.duration_seconds if req.duration_seconds is not None else req.quantity
    if req.meter in plan.telecom_meters:
        kind = plan.telecom.meters[req.meter].kind
        if req.duration_seconds is not None and kind != "voice":
            raise AuthorizeError(422, "duration_seconds", f"meter {req.meter!r} is not a voice meter: give quantity")
        allowed, charge = _telecom(plan.telecom, req, start, room, requested)
    else:
        kind = "usage"
        if req.duration_seconds is not None:
            raise AuthorizeError(422, "duration_seconds", f"meter {req.meter!r} is not a voice meter: give quantity")
        try:
            allowed, charge = allowed_quantity(plan.prices[req.meter], available=room, before=before,
                                               step=req.quantity_step, limit=requested)  # fmt: skip
        except ValueError as exc:
            raise AuthorizeError(422, "quantity_step", str(exc)) from None
    hold = None
    if reservation is not None:
        amount = charge if allowed.is_finite() else ZERO
        quantity = allowed if allowed.is_finite() else (requested or ZERO)
        spec = holds.HoldSpec(tenant, req.customer, req.meter, plan.currency, amount, quantity, req.hold_ttl,
                              req.session_id)  # fmt: skip
        hold = reservation.place(spec, now=now)
    return Answer(req.customer, req.meter, plan.currency, kind, balance, held, available, requested, allowed,
                  charge, start, hold)  # fmt: skip


def _telecom(plan: Any, req: Request, start: datetime, room: Decimal, requested: Decimal | None):
    bundle_used = dict(req.bundle_used) if req.bundle_used is not None else used_up(plan)
    try:
        allowed = max_duration(plan, meter=req.meter, balance=room, start=start, dimensions=req.dimensions,
                               bundle_used=bundle_used, horizon=requested)  # fmt: skip
        if not allowed.is_finite() or allowed == 0:
            return allowed, ZERO
        record = SessionRecord("authorize", 1, req.meter, start, dict(req.dimensions), total_usage=allowed)
        _, rated = rate_session_record(plan, None, record, bundle_used=bundle_used)
    except NoRate as exc:
        raise AuthorizeError(422, exc.field, str(exc)) from None
    except SessionError as exc:
        raise AuthorizeError(422, exc.field, str(exc)) from None
    return allowed, rated.cost
