"""Lago's wallets and wallet transactions at /compat/lago/api/v1 over the wallet store (entities/wallets.py,
docs/wallets.md, docs/lago.md).

`wallets.create/find/find_all/update/destroy`, `wallet_transactions.create` (paid_credits, granted_credits,
voided_credits) and `wallet_transactions.find_all(wallet_id)` of lago-python-client work unchanged. A wallet's
`lago_id` is its id's 128 bits written as a UUID (and back), so both ids find it.

Balances, as Lago defines them, from the one rule (billing/wallet_balance.py) over the ledger and the customer's
rated usage read NOW through the API's query path plus, when the API holds the processor's balance snapshot of
the customer (api/balance_feed.py), the usage the processor debited that the sink has not written yet
(api/wallet_usage.py): current to the processor's commit (within 1 s of the event), not to a refresh every few
minutes:
- `balance_cents` / `credits_balance`: after the usage of the months before this one (what the closes invoiced);
- `ongoing_balance_cents` / `credits_ongoing_balance`: after all usage so far;
- `ongoing_usage_balance_cents` / `credits_ongoing_usage_balance`: this month's usage drawn from the wallet
  (the difference of the two); `consumed_credits`: what earlier months drew.
Differences from Lago: a wallet never goes below zero (usage no wallet covers is invoiced as usual), and
`paid_credits` are settled at once unless `invoice_requires_successful_payment` is true (then pending until
settled through POST /v1/wallets/{id}/transactions/{tid}/settle). `recurring_transaction_rules`: one rule with
method `fixed` (a rule without credits takes the wallet's `paid_credits` / `granted_credits`, as Lago does),
trigger `threshold` (applied by the stream processor) or `interval` (weekly ... yearly, written by the billing
run), docs/wallets.md; `target` is refused (422 naming the field). An update's rules replace the wallet's (a rule
with its `lago_id` is kept).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.api.compat.lago.responses import empty_meta, error_body, page_meta, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body, _json
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.api.wallet_usage import balances_now
from meterstream.billing.allocation import from_units
from meterstream.entities import wallets as store
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.schemas.event import format_time, parse_time

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(_CROCKFORD)}


def lago_id(ulid: str) -> str:
    """A ULID's 128 bits as a UUID (Lago's id format)."""
    value = 0
    for c in ulid:
        value = value * 32 + _VALUE[c]
    return str(uuid.UUID(int=value))


def our_id(value: str) -> str:
    """A wallet's own id from either form (a Lago UUID is read back to the ULID)."""
    try:
        number = uuid.UUID(value).int
    except ValueError:
        return value
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


def _text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string (got {type(value).__name__})")
    return value


def _time(field: str, value: Any) -> datetime | None:
    text = _text(field, value)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise Invalid(field, str(exc)) from None


def _credits(value: Any) -> Any:
    """Lago sends credits as strings; a JSON number is read by its shortest text (the SDK may send one)."""
    return repr(value) if isinstance(value, float) else value


def _given(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name)
    return value is not None and value != "" and str(value).strip() not in ("0", "0.0")


