"""Dunning policies of the key's tenant and its customers' dunning state (docs/dunning.md). Writes need an `admin`
key, reads `read`; the tenant is always the key's.

- GET /v1/dunning_policies: the tenant's policies (its default first, then the customers' own);
- PUT / GET / DELETE /v1/dunning_policies/default: the tenant's default policy;
- PUT / GET / DELETE /v1/customers/{external_id}/dunning_policy: a customer's own policy (overrides the default);
- GET /v1/customers/{external_id}/dunning: the policy that applies and where it comes from, the steps done
  (reminders, late fees, suspension, reactivation), the late fees pending or billed, and the suspension.
A PUT creates (201) or replaces (200) the policy. Errors: 422 `invalid` naming the field (`reminder_days[1]`,
`late_fee.value`, ...), 404 `not_found` (entity_common.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from meterstream.api.auth import require
from meterstream.api.entities_models import ExternalId, Money, _In
from meterstream.api.routes.entity_common import EntityRoute, errors, store
from meterstream.billing.dunning import MAX_DAYS, MAX_STEPS, LateFee, Policy, PolicyError
from meterstream.entities import dunning
from meterstream.entities.common import Invalid
from meterstream.entities.keys import Principal

router = APIRouter(tags=["dunning"], route_class=EntityRoute)
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
_WRITE = errors(401, 403, 404, 422, 429)
_READ = errors(401, 403, 404, 422, 429)
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]


class LateFeeIn(_In):
    kind: Literal["fixed", "percent"]
    value: Money = Field(description="fixed: an amount in the invoice's currency; percent: 2 is 2 % of the amount "
                                     "still due")  # fmt: skip
    after_days: Days = Field(default=30, description="The first fee, days after the due date.")
    period_days: Annotated[int, Field(ge=1, le=MAX_DAYS)] | None = Field(
        default=30, description="Then one more fee every this many days while unpaid (null: once)."
    )
    max_periods: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = Field(
        default=None, description=f"At most this many fees per invoice (null: {MAX_STEPS})."
    )


class DunningPolicyIn(_In):
    reminder_days: list[Annotated[int, Field(ge=1, le=MAX_DAYS)]] = Field(
        default=[3, 7, 14], max_length=MAX_STEPS, description="Reminders, days after the due date (increasing)."
    )
    late_fee: LateFeeIn | None = None
    suspend_after_last: bool = Field(default=False, description="A provisioning `suspend` the day after the last "
                                                                "reminder (reason invoice_overdue).")  # fmt: skip

    def to_policy(self) -> Policy:
        try:
            fee = None
            if self.late_fee is not None:
                f = self.late_fee
                fee = LateFee(f.kind, f.value, f.after_days, f.period_days, f.max_periods)
            return Policy(tuple(self.reminder_days), fee, self.suspend_after_last)
        except PolicyError as exc:
            raise Invalid(exc.field, str(exc).split(": ", 1)[-1]) from None


class LateFeeOut(BaseModel):
    kind: str
    value: str
    after_days: int
    period_days: int | None
    max_periods: int | None


class DunningPolicyOut(BaseModel):
    customer: str | None = Field(description="null: the tenant's default")
    reminder_days: list[int]
    late_fee: LateFeeOut | None
    suspend_after_last: bool
    created_at: datetime
    updated_at: datetime


class DunningPolicyList(BaseModel):
    items: list[DunningPolicyOut]


class DunningStepOut(BaseModel):
    invoice_id: str
    step: str
    due_on: date
    done_at: datetime
    notification_id: str | None
    detail: dict[str, Any] | None


class DunningChargeOut(BaseModel):
    source_invoice_id: str
    step: str
    kind: str
    description: str
    currency: str
    amount: str
    amount_minor: int
    due_on: date
    billed_invoice_id: str | None = Field(description="null: pending, billed by the customer's next invoice")


class DunningStateOut(BaseModel):
    customer: str
    policy: DunningPolicyOut | None
    policy_source: Literal["customer", "tenant"] | None
    suspended: bool
    suspended_for: list[str]
    steps: list[DunningStepOut]
    charges: list[DunningChargeOut]


_PUT: dict[int | str, dict[str, Any]] = {**_WRITE, 201: {"model": DunningPolicyOut, "description": "Created"}}


def policy_out(p: dunning.StoredPolicy) -> dict[str, Any]:
    fee = p.policy.late_fee
    return {
        "customer": p.customer, "reminder_days": list(p.policy.reminder_days),
        "late_fee": None if fee is None else {"kind": fee.kind, "value": format(fee.value, "f"),
                                              "after_days": fee.after_days, "period_days": fee.period_days,
                                              "max_periods": fee.max_periods},
        "suspend_after_last": p.policy.suspend_after_last, "created_at": p.created_at, "updated_at": p.updated_at,
    }  # fmt: skip


async def _put(request: Request, response: Response, tenant: str, customer: str | None,
               body: DunningPolicyIn) -> dict[str, Any]:  # fmt: skip
    policy = await store(body.to_policy)
    stored, created = await store(dunning.put_policy, request.app.state.sessions, tenant, customer, policy)
    response.status_code = 201 if created else 200
    return policy_out(stored)


@router.get("/v1/dunning_policies", response_model=DunningPolicyList, responses=_READ,
            summary="The tenant's dunning policies (default first)")  # fmt: skip
async def list_policies(request: Request, principal: Reader) -> dict:
    found = await store(dunning.list_policies, request.app.state.sessions, principal.tenant)
    return {"items": [policy_out(p) for p in found]}


@router.put("/v1/dunning_policies/default", response_model=DunningPolicyOut, responses=_PUT,
            summary="Create or replace the tenant's default dunning policy")  # fmt: skip
async def put_default(request: Request, response: Response, principal: Admin, body: DunningPolicyIn) -> dict:
    return await _put(request, response, principal.tenant, None, body)


@router.get("/v1/dunning_policies/default", response_model=DunningPolicyOut, responses=_READ,
            summary="The tenant's default dunning policy")  # fmt: skip
async def get_default(request: Request, principal: Reader) -> dict:
    return policy_out(await store(dunning.get_policy, request.app.state.sessions, principal.tenant, None))


@router.delete("/v1/dunning_policies/default", status_code=204, responses=_WRITE,
               summary="Remove the tenant's default policy (customers without their own: no dunning)")  # fmt: skip
async def delete_default(request: Request, principal: Admin) -> Response:
    await store(dunning.delete_policy, request.app.state.sessions, principal.tenant, None)
    return Response(status_code=204)


@router.put("/v1/customers/{external_id}/dunning_policy", response_model=DunningPolicyOut, responses=_PUT,
            summary="Create or replace a customer's own dunning policy")  # fmt: skip
async def put_customer_policy(request: Request, response: Response, principal: Admin, external_id: ExternalId,
                              body: DunningPolicyIn) -> dict:  # fmt: skip
    return await _put(request, response, principal.tenant, external_id, body)


@router.get("/v1/customers/{external_id}/dunning_policy", response_model=DunningPolicyOut, responses=_READ,
            summary="A customer's own dunning policy")  # fmt: skip
async def get_customer_policy(request: Request, principal: Reader, external_id: ExternalId) -> dict:
    return policy_out(await store(dunning.get_policy, request.app.state.sessions, principal.tenant, external_id))


@router.delete("/v1/customers/{external_id}/dunning_policy", status_code=204, responses=_WRITE,
               summary="Remove a customer's own policy (the tenant's default applies again)")  # fmt: skip
async def delete_customer_policy(request: Request, principal: Admin, external_id: ExternalId) -> Response:
    await store(dunning.delete_policy, request.app.state.sessions, principal.tenant, external_id)
    return Response(status_code=204)


@router.get("/v1/customers/{external_id}/dunning", response_model=DunningStateOut, responses=_READ,
            summary="A customer's dunning: policy, steps done, late fees, suspension")  # fmt: skip
async def customer_dunning(request: Request, principal: Reader, external_id: ExternalId) -> dict:
    state = await store(dunning.customer_state, request.app.state.sessions, principal.tenant, external_id)
    return {
        "customer": state.customer,
        "policy": policy_out(state.policy) if state.policy is not None else None,
        "policy_source": state.source,
        "suspended": bool(state.suspended_for),
        "suspended_for": state.suspended_for,
        "steps": [{"invoice_id": e.invoice_id, "step": e.step, "due_on": e.due_on, "done_at": e.done_at,
                   "notification_id": e.notification_id, "detail": e.detail} for e in state.log],
        "charges": [{"source_invoice_id": c.source_invoice_id, "step": c.step, "kind": c.kind,
                     "description": c.description, "currency": c.currency, "amount": format(c.amount, "f"),
                     "amount_minor": c.amount_minor, "due_on": c.due_on, "billed_invoice_id": c.billed_invoice_id}
                    for c in state.charges],
    }  # fmt: skip
