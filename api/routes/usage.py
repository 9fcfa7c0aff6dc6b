"""Usage reads, real time from ClickHouse (`rated_usage FINAL`) through api/queries.py; read role.

GET /v1/usage: quantities and streamed amounts of the key's tenant, grouped by customer, subject,
meter and/or dimensions.<key>, optionally per hour/day/month window in an IANA time zone, between
`from` (inclusive) and `to` (exclusive). Grouped by subject, an amount is the subject's fair share of its
customer's amount per meter and billing period (`queries.fair_amounts`), not a sum of per-event deltas.
GET /v1/customers/{customer}/running-amount: the period's
(UTC calendar month, default the current one) running amount per meter and currency.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.auth import require
from meterstream.api.errors import ApiError, time_param
from meterstream.api.models import ErrorBody, RunningAmount, UsageResponse
from meterstream.api.queries import ClickHouseUnavailable, QueryError, UsageQuery, check_tz
from meterstream.entities.keys import Principal

router = APIRouter(prefix="/v1", tags=["usage"])
Reader = Annotated[Principal, Depends(require("read"))]
_ERRORS = {c: {"model": ErrorBody} for c in (400, 401, 403, 429, 503)}
GROUP_BY = "customer, subject, meter, dimensions.<key>; by subject, amounts are fair shares of the customer's"
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


async def _run(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return await run_in_threadpool(fn, *args)
    except QueryError as exc:
        raise ApiError(400, "invalid", exc.reason, field=exc.field) from None
    except ClickHouseUnavailable as exc:
        msg = f"ClickHouse is not reachable: {exc}"
        raise ApiError(503, "unavailable", msg, headers={"Retry-After": "5"}) from None


@router.get("/usage", response_model=UsageResponse, responses=_ERRORS, summary="Usage and streamed amounts")
async def get_usage(
    request: Request,
    principal: Reader,
    group_by: Annotated[list[str] | None, Query(description=GROUP_BY)] = None,
    window: Literal["hour", "day", "month"] | None = None,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the windows")] = "UTC",
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
    customer: Annotated[str | None, Query(max_length=256)] = None,
    subject: Annotated[str | None, Query(max_length=256)] = None,
    meter: Annotated[list[str] | None, Query(description="one or more meters")] = None,
) -> Response:
    try:
        check_tz(tz)
    except QueryError as exc:
        raise ApiError(400, "invalid", exc.reason, field=exc.field) from None
    q = UsageQuery(
        tenant=principal.tenant,
        group_by=tuple(group_by) if group_by else ("customer", "meter"),
        window=window,
        tz=tz,
        start=time_param("from", from_),
        end=time_param("to", to),
        customer=customer,
        subject=subject,
        meters=tuple(meter or ()),
    )
    rows = await _run(request.app.state.queries.usage, q)
    body = {"tenant": principal.tenant, "window": window, "tz": tz, "from": from_, "to": to, "rows": rows}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/customers/{customer}/running-amount",
    response_model=RunningAmount,
    responses=_ERRORS,
    summary="The current period's running (streamed) amount of a customer",
)
async def running_amount(
    request: Request,
    principal: Reader,
    customer: str,
    period: Annotated[str | None, Query(description="YYYY-MM (UTC month); default: the current one")] = None,
) -> Response:
    if period is None:
        period = datetime.now(UTC).strftime("%Y-%m")
    elif not _PERIOD.match(period):
        raise ApiError(400, "invalid", "must be YYYY-MM", field="period")
    body = await _run(request.app.state.queries.running_amount, principal.tenant, customer, period)
    return Response(orjson.dumps(body), media_type="application/json")
