"""POST /v1/authorize: the usage a prepaid customer's balance allows now (a call's longest duration, a usage
meter's largest quantity), optionally held for the session; GET/DELETE /v1/authorize/holds/{id}.

An `ingest` key (the service that sends the usage) or `admin`; the tenant is the key's. Errors: 404 `not_found`
(unknown customer, hold), 422 `invalid` naming the field (no plan, meter not priced, no rate for the
destination, negative duration, ...), 409 `conflict` (a session whose final record released its hold),
503 when the balance needs ClickHouse and it is not reachable. docs/authorization.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from meterstream.api.auth import require
from meterstream.api.authorization import Answer, AuthorizeError, Balance, Context, authorize
from meterstream.api.balance_feed import BalanceFeed, FeedReader
from meterstream.api.errors import ApiError
from meterstream.api.plan_source import StorePlans
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.api.wallet_usage import usage_reader
from meterstream.billing.allocation import from_units
from meterstream.entities import holds, wallets
from meterstream.entities.common import Conflict, Invalid
from meterstream.entities.keys import Principal

router = APIRouter(tags=["authorize"], route_class=EntityRoute)
Caller = Annotated[Principal, Depends(require("ingest"))]
Reader = Annotated[Principal, Depends(require("read", "ingest"))]
Dec = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=38)]


class AuthorizeIn(BaseModel):
    """What a switch (or any service) asks before letting usage start."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1, max_length=256, description="the customer's external id")
    meter: str = Field(min_length=1, max_length=128)
    dimensions: dict[str, str] = Field(default_factory=dict, description='e.g. {"destination": "+4930123"}')
    quantity: Dec | None = Field(None, description="requested quantity (SMS, data bytes, usage units); "
                                                   "omitted: as much as the balance allows")  # fmt: skip
    duration_seconds: Dec | None = Field(None, description="requested call duration (voice meters)")
    start: datetime | None = Field(None, description="when the usage starts (time bands); default now")
    hold: bool = Field(False, description="reserve the allowed amount's charge until the session's final record")
    session_id: str | None = Field(None, min_length=1, max_length=256,
                                   description="the session the hold is for (rated records carry it as the "
                                               "dimension session_id; the final one has final=true)")  # fmt: skip
    hold_ttl_seconds: int = Field(3600, ge=1, le=31 * 86400, description="the hold ends by itself after this")
    bundle_used: dict[str, Dec] | None = Field(None, description="bundle use this period per bundle id (base "
                                               "units); omitted: every bundle counted as used up")  # fmt: skip
    quantity_step: Dec = Field(Decimal(1), gt=0, description="usage meters: the allowed quantity is a multiple")

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError("must carry a time zone, e.g. 2026-12-01T10:00:00Z")
        return v


class HoldOut(BaseModel):
    id: str
    session_id: str | None
    meter: str
    currency: str
    amount: str = Field(description="reserved (the charge of the allowed usage)")
    consumed: str = Field(description="the session's rated usage so far")
    remaining: str
    quantity: str
    status: Literal["active", "released", "expired"]
    reason: str | None
    expires_at: datetime


class AuthorizeOut(BaseModel):
    customer: str
    meter: str
    kind: Literal["voice", "sms", "data", "usage"]
    currency: str
    balance: str = Field(description="the prepaid balance in the plan's currency")
    balance_source: Literal["stream", "ledger"] = Field(
        description="stream: the processor's last snapshot (balances topic); ledger: computed now"
    )
    balance_as_of: str | None
    held: str = Field(description="what the customer's other active holds still reserve")
    available: str = Field(description="balance - held")
    requested: str | None
    allowed: str | None = Field(description="the allowed quantity (seconds for voice); null when unlimited")
    allowed_duration_seconds: str | None = Field(description="voice meters: the same as allowed")
    unlimited: bool = Field(description="the balance never runs out for this usage (free, or capped)")
    granted: bool = Field(description="everything requested is allowed (without a request: anything is)")
    charge: str = Field(description="what the allowed usage costs (exact, unrounded)")
    start: datetime
    hold: HoldOut | None


def _hold_out(h: holds.StoredHold, now: datetime) -> dict:
    status = holds.EXPIRED if h.status == holds.ACTIVE and h.expires_at <= now else h.status
    reason = h.reason or ("expired" if status == holds.EXPIRED else None)
    return {"id": h.id, "session_id": h.session_id, "meter": h.meter, "currency": h.currency, "amount": str(h.amount),
            "consumed": str(h.consumed), "remaining": str(h.remaining), "quantity": str(h.quantity), "status": status,
            "reason": reason, "expires_at": h.expires_at}  # fmt: skip


def _out(a: Answer, now: datetime) -> dict:
    unlimited = not a.allowed.is_finite()
    allowed = None if unlimited else str(a.allowed)
    if a.requested is not None:
        granted = unlimited or a.allowed >= a.requested
    else:
        granted = unlimited or a.allowed > 0
    return {"customer": a.customer, "meter": a.meter, "kind": a.kind, "currency": a.currency,
            "balance": str(a.balance.amount), "balance_source": a.balance.source, "balance_as_of": a.balance.as_of,
            "held": str(a.held), "available": str(a.available),
            "requested": None if a.requested is None else str(a.requested), "allowed": allowed,
            "allowed_duration_seconds": allowed if a.kind == "voice" else None, "unlimited": unlimited,
            "granted": granted, "charge": str(a.charge), "start": a.start,
            "hold": None if a.hold is None else _hold_out(a.hold, now)}  # fmt: skip


