"""POST /v1/billing/close: close a period from the API, behind the same guards as `meterstream close`.

A close of the period is global (every tenant's invoices for the period, one `period_closes` mark), so it is an
operator action: the caller needs an `admin` key of the operator tenant, named by `METERSTREAM_OPERATOR_TENANT`;
with the variable unset no key may close (403). Closing only the key's tenant is not offered: the period mark is
global, so a second tenant's invoices would then never be computed (they would be re-issued as empty).

A close of ONE customer (`"customer": "<external id>"`) finalizes that customer's invoice alone and marks nothing
global (docs/billing.md), so an `admin` key of the customer's own tenant may do it; the operator's admin keys may
close any tenant's customer (`"tenant"`; without it, the tenant that has the customer, when only one does). The
guards are the customer's: its period end in its time zone, its grace period, the pipeline's backlog.

The close runs as a child process (`meterstream billing close --period P --json`): a close pauses the garbage
collector of its process and takes a core for a while, which an API process serving requests must not. One
close at a time per API process (409 while one runs). Answers: 200 with the close's summary (customers that
could not be invoiced are listed in `failed`, the others are closed), 409 `close_refused` with the guards'
reason ('2026-12 ends 2027-01-01T05:00Z in America/New_York; processor lag 1,234 events; ...'), 422 for a bad
body, 500 `close_failed` when the close itself failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import sessionmaker

from meterstream.api.auth import require
from meterstream.api.errors import ApiError
from meterstream.api.routes.entity_common import EntityRoute, errors
from meterstream.entities import invoices
from meterstream.entities.common import Conflict
from meterstream.entities.invoice_rules import DRAFT
from meterstream.entities.keys import Principal
from meterstream.schemas.settings import Settings

router = APIRouter(prefix="/v1/billing", tags=["billing"], route_class=EntityRoute)  # 422 naming the field
Admin = Annotated[Principal, Depends(require("admin"))]
REFUSED = 3  # `meterstream billing close`: a guard refused
_running = threading.Lock()


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM", examples=["2026-11"])
    force: bool = Field(False, description="close even if the period has not ended or the pipeline has a backlog")
    publish: bool = Field(True, description="send the documents to the invoices topic")
    customer: str | None = Field(None, min_length=1, max_length=256, description="close only this customer "
                                 "(external id): its invoice alone is finalized")  # fmt: skip
    tenant: str | None = Field(None, min_length=1, max_length=128, description="the customer's tenant (default: "
                               "the key's; another tenant's customer: operator keys only)")  # fmt: skip


class CloseFailure(BaseModel):
    tenant: str
    customer: str
    reason: str


class CloseAnswer(BaseModel):
    period: str
    invoices: int = Field(description="invoices written (re-issued when the period was closed before)")
    totals: dict[str, str] = Field(description="currency -> total of the invoices, decimal text")
    reissued: bool
    unreconciled: int = Field(description="lines whose streamed amount differs from the close's")
    failed: list[CloseFailure]
    forced: bool
    directory: str
    customers: list[str] | None = Field(None, description="tenant/customer closed alone (null: the whole period)")


@router.post(
    "/close",
    response_model=CloseAnswer,
    summary="Close a period for every tenant (operator action), or one customer",
    responses=errors(401, 403, 409, 422, 429, 500),
)
def close(body: CloseRequest, principal: Admin) -> dict:
    knobs = Settings()  # read now: an operator may set METERSTREAM_OPERATOR_TENANT without restarting the API
    one: list[str] = []
    if body.customer is not None:
        operator = bool(knobs.operator_tenant) and principal.tenant == knobs.operator_tenant
        tenant = body.tenant if operator else (body.tenant or principal.tenant)
        if tenant != principal.tenant and not operator:
            raise ApiError(403, "forbidden", "closing another tenant's customer is an operator action "
                           "(METERSTREAM_OPERATOR_TENANT)", field="tenant")  # fmt: skip
        one = ["--customer", body.customer] + (["--tenant", tenant] if tenant else [])
    elif body.tenant is not None:
        raise ApiError(422, "invalid", "tenant: only with a customer (a period is closed for every tenant)",
                       field="tenant")  # fmt: skip
    if not one:
        _operator_only(knobs, principal)
    options = ["--force"] * body.force + ["--no-publish"] * (not body.publish)
    return run_close(knobs, body.period, [*one, *options])


def run_close(knobs: Settings, period: str, options: list[str], refused_field: str | None = "force") -> dict:
    """`meterstream billing close --period <period> <options>` as a child process (module docstring): its JSON
    answer, or the ApiError (409 close_running / close_refused, 422 invalid, 500 close_failed). Blocking: the
    routes call it in a worker thread (FastAPI runs a plain `def` route there)."""
    if not _running.acquire(blocking=False):
        raise ApiError(409, "close_running", "a close is already running; try again when it has finished")
    try:
        done = _billing(knobs, "close", ["--period", period, *options], "close_failed")
    finally:
        _running.release()
    answer = _last_json(done.stdout)
    if done.returncode == REFUSED and answer is not None:
        raise ApiError(409, "close_refused", answer["message"], field=refused_field)
    if done.returncode == 2 and answer is not None and answer.get("error") == "invalid":
        raise ApiError(422, "invalid", answer["message"], field=answer.get("field"))
    if done.returncode in (0, 1) and answer is not None and "period" in answer:
        return answer
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise ApiError(500, "close_failed", f"the close failed (exit {done.returncode}): {last[:500]}")


def _billing(knobs: Settings, command: str, args: list[str], error: str) -> subprocess.CompletedProcess[str]:
    """`meterstream billing <command> <args>` as a child process; ApiError(500, `error`) when it overruns."""
    cmd = [sys.executable, "-m", "meterstream.deploy.cli", "billing", command, *args]
    try:
        return subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True,
                              timeout=knobs.billing_close_timeout_seconds)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ApiError(500, error, f"`billing {command}` did not finish within "
                       f"{knobs.billing_close_timeout_seconds:g}s") from None  # fmt: skip


def refresh_draft(sf: sessionmaker, tenant: str, invoice_id: str) -> invoices.Invoice:
    """Bring a draft up to date now (Lago's `invoices.refresh`; drafts are otherwise refreshed every minute by
    `up`): `billing drafts --customer` for its customer, as a child process. Raises NotFound, Conflict("status")
    for an invoice that is not a draft, ApiError(500 refresh_failed) when the refresh failed or could not price the
    customer's period (its reason); answers the invoice as it is now."""
    record = invoices.get(sf, tenant, invoice_id)
    if record.status != DRAFT:
        raise Conflict("status", f"invoice {invoice_id!r} is {record.status}: only a draft is refreshed")
    done = _billing(Settings(), "drafts", ["--customer", record.customer, "--tenant", tenant, "--json"],
                    "refresh_failed")  # fmt: skip
    answer = _last_json(done.stdout)
    if done.returncode != 0 or answer is None or "drafts" not in answer:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ApiError(500, "refresh_failed", f"the refresh failed (exit {done.returncode}): {last[:500]}")
    for failure in answer["failed"]:
        if failure["period"] == record.period:
            raise ApiError(500, "refresh_failed", f"the draft of {record.period} could not be priced: "
                           f"{failure['reason']}")  # fmt: skip
    return invoices.get(sf, tenant, invoice_id)