def _rules(raw: Mapping[str, Any], wallet: Mapping[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """Lago's `recurring_transaction_rules` for the store (None: not given): `lago_id` read back to the rule's id,
    credits sent as JSON numbers read by their text; a fixed rule without credits takes the wallet's (create)."""
    rules = raw.get("recurring_transaction_rules")
    if rules is None:
        return None
    if not isinstance(rules, list):
        raise Invalid("recurring_transaction_rules", "a list of rules")
    out = []
    for rule in rules:
        if not isinstance(rule, Mapping):
            out.append(rule)  # the store names it
            continue
        item = {k: _credits(v) for k, v in rule.items() if k != "lago_id"}
        if rule.get("lago_id"):
            item["id"] = our_id(str(rule["lago_id"]))
        if wallet is not None and item.get("paid_credits") is None and item.get("granted_credits") is None:
            item["paid_credits"] = _credits(wallet.get("paid_credits"))
            item["granted_credits"] = _credits(wallet.get("granted_credits"))
        out.append(item)
    return out


def rule_object(r: store.TopUpRule) -> dict[str, Any]:
    """Lago's recurring transaction rule object."""
    return {
        "lago_id": lago_id(r.id), "trigger": r.trigger, "method": r.method, "interval": r.interval,
        "threshold_credits": None if r.threshold_credits is None else _num(r.threshold_credits),
        "paid_credits": _num(r.paid_credits),
        "granted_credits": _num(r.granted_credits), "target_ongoing_balance": None, "status": "active",
        "started_at": format_time(r.started_at) if r.started_at else None,
        "expiration_at": format_time(r.expiration_at) if r.expiration_at else None,
        "created_at": format_time(r.created_at), "transaction_metadata": [], "transaction_name": None,
        "invoice_requires_successful_payment": False,
    }  # fmt: skip


def _top_ups(raw: Mapping[str, Any]) -> list[store.TopUp]:
    pending = raw.get("invoice_requires_successful_payment") is True
    out = []
    if _given(raw, "paid_credits"):
        out.append(store.TopUp("paid", _credits(raw["paid_credits"]), "pending" if pending else "settled",
                               name=_text("name", raw.get("transaction_name", raw.get("name")))))  # fmt: skip
    if _given(raw, "granted_credits"):
        out.append(store.TopUp("granted", _credits(raw["granted_credits"])))
    return out


def _num(value: Any) -> str:
    return format(value.normalize(), "f") if value else "0.0"


def wallet_object(s: store.WalletState | None, w: store.StoredWallet, synced: datetime | None) -> dict[str, Any]:
    """Lago's wallet object; `s` None: no balance could be computed (ClickHouse unreachable on a write)."""
    ongoing = s.ongoing.balance if s else 0
    billed = s.billed.balance if s else 0
    used = max(billed - ongoing, 0)
    return {
        "lago_id": lago_id(w.id), "lago_customer_id": lago_uuid(w.tenant, "customer", w.customer),
        "external_customer_id": w.customer, "status": w.status, "currency": w.currency, "name": w.name,
        "code": w.code, "priority": w.priority, "rate_amount": _num(w.rate_amount),
        "credits_balance": _num(store.credits_of(billed, w)), "balance_cents": billed,
        "consumed_credits": _num(store.credits_of(s.billed.consumed if s else 0, w)),
        "ongoing_balance_cents": ongoing, "ongoing_usage_balance_cents": used,
        "credits_ongoing_balance": _num(store.credits_of(ongoing, w)),
        "credits_ongoing_usage_balance": _num(store.credits_of(used, w)),
        "created_at": format_time(w.created_at),
        "expiration_at": format_time(w.expires_at) if w.expires_at else None,
        "last_balance_sync_at": format_time(synced) if synced else None,
        "last_consumed_credit_at": format_time(s.last_consumed_at) if s and s.last_consumed_at else None,
        "terminated_at": format_time(w.terminated_at) if w.terminated_at else None,
        "recurring_transaction_rules": [rule_object(r) for r in w.rules], "applies_to": None,
        "invoice_requires_successful_payment": False,
        "paid_top_up_max_amount_cents": None, "paid_top_up_min_amount_cents": None, "metadata": None,
    }  # fmt: skip


_STATUS = {"paid": "purchased", "granted": "granted", "void": "voided"}


def transaction_object(t: store.StoredTransaction, w: store.StoredWallet) -> dict[str, Any]:
    return {
        "lago_id": lago_id(t.id), "lago_wallet_id": lago_id(w.id), "lago_invoice_id": None,
        "lago_credit_note_id": None, "lago_voided_invoice_id": None, "status": t.status,
        "source": store.transaction_source(t.reference),
        "transaction_status": _STATUS[t.kind], "transaction_type": t.direction,
        "amount": _num(from_units(t.units, w.currency)), "credit_amount": _num(t.credits),
        "remaining_amount_cents": None, "remaining_credit_amount": None, "priority": w.priority,
        "settled_at": format_time(t.settled_at) if t.settled_at else None, "failed_at": None,
        "created_at": format_time(t.created_at), "metadata": [], "name": t.name,
        "invoice_requires_successful_payment": t.kind == "paid" and t.status == "pending",
    }  # fmt: skip


def _states(request: Request, tenant: str, customer: str, *, strict: bool) -> tuple[dict[str, store.WalletState],
                                                                                    datetime | None]:  # fmt: skip
    """wallet id -> its state now, and the time; ClickHouse unreachable: raised when `strict`, else ({}, None)."""
    try:
        now, found = balances_now(request.app.state, tenant, customer)  # the read /v1 makes (api/wallet_usage.py)
    except ClickHouseUnavailable:
        if strict:
            raise
        return {}, None
    return {s.wallet.id: s for c in found for s in c.wallets}, now


def _objects(request: Request, ws: list[store.StoredWallet], *, strict: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cache: dict[str, tuple[dict[str, store.WalletState], datetime | None]] = {}
    for w in ws:
        if w.customer not in cache:
            cache[w.customer] = _states(request, w.tenant, w.customer, strict=strict)
        states, at = cache[w.customer]
        out.append(wallet_object(states.get(w.id), w, at))
    return out


async def _run(fn: Any, *args: Any) -> Response:
    try:
        return await run_in_threadpool(fn, *args)
    except NotFound as exc:
        code = "customer_not_found" if "customer" in str(exc) else (
            "wallet_transaction_not_found" if "transaction" in str(exc) else "wallet_not_found")  # fmt: skip
        return _json(error_body(404, code), 404)
    except (Invalid, Conflict) as exc:
        return _json(validation_error({exc.field or "base": [getattr(exc, "reason", None) or str(exc)]}), 422)
    except ClickHouseUnavailable as exc:
        return _json(error_body(503, "usage_store_unavailable", {"message": [str(exc)]}), 503)


class WalletOut(BaseModel):
    wallet: dict[str, Any]


class WalletsOut(BaseModel):
    wallets: list[dict[str, Any]]
    meta: dict[str, Any]


class TransactionsOut(BaseModel):
    wallet_transactions: list[dict[str, Any]]


Page = Annotated[int, Query(ge=1, le=2**31 - 1)]
PerPage = Annotated[int, Query(ge=1, le=1000)]


def _mapping(raw: Any, root: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise Invalid(root, "must be a JSON object")
    return raw


@router.post("/wallets", summary="Create a wallet", responses=m.answers(WalletOut, *WRITE, 404))
async def create_wallet(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "wallet")

    def run() -> Response:
        body = _mapping(raw, "wallet")
        customer = _text("external_customer_id", body.get("external_customer_id"))
        if not customer:
            raise Invalid("external_customer_id", "required")
        rate = _credits(body.get("rate_amount") if body.get("rate_amount") is not None else "1")
        priority = body.get("priority", store.MAX_PRIORITY)
        spec = store.WalletSpec(principal.tenant, customer, _text("currency", body.get("currency")), rate,
                                _text("name", body.get("name")), _text("code", body.get("code")),
                                priority if priority is not None else store.MAX_PRIORITY,
                                _time("expiration_at", body.get("expiration_at")), _rules(body, body))  # fmt: skip
        wallet, _ = store.create_wallet(request.app.state.sessions, spec, _top_ups(body))
        return _json({"wallet": _objects(request, [wallet], strict=False)[0]})

    return await _run(run)


def _customer_wallets(request: Request, tenant: str, customer: str | None, page: int, per_page: int) -> Response:
    if not customer:
        raise Invalid("external_customer_id", "required")
    get_customer_doc(request.app.state.sessions, tenant, customer)  # Lago: 404 customer_not_found, not []
    found = store.list_wallets(request.app.state.sessions, tenant, customer)
    chunk = found[(page - 1) * per_page : page * per_page]
    pages = -(-len(found) // per_page)
    meta = {"current_page": page, "next_page": page + 1 if page < pages else None,
            "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": len(found)}  # fmt: skip
    meta = meta if found else empty_meta()  # page 0 of 0, as Lago
    return _json({"wallets": _objects(request, chunk, strict=True), "meta": meta})


@router.get("/wallets", summary="List a customer's wallets (external_customer_id)",
            responses=m.answers(WalletsOut, *AUTH, 400, 404, 422, 503))  # fmt: skip
async def list_wallets(
    request: Request, principal: Read, page: Page = 1, per_page: PerPage = 100,
    external_customer_id: Annotated[str | None, Query()] = None,
) -> Response:  # fmt: skip
    return await _run(_customer_wallets, request, principal.tenant, external_customer_id, page, per_page)


@router.get("/customers/{external_customer_id}/wallets", summary="A customer's wallets",
            responses=m.answers(WalletsOut, *AUTH, 400, 404, 422, 503))  # fmt: skip
async def customer_wallets(request: Request, principal: Read, external_customer_id: str, page: Page = 1,
                           per_page: PerPage = 100) -> Response:  # fmt: skip
    return await _run(_customer_wallets, request, principal.tenant, external_customer_id, page, per_page)


@router.get("/wallets/{wallet_id}", summary="Retrieve a wallet", responses=m.answers(WalletOut, *READ, 503))
async def get_wallet(request: Request, principal: Read, wallet_id: str) -> Response:
    def run() -> Response:
        wallet = store.get_wallet(request.app.state.sessions, principal.tenant, our_id(wallet_id))
        return _json({"wallet": _objects(request, [wallet], strict=True)[0]})

    return await _run(run)


@router.put("/wallets/{wallet_id}", summary="Update a wallet (name, priority, expiration_at, recurring rules)",
            responses=m.answers(WalletOut, *WRITE, 404))  # fmt: skip
async def update_wallet(request: Request, principal: Admin, wallet_id: str) -> Response:
    raw = await _body(request, "wallet")

    def run() -> Response:
        body = _mapping(raw, "wallet")
        changes: dict[str, Any] = {}
        if (rules := _rules(body)) is not None:
            changes["rules"] = rules
        if body.get("name") is not None:
            changes["name"] = _text("name", body["name"])
        if body.get("priority") is not None:
            changes["priority"] = body["priority"]
        if "expiration_at" in body:
            changes["expires_at"] = _time("expiration_at", body["expiration_at"])
        wallet = store.update_wallet(request.app.state.sessions, principal.tenant, our_id(wallet_id), **changes)
        return _json({"wallet": _objects(request, [wallet], strict=False)[0]})

    return await _run(run)


@router.delete("/wallets/{wallet_id}", summary="Terminate a wallet", responses=m.answers(WalletOut, *READ))
async def terminate_wallet(request: Request, principal: Admin, wallet_id: str) -> Response:
    def run() -> Response:
        wallet = store.terminate_wallet(request.app.state.sessions, principal.tenant, our_id(wallet_id))
        return _json({"wallet": _objects(request, [wallet], strict=False)[0]})

    return await _run(run)


@router.post("/wallet_transactions", summary="Top up (paid or granted credits) or void credits",
             responses=m.answers(TransactionsOut, *WRITE, 404))  # fmt: skip
async def create_transactions(request: Request, principal: Admin) -> Response:
    raw = await _body(request, "wallet_transaction")

    def run() -> Response:
        body = _mapping(raw, "wallet_transaction")
        wallet_ref = _text("wallet_id", body.get("wallet_id"))
        if not wallet_ref:
            raise Invalid("wallet_id", "required")
        sf, tenant = request.app.state.sessions, principal.tenant
        wallet = store.get_wallet(sf, tenant, our_id(wallet_ref))
        top_ups = _top_ups(body)
        voided = body.get("voided_credits")
        if not top_ups and not _given(body, "voided_credits"):
            raise Invalid("paid_credits", "give paid_credits, granted_credits or voided_credits")
        # every amount is checked before anything is written: a bad one refuses the whole request
        for t in top_ups:
            store.check_credits(f"{t.kind}_credits", t.credits, wallet.rate_amount, wallet.currency)
        if _given(body, "voided_credits"):
            store.check_credits("voided_credits", _credits(voided), wallet.rate_amount, wallet.currency)
        made = [store.top_up(sf, tenant, wallet.id, t)[0] for t in top_ups]
        if _given(body, "voided_credits"):
            made.append(store.void_credits(sf, tenant, wallet.id, _credits(voided))[0])
        return _json({"wallet_transactions": [transaction_object(t, wallet) for t in made]})

    return await _run(run)


@router.get("/wallets/{wallet_id}/wallet_transactions", summary="A wallet's transactions",
            responses=m.answers(TransactionsOut, *READ))  # fmt: skip
async def list_transactions(request: Request, principal: Read, wallet_id: str) -> Response:
    def run() -> Response:
        sf = request.app.state.sessions
        wallet = store.get_wallet(sf, principal.tenant, our_id(wallet_id))
        found = store.list_transactions(sf, principal.tenant, wallet.id)
        meta = page_meta(len(found))
        return _json({"wallet_transactions": [transaction_object(t, wallet) for t in found], "meta": meta})

    return await _run(run)