def feed_of(app) -> BalanceFeed:
    """The app's balance feed (an empty one until the lifespan starts the reader)."""
    feed = getattr(app.state, "balance_feed", None)
    if feed is None:
        feed = app.state.balance_feed = BalanceFeed()
    return feed


def _context(app) -> Context:
    ctx = getattr(app.state, "authorize_context", None)
    if ctx is not None:
        return ctx
    plans = getattr(app.state, "plan_source", None)
    if plans is None:
        plans = app.state.plan_source = StorePlans(app.state.settings, app.state.sessions)
    feed = feed_of(app)
    sf, queries = app.state.sessions, app.state.queries

    def balance(tenant: str, customer: str, currency: str) -> Balance | None:
        snap = feed.get(tenant, customer)
        if snap is not None and snap.currency == currency:
            return Balance(Decimal(snap.balance), "stream", snap.as_of)
        found = wallets.customer_balances(sf, tenant, customer, usage_reader(queries, tenant, customer))
        for c in found:
            if c.currency == currency:
                units = sum(w.ongoing.balance for w in c.wallets)
                return Balance(from_units(units, currency), "ledger", c.at.isoformat())
        return None

    def period_quantity(tenant: str, customer: str, meter: str, at: datetime) -> Decimal | None:
        period = at.astimezone(UTC).strftime("%Y-%m")
        for m in queries.running_amount(tenant, customer, period)["meters"]:
            if m["meter"] == meter:
                return Decimal(m["quantity"])
        return None

    ctx = app.state.authorize_context = Context(
        customer_known=lambda t, c: plans.customer(t, c) is not None,
        plan_for=plans.plan_for,
        balance=balance,
        period_quantity=period_quantity,
        sessions=sf,
    )
    return ctx


def _run(app, tenant: str, body: AuthorizeIn) -> dict:
    from meterstream.api.authorization import Request as AuthRequest

    req = AuthRequest(customer=body.customer, meter=body.meter, dimensions=body.dimensions, quantity=body.quantity,
                      duration_seconds=body.duration_seconds, start=body.start, hold=body.hold,
                      session_id=body.session_id, hold_ttl=timedelta(seconds=body.hold_ttl_seconds),
                      bundle_used=body.bundle_used, quantity_step=body.quantity_step)  # fmt: skip
    now = datetime.now(UTC)
    try:
        return _out(authorize(_context(app), tenant, req, now=now), now)
    except AuthorizeError as exc:
        code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid")
        raise ApiError(exc.status, code, exc.message, field=exc.field) from None
    except Invalid as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc), field=exc.field) from None
    except ClickHouseUnavailable as exc:
        msg = f"ClickHouse is not reachable: {exc}"
        raise ApiError(503, "unavailable", msg, headers={"Retry-After": "5"}) from None


@router.post("/v1/authorize", response_model=AuthorizeOut, responses=errors(401, 403, 404, 409, 422, 429, 503),
             summary="The usage the prepaid balance allows now (a call's longest duration), held")  # fmt: skip
async def post_authorize(request: Request, principal: Caller, body: AuthorizeIn) -> Response:
    app = request.app
    if app.state.engine.dialect.name == "sqlite":  # local reads (~0.1 ms each): inline, no thread hop
        out = _run(app, principal.tenant, body)
    else:
        out = await run_in_threadpool(_run, app, principal.tenant, body)
    # the answer as AuthorizeOut documents it, serialized once: returning a Response skips FastAPI's validation of
    # the dict against the model and its JSON encoding (tests/api/test_authorize.py checks that both agree)
    return Response(orjson.dumps(out, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get("/v1/authorize/holds/{hold_id}", response_model=HoldOut, responses=errors(401, 403, 404, 429),
            summary="One hold")  # fmt: skip
async def get_hold(request: Request, principal: Reader, hold_id: str) -> dict:
    found = await store(holds.get_hold, request.app.state.sessions, principal.tenant, hold_id)
    return _hold_out(found, datetime.now(UTC))


@router.delete("/v1/authorize/holds/{hold_id}", response_model=HoldOut, responses=errors(401, 403, 404, 429),
               summary="Release a hold (the session is over)")  # fmt: skip
async def release_hold(request: Request, principal: Caller, hold_id: str) -> dict:
    found = await store(holds.release, request.app.state.sessions, principal.tenant, hold_id)
    return _hold_out(found, datetime.now(UTC))


def start_feed(app) -> FeedReader:
    """The app's balance feed reader (balances topic; rated-usage for the holds), started in a daemon thread."""
    sf = app.state.sessions
    reader = FeedReader(app.state.settings, feed_of(app), on_rated=lambda records: holds.consume_rated(sf, records))
    return reader.start()