def finalize_draft(sf: sessionmaker, tenant: str, invoice_id: str, publish: bool = True) -> invoices.Invoice:
    """Finalize a draft invoice now, before its customer's grace period ends (Lago's `invoices.finalize`): the
    close of its customer and period (`billing close --customer --end-grace`, as POST /close runs it), which
    finalizes that customer's invoices of the period; the other guards stay (the period must have ended in the
    customer's time zone, the pipeline be drained: else 409 close_refused). Raises NotFound, Conflict("status")
    for an invoice that is not a draft, ApiError as `run_close`; answers the invoice as finalized."""
    record = invoices.get(sf, tenant, invoice_id)
    if record.status != DRAFT:
        raise Conflict("status", f"invoice {invoice_id!r} is {record.status}: only a draft is finalized early")
    options = ["--customer", record.customer, "--tenant", tenant, "--end-grace"] + ["--no-publish"] * (not publish)
    answer = run_close(Settings(), record.period, options, refused_field=None)
    for failure in answer.get("failed", []):
        raise ApiError(422, "not_invoiced", f"the close could not invoice customer {record.customer!r}: "
                       f"{failure['reason']}")  # fmt: skip
    done = invoices.get(sf, tenant, invoice_id)
    if done.status == DRAFT:  # the close finalized the customer's invoices under other ids
        raise ApiError(409, "not_finalized", f"the close of {record.period} left this draft as it was: list "
                       f"customer {record.customer!r}'s invoices")  # fmt: skip
    return done


def _operator_only(knobs: Settings, principal: Principal) -> None:
    if not knobs.operator_tenant:
        raise ApiError(403, "forbidden", "closing a period is an operator action: set METERSTREAM_OPERATOR_TENANT to "
                       "the tenant whose admin keys may close")  # fmt: skip
    if principal.tenant != knobs.operator_tenant:
        raise ApiError(403, "forbidden", "closing a period is an operator action: only admin keys of the operator "
                       "tenant (METERSTREAM_OPERATOR_TENANT) may close")  # fmt: skip


def _last_json(stdout: str) -> dict | None:
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
