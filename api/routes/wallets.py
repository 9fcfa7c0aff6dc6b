"""Prepaid wallets of the key's tenant's customers and their ledger (docs/wallets.md). Writes need an `admin`
key, reads `read`.

- POST /v1/customers/{external_id}/wallets creates a wallet (optional first paid and granted credits);
  GET lists the customer's wallets; GET /v1/customers/{external_id}/balance: every wallet's ongoing balance.
- GET /v1/wallets/{id} reads one, PATCH changes its name, priority, expiry or automatic top-up rules
  (`recurring_transaction_rules`, trigger `threshold`), DELETE terminates it (what is left of its credits ends).
- POST /v1/wallets/{id}/transactions: a paid or granted top-up, or a void (credits taken back); a repeated
  `reference` answers the first transaction (200, not 201). GET lists them; POST .../{tid}/settle settles a
  pending top-up.
- GET /v1/wallets/{id}/balance: the ongoing balance (settled inbound - consumed - voided - expired, the
  consumption derived from the customer's rated usage in ClickHouse now, plus what the processor's latest balance
  snapshot debited that ClickHouse does not hold yet: api/wallet_usage.balances_now, as Lago's wallets read it),
  what was consumed, the history.
Errors: 422 `invalid` naming the field, 404 `not_found`, 409 `conflict`, 503 when ClickHouse is not reachable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from meterstream.api.auth import require
from meterstream.api.errors import ApiError
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.api.wallet_usage import balances_now
from meterstream.api.wallets_models import (
    BalanceOut,
    CustomerBalancesOut,
    TransactionCreate,
    TransactionList,
    TransactionOut,
    WalletCreate,
    WalletList,
    WalletOut,
    WalletUpdate,
    balance_out,
    customer_balances_out,
    rules_in,
    transaction_out,
    wallet_out,
)
from meterstream.entities import wallets
from meterstream.entities.common import NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.keys import Principal

router = APIRouter(tags=["wallets"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_WRITE = errors(401, 403, 404, 409, 422, 429)
_READ = errors(401, 403, 404, 422, 429)
_BALANCE = errors(401, 403, 404, 429, 503)


@router.post("/v1/customers/{external_id}/wallets", response_model=WalletOut, status_code=201, responses=_WRITE,
             summary="Create a wallet for a customer")  # fmt: skip
async def create_wallet(request: Request, principal: Admin, external_id: str, body: WalletCreate) -> dict:
    top_ups = [wallets.TopUp(kind, credits, field=f"{kind}_credits")  # type: ignore[arg-type]
               for kind, credits in (("paid", body.paid_credits), ("granted", body.granted_credits))
               if credits is not None]  # fmt: skip
    spec = body.to_spec(principal.tenant, external_id)
    made, _ = await store(wallets.create_wallet, request.app.state.sessions, spec, top_ups)
    return wallet_out(made)


@router.get("/v1/customers/{external_id}/wallets", response_model=WalletList, responses=_READ,
            summary="A customer's wallets")  # fmt: skip
async def list_wallets(
    request: Request, principal: Reader, external_id: str,
    status: Annotated[str | None, Query(description="active or terminated")] = None,
) -> dict:  # fmt: skip
    sf = request.app.state.sessions
    await store(get_customer_doc, sf, principal.tenant, external_id)  # an unknown customer is 404, not no wallets
    found = await store(wallets.list_wallets, sf, principal.tenant, external_id, status)
    return {"items": [wallet_out(w) for w in found]}


@router.get("/v1/wallets/{wallet_id}", response_model=WalletOut, responses=_READ, summary="One wallet")
async def get_wallet(request: Request, principal: Reader, wallet_id: str) -> dict:
    return wallet_out(await store(wallets.get_wallet, request.app.state.sessions, principal.tenant, wallet_id))


@router.patch("/v1/wallets/{wallet_id}", response_model=WalletOut, responses=_WRITE,
              summary="Change a wallet's name, priority, expiry or top-up rules")  # fmt: skip
async def update_wallet(request: Request, principal: Admin, wallet_id: str, body: WalletUpdate) -> dict:
    changes = {k: getattr(body, k) for k in body.model_fields_set if k != "recurring_transaction_rules"}
    if "recurring_transaction_rules" in body.model_fields_set:
        changes["rules"] = rules_in(body.recurring_transaction_rules) or []
    return wallet_out(await store(wallets.update_wallet, request.app.state.sessions, principal.tenant, wallet_id,
                                  **changes))  # fmt: skip


@router.delete("/v1/wallets/{wallet_id}", response_model=WalletOut, responses=_WRITE,
               summary="Terminate a wallet (what is left of its credits ends)")  # fmt: skip
async def terminate_wallet(request: Request, principal: Admin, wallet_id: str) -> dict:
    return wallet_out(await store(wallets.terminate_wallet, request.app.state.sessions, principal.tenant, wallet_id))


def _write(sf: Any, tenant: str, wallet_id: str, body: TransactionCreate) -> tuple[dict, bool]:
    if body.kind == "void":
        tx, new = wallets.void_credits(sf, tenant, wallet_id, body.credits, reference=body.reference, field="credits")
    else:
        t = wallets.TopUp(body.kind, body.credits, body.status, body.reference, body.expires_at, body.name,
                          field="credits")  # fmt: skip
        tx, new = wallets.top_up(sf, tenant, wallet_id, t)
    return transaction_out(tx, wallets.get_wallet(sf, tenant, wallet_id)), new


@router.post("/v1/wallets/{wallet_id}/transactions", response_model=TransactionOut, status_code=201,
             responses={**_WRITE, 200: {"model": TransactionOut, "description": "A repeated reference"}},
             summary="Top up (paid or granted credits) or void credits")  # fmt: skip
async def create_transaction(request: Request, principal: Admin, wallet_id: str, body: TransactionCreate) -> Any:
    out, new = await store(_write, request.app.state.sessions, principal.tenant, wallet_id, body)
    return out if new else JSONResponse(TransactionOut(**out).model_dump(mode="json"), 200)


@router.get("/v1/wallets/{wallet_id}/transactions", response_model=TransactionList, responses=_READ,
            summary="A wallet's transactions (consumption and expiry: the balance)")  # fmt: skip
async def list_transactions(request: Request, principal: Reader, wallet_id: str) -> dict:
    sf = request.app.state.sessions
    wallet = await store(wallets.get_wallet, sf, principal.tenant, wallet_id)
    found = await store(wallets.list_transactions, sf, principal.tenant, wallet_id)
    return {"items": [transaction_out(t, wallet) for t in found]}


@router.post("/v1/wallets/{wallet_id}/transactions/{transaction_id}/settle", response_model=TransactionOut,
             responses=_WRITE, summary="Settle a pending top-up (it counts from now)")  # fmt: skip
async def settle(request: Request, principal: Admin, wallet_id: str, transaction_id: str) -> dict:
    sf = request.app.state.sessions
    tx = await store(wallets.settle_transaction, sf, principal.tenant, wallet_id, transaction_id)
    return transaction_out(tx, await store(wallets.get_wallet, sf, principal.tenant, wallet_id))


def customer_states(request: Request, tenant: str, customer: str) -> tuple[datetime, list[wallets.CustomerBalances]]:
    """(now, the customer's balances now): api/wallet_usage.balances_now, the read Lago's wallets use too (the
    ledger, its usage through the API's query path, current to the processor's snapshot in the balance feed)."""
    try:
        return balances_now(request.app.state, tenant, customer)
    except ClickHouseUnavailable as exc:
        msg = f"ClickHouse is not reachable: {exc}"
        raise ApiError(503, "unavailable", msg, headers={"Retry-After": "5"}) from None


def _wallet_balance(request: Request, tenant: str, wallet_id: str) -> dict:
    wallet = wallets.get_wallet(request.app.state.sessions, tenant, wallet_id)
    now, found = customer_states(request, tenant, wallet.customer)
    for c in found:
        for s in c.wallets:
            if s.wallet.id == wallet_id:
                return balance_out(s, now, history=True)
    raise NotFound(f"wallet {wallet_id!r} not found")


@router.get("/v1/wallets/{wallet_id}/balance", response_model=BalanceOut, responses=_BALANCE,
            summary="A wallet's ongoing balance, consumption and history")  # fmt: skip
async def wallet_balance(request: Request, principal: Reader, wallet_id: str) -> dict:
    return await store(_wallet_balance, request, principal.tenant, wallet_id)


def _customer_balance(request: Request, tenant: str, customer: str) -> dict:
    """404 for a customer the tenant does not have (another tenant's too): an empty answer would read as "no
    wallets", and a typo in the id would go unnoticed."""
    get_customer_doc(request.app.state.sessions, tenant, customer)
    now, found = customer_states(request, tenant, customer)
    return customer_balances_out(customer, now, found)


@router.get("/v1/customers/{external_id}/balance", response_model=CustomerBalancesOut, responses=_BALANCE,
            summary="The ongoing balances of a customer's wallets")  # fmt: skip
async def customer_balance(request: Request, principal: Reader, external_id: str) -> dict:
    return await store(_customer_balance, request, principal.tenant, external_id)
