"""Lago-compatible plans, customers, subscriptions and current usage at /compat/lago/api/v1 (thin routes).

Each parses Lago's body, calls the entity store through the mapping modules (plans.py, customers.py,
subscriptions.py, usage.py) and answers Lago's object; errors in Lago's shape: 404 `{"status": 404,
"error": "Not Found", "code": "<thing>_not_found"}`, 422 `validation_errors` naming the field.
See docs/lago.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.compat import LagoCompat
from meterstream.api.compat.lago.customers import customer_from_lago, customer_object, tax_codes_from_lago
from meterstream.api.compat.lago.lifetime_usage import LifetimeUsageOut, lifetime_usage
from meterstream.api.compat.lago.plans import charge_from_price, plan_from_lago, plan_object
from meterstream.api.compat.lago.responses import error_body, page_meta, page_of, validation_error
from meterstream.api.compat.lago.routes import AUTH, PREFIX, TAG, WRITE, Admin, Read, _body, _compat, _json
from meterstream.api.compat.lago.subscriptions import STATUSES, LagoNotFound, status_of
from meterstream.api.compat.lago.taxes import tax_object
from meterstream.api.compat.lago.usage import usage_object
from meterstream.api.errors import ApiError
from meterstream.api.queries import ClickHouseUnavailable
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import (
    CustomerFilter,
    customer_page,
    delete_customer,
    get_customer_doc,
    put_customer,
)
from meterstream.entities.plans import delete_plan, get_plan, list_plans, publish_plan
from meterstream.entities.subscriptions import get_subscription, list_subscriptions
from meterstream.entities.tax_objects import check_tax_codes, customer_tax_codes, set_customer_tax_codes
from meterstream.schemas.entities import PlanVersionDoc

router = APIRouter(prefix=f"{PREFIX}/api/v1", tags=[TAG])
READ = (400, *AUTH, 404)


def _invalid(exc: Invalid | Conflict) -> Response:
    return _json(validation_error({exc.field or "base": [getattr(exc, "reason", None) or str(exc)]}), 422)


def _not_found(code: str) -> Response:
    return _json(error_body(404, code), 404)


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


# --- plans ---------------------------------------------------------------------------------------------


def _plan_object(compat: LagoCompat, doc: PlanVersionDoc) -> dict[str, Any]:
    now = datetime.now(UTC)
    active = sum(
        1 for s in list_subscriptions(compat.state.sessions, doc.tenant)
        if status_of(s, now) == "active" and (s.phase_at(now) or s.phases[-1]).plan_code == doc.code
    )  # fmt: skip
    return plan_object(doc, compat.metric_info(doc.tenant), active)


def _publish(compat: LagoCompat, tenant: str, raw: Any, code: str | None = None) -> dict[str, Any]:
    if code is not None:  # an update: the fields it leaves out keep the current version's values
        current = plan_object(get_plan(compat.state.sessions, tenant, code), compat.metric_info(tenant))
        if isinstance(raw, dict):
            raw = {**_as_input(current), **raw}
    doc = plan_from_lago(raw, tenant, compat.metric(tenant), code)
    stored, _new = publish_plan(compat.state.sessions, doc)
    return _plan_object(compat, stored)


def _as_input(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan object as the body that would create it (for partial updates)."""
    charges = [{"billable_metric_id": c["lago_billable_metric_id"] or c["billable_metric_code"],
                "charge_model": c["charge_model"], "properties": c["properties"],
                "min_amount_cents": c["min_amount_cents"]} for c in plan["charges"]]  # fmt: skip
    out = {k: plan[k] for k in ("name", "interval", "amount_cents", "amount_currency", "pay_in_advance")}
    out["charges"] = charges
    if plan["minimum_commitment"]:
        out["minimum_commitment"] = {"amount_cents": plan["minimum_commitment"]["amount_cents"]}
    return out


@router.post("/plans", summary="Create a plan (a plan version of the store)",
             responses=m.answers(m.PlanOut, *WRITE), openapi_extra=m.body_schema(m.PlanInput))  # fmt: skip
async def create_plan(request: Request, principal: Admin) -> Response:
    """Publishes the plan as a version of the store (`code@version` rates usage). The same code again with
    other content publishes the next version (a Lago update); identical content changes nothing."""
    raw = await _body(request, "plan")
    try:
        return _json({"plan": await _call(_publish, _compat(request), principal.tenant, raw)})
    except (Invalid, Conflict) as exc:
        return _invalid(exc)


@router.put("/plans/{code}", summary="Update a plan (publishes a new version)",
            responses=m.answers(m.PlanOut, *WRITE, 404), openapi_extra=m.body_schema(m.PlanInput))  # fmt: skip
async def update_plan(request: Request, principal: Admin, code: str) -> Response:
    raw = await _body(request, "plan")
    try:
        return _json({"plan": await _call(_publish, _compat(request), principal.tenant, raw, code)})
    except NotFound:
        return _not_found("plan_not_found")
    except (Invalid, Conflict) as exc:
        return _invalid(exc)


@router.get("/plans", summary="List plans (their newest versions)", responses=m.answers(m.PlansOut, *AUTH))
async def list_plans_route(request: Request, principal: Read) -> Response:
    compat = _compat(request)

    def run() -> list[dict[str, Any]]:
        return [_plan_object(compat, d) for d in list_plans(compat.state.sessions, principal.tenant)]

    plans = await _call(run)
    return _json({"plans": plans, "meta": page_meta(len(plans))})


@router.get("/plans/{code}", summary="Retrieve a plan (its newest version)", responses=m.answers(m.PlanOut, *READ))
async def get_plan_route(request: Request, principal: Read, code: str) -> Response:
    compat = _compat(request)
    try:
        doc = await _call(get_plan, compat.state.sessions, principal.tenant, code)
    except NotFound:
        return _not_found("plan_not_found")
    return _json({"plan": await _call(_plan_object, compat, doc)})


@router.delete("/plans/{code}", summary="Delete a plan (refused while a subscription uses it)",
               responses=m.answers(m.PlanOut, *READ, 422))  # fmt: skip
async def delete_plan_route(request: Request, principal: Admin, code: str) -> Response:
    compat = _compat(request)
    try:
        docs = await _call(delete_plan, compat.state.sessions, principal.tenant, code)
    except NotFound:
        return _not_found("plan_not_found")
    except Conflict as exc:
        return _invalid(exc)
    return _json({"plan": plan_object(docs[-1], compat.metric_info(principal.tenant))})


# --- customers -----------------------------------------------------------------------------------------


def _upsert_customer(compat: LagoCompat, tenant: str, raw: Any) -> dict[str, Any]:
    sf = compat.state.sessions
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    stored = None
    if isinstance(external_id, str) and external_id:
        try:
            stored = get_customer_doc(sf, tenant, external_id)
        except NotFound:
            stored = None
    doc = customer_from_lago(raw, tenant, stored)
    tax_codes = tax_codes_from_lago(raw)
    if tax_codes:
        check_tax_codes(sf, tenant, tax_codes)  # before the customer is written
    saved = put_customer(sf, doc, expected_version=stored.version if stored is not None else 0)
    if tax_codes is not None:
        set_customer_tax_codes(sf, tenant, saved.external_id, tax_codes)
    return _customer_object(compat, saved)


def _customer_object(compat: LagoCompat, doc: Any) -> dict[str, Any]:
    row = compat.customers.get(doc.tenant, doc.external_id)
    taxes = customer_tax_codes(compat.state.sessions, doc.tenant, [doc.external_id]).get(doc.external_id, [])
    return customer_object(doc, row.created_at, row.updated_at, [tax_object(t) for t in taxes])


ACCOUNT_TYPES = ("customer", "partner")
CUSTOMER_TYPES = ("company", "individual")


def _codes(name: str, values: list[str] | None, size: int, what: str) -> tuple[str, ...] | None:
    """Country (2 letters) or currency (3) codes upper-cased; `Invalid` naming the parameter for another value."""
    if values is None:
        return None
    for value in values:
        if not (len(value) == size and value.isascii() and value.isalpha()):
            raise Invalid(name, f"{what} (got {value!r})")
    return tuple(v.upper() for v in values)


def _flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid(name, f"true or false (got {value!r})")
    return value == "true"


def customer_filter(request: Request, search_term: str | None, external_id: str | None, countries: list[str] | None,
                    states: list[str] | None, zipcodes: list[str] | None, currencies: list[str] | None,
                    has_tax_identification_number: str | None, tax_identification_number: str | None,
                    account_type: list[str] | None, billing_entity_codes: list[str] | None, customer_type: str | None,
                    has_customer_type: str | None) -> CustomerFilter:  # fmt: skip
    """The customer list's filter from Lago's query parameters; `Invalid` naming the bad one. Lago concepts
    Meterstream's customers do not have match as the customer objects answer them: every customer is of account
    type `customer`, has no billing entity and no `customer_type` (null)."""
    texts = {"search_term": search_term, "external_id": external_id, "tax_identification_number":
             tax_identification_number, "customer_type": customer_type}  # fmt: skip
    lists = {"countries[]": countries, "states[]": states, "zipcodes[]": zipcodes, "currencies[]": currencies,
             "account_type[]": account_type, "billing_entity_codes[]": billing_entity_codes}  # fmt: skip
    for name, value in [*texts.items(), *((n, v) for n, vs in lists.items() for v in vs or ())]:
        if value is not None and ("\x00" in value or len(value) > 256):
            raise Invalid(name, "at most 256 characters, no NUL")
    for value in account_type or ():
        if value not in ACCOUNT_TYPES:
            raise Invalid("account_type[]", f"one of {', '.join(ACCOUNT_TYPES)} (got {value!r})")
    if customer_type is not None and customer_type not in CUSTOMER_TYPES:
        raise Invalid("customer_type", f"one of {', '.join(CUSTOMER_TYPES)} (got {customer_type!r})")
    typed = _flag("has_customer_type", has_customer_type)
    metadata = []
    for name, value in request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]"):
            key = name.removeprefix("metadata[").removesuffix("]")
            if not key or len(key) > 256 or len(value) > 256 or any(c in key for c in '"\\\x00') or "\x00" in value:
                raise Invalid(name, "metadata[key]=value: a key (no quote, backslash or NUL) and its value (empty: "
                              "the key absent), at most 256 characters each")  # fmt: skip
            metadata.append((key, value))
    nothing = (
        (account_type is not None and "customer" not in account_type)  # partners do not exist here
        or billing_entity_codes is not None  # nor billing entities
        or customer_type is not None or typed is True  # nor customer types
    )  # fmt: skip
    return CustomerFilter(
        search=search_term or None, external_id=external_id, countries=_codes("countries[]", countries, 2,
        "an ISO 3166 alpha-2 country code such as FR"), states=tuple(states) if states is not None else None,
        zipcodes=tuple(zipcodes) if zipcodes is not None else None, currencies=_codes("currencies[]", currencies, 3,
        "an ISO 4217 currency code such as EUR"),
        has_tax_id=_flag("has_tax_identification_number", has_tax_identification_number),
        tax_id=tax_identification_number, metadata=tuple(metadata), nothing=nothing,
    )  # fmt: skip


@router.get("/customers", summary="List customers (Lago: findAllCustomers), oldest first",
            responses=m.answers(m.CustomersOut, *AUTH, 400, 422))  # fmt: skip
async def list_customers(
    request: Request, principal: Read, page: Annotated[int, Query(ge=1, le=2**31 - 1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
    search_term: Annotated[str | None, Query(description="in the name, external id, email or legal name")] = None,
    external_id: Annotated[str | None, Query()] = None,
    countries: Annotated[list[str] | None, Query(alias="countries[]", description="ISO 3166 alpha-2")] = None,
    states: Annotated[list[str] | None, Query(alias="states[]")] = None,
    zipcodes: Annotated[list[str] | None, Query(alias="zipcodes[]")] = None,
    currencies: Annotated[list[str] | None, Query(alias="currencies[]", description="ISO 4217")] = None,
    has_tax_identification_number: Annotated[str | None, Query(description="true or false")] = None,
    tax_identification_number: Annotated[str | None, Query()] = None,
    account_type: Annotated[list[str] | None, Query(alias="account_type[]",
                                                    description="customer or partner (none here)")] = None,
    billing_entity_codes: Annotated[list[str] | None, Query(alias="billing_entity_codes[]",
                                                            description="matches none")] = None,
    customer_type: Annotated[str | None, Query(description="company or individual: matches none")] = None,
    has_customer_type: Annotated[str | None, Query(description="true matches none")] = None,
) -> Response:  # fmt: skip
    """A page of the tenant's customers (every API's: one customer table), with Lago's paging `meta`. Filters
    (all of those given): search_term, external_id, countries[], states[], zipcodes[], currencies[],
    has_tax_identification_number, tax_identification_number, metadata[key]=value (empty value: the key absent);
    account_type[] without `customer`, billing_entity_codes[], customer_type and has_customer_type=true match none
    (docs/lago.md). A bad value: 422 naming the parameter."""
    sf = request.app.state.sessions
    try:
        where = customer_filter(request, search_term, external_id, countries, states, zipcodes, currencies,
                                has_tax_identification_number, tax_identification_number, account_type,
                                billing_entity_codes, customer_type, has_customer_type)  # fmt: skip
    except Invalid as exc:
        return _invalid(exc)

    def run() -> dict[str, Any]:
        found, total = customer_page(sf, principal.tenant, page, per_page, where)
        taxes = customer_tax_codes(sf, principal.tenant, [doc.external_id for doc, _, _ in found])
        return {"customers": [customer_object(doc, created, updated, [tax_object(t) for t in taxes.get(
                    doc.external_id, [])]) for doc, created, updated in found],
                "meta": page_of(found, total, page, per_page)}  # fmt: skip

    return _json(await _call(run))


@router.delete("/customers/{external_id}", summary="Delete a customer (refused while a subscription has not ended)",
               responses=m.answers(m.CustomerOut, *READ, 422))  # fmt: skip
async def delete_customer_route(request: Request, principal: Admin, external_id: str) -> Response:
    """Lago terminates the customer's subscriptions with it; here a subscription that has not ended refuses the
    delete (422 naming `external_id`): terminate it first (`subscriptions.destroy`)."""
    compat = _compat(request)

    def run() -> dict[str, Any]:
        body = _customer_object(compat, get_customer_doc(compat.state.sessions, principal.tenant, external_id))
        delete_customer(compat.state.sessions, principal.tenant, external_id)
        return body

    try:
        return _json({"customer": await _call(run)})
    except NotFound:
        return _not_found("customer_not_found")
    except Conflict as exc:
        return _invalid(exc)


@router.post("/customers", summary="Create or update a customer (upsert by external_id)",
             responses=m.answers(m.CustomerOut, *WRITE), openapi_extra=m.body_schema(m.CustomerInput))  # fmt: skip
async def create_customer(request: Request, principal: Admin) -> Response:
    """One customer table for every API: a Lago customer is the customer of that external id (own /v1 and
    OpenMeter see it). Fields left out keep their stored values."""
    raw = await _body(request, "customer")
    try:
        return _json({"customer": await _call(_upsert_customer, _compat(request), principal.tenant, raw)})
    except (Invalid, Conflict) as exc:
        return _invalid(exc)


@router.get("/customers/{external_id}", summary="Retrieve a customer", responses=m.answers(m.CustomerOut, *READ))
async def get_customer(request: Request, principal: Read, external_id: str) -> Response:
    compat = _compat(request)

    def run() -> dict[str, Any]:
        return _customer_object(compat, get_customer_doc(compat.state.sessions, principal.tenant, external_id))

    try:
        return _json({"customer": await _call(run)})
    except NotFound:
        return _not_found("customer_not_found")


@router.get("/customers/{external_customer_id}/current_usage",
            summary="Usage of the subscription's current billing period, priced as the close will invoice it",
            responses=m.answers(m.CustomerUsageOut, *READ, 422, 503))  # fmt: skip
async def current_usage(
    request: Request, principal: Read, external_customer_id: str,
    external_subscription_id: Annotated[str | None, Query()] = None,
) -> Response:  # fmt: skip
    """The draft invoice of the subscription's billing period containing now (the close's own pricing over
    the usage in ClickHouse), as Lago's customer usage: usage charges per billable metric."""
    if not external_subscription_id:
        return _json(validation_error({"external_subscription_id": ["required"]}), 422)
    compat = _compat(request)
    try:
        body = await _call(usage_of, compat, principal.tenant, external_customer_id, external_subscription_id)
    except LagoNotFound as exc:
        return _not_found(exc.code)
    except ClickHouseUnavailable as exc:
        raise ApiError(503, "unavailable", f"usage store unavailable: {exc}", headers={"Retry-After": "1"}) from None
    except ValueError as exc:  # the close cannot bill it (e.g. a plan it cannot resolve): said, not a 500
        return _json(validation_error({"external_subscription_id": [str(exc)]}), 422)
    return _json({"customer_usage": body})


def usage_of(compat: LagoCompat, tenant: str, customer: str, subscription: str) -> dict[str, Any]:
    """Lago's customer usage of one subscription now (LagoNotFound for an unknown customer/subscription)."""
    sf = compat.state.sessions
    doc, _ = customer_subscription(sf, tenant, customer, subscription)
    queries = compat.state.queries
    invoice = compat.draft_usage(queries.client(), queries.db, sf, tenant, subscription, datetime.now(UTC))
    return usage_object(invoice, tenant, compat.metric_info(tenant), charge_models(sf, tenant), doc.timezone)


def charge_models(sf: Any, tenant: str) -> Callable[[str, str], str | None]:
    """(plan rating id `code@version`, meter) -> the Lago charge model of the stored plan version pricing it
    (None: not a stored plan, or it does not price the meter); plan versions read once each."""
    plans: dict[str, PlanVersionDoc | None] = {}

    def charge_model(rating_id: str, meter: str) -> str | None:
        if rating_id not in plans:
            code, _, version = rating_id.partition("@")
            try:
                plans[rating_id] = get_plan(sf, tenant, code, int(version)) if version.isdigit() else None
            except NotFound:
                plans[rating_id] = None
        plan = plans[rating_id]
        shape = charge_from_price(plan.usage[meter]) if plan is not None and meter in plan.usage else None
        return shape[0] if shape else None

    return charge_model


def customer_subscription(sf: Any, tenant: str, customer: str, subscription: str) -> Any:
    """The customer's stored customer document and subscription; LagoNotFound naming which is unknown."""
    try:
        doc = get_customer_doc(sf, tenant, customer)
    except NotFound:
        raise LagoNotFound("customer_not_found", f"customer {customer!r} not found") from None
    try:
        sub = get_subscription(sf, tenant, subscription)
    except NotFound:
        sub = None
    if sub is None or sub.customer != customer:
        raise LagoNotFound("subscription_not_found", f"subscription {subscription!r} not found")
    return doc, sub


# --- subscriptions -------------------------------------------------------------------------------------


@router.post("/subscriptions", summary="Create a subscription (with a plan_code: on the store's plan)",
             responses=m.answers(m.LagoSubscriptionOut, *WRITE, 404),
             openapi_extra=m.body_schema(m.SubscriptionCreateInput))  # fmt: skip
async def create_subscription_route(request: Request, principal: Admin) -> Response:
    """With `plan_code`: a subscription of the store on that plan's newest version (the customer is created
    if unknown, as Lago does); the same external_id on another plan changes the plan from now on. Without
    `plan_code`: only external_id -> external_customer_id is recorded (events priced by the catalog file)."""
    raw = await _body(request, "subscription")
    try:
        obj = await _call(_compat(request).lago_subscriptions.create, principal.tenant, raw)
    except LagoNotFound as exc:
        return _not_found(exc.code)
    except (Invalid, Conflict) as exc:
        return _invalid(exc)
    return _json({"subscription": obj})


@router.get("/subscriptions", summary="List subscriptions", responses=m.answers(m.LagoSubscriptionsOut, 400, *AUTH))
async def list_subscriptions_route(
    request: Request, principal: Read,
    external_customer_id: Annotated[str | None, Query()] = None,
    plan_code: Annotated[str | None, Query()] = None,
    status: Annotated[list[str] | None, Query(alias="status[]")] = None,
    status_plain: Annotated[list[str] | None, Query(alias="status")] = None,
) -> Response:  # fmt: skip
    """Lago's filters: external_customer_id, plan_code, status[] (active, pending, canceled, terminated;
    default: active)."""
    wanted = tuple((status or []) + (status_plain or [])) or ("active",)
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        return _json(validation_error({"status": [f"one of {', '.join(STATUSES)} (got {bad[0]!r})"]}), 422)
    subs = await _call(_compat(request).lago_subscriptions.list, principal.tenant, customer=external_customer_id,
                       plan_code=plan_code, statuses=wanted)  # fmt: skip
    return _json({"subscriptions": subs, "meta": page_meta(len(subs))})


@router.get("/subscriptions/{external_id}", summary="Retrieve a subscription",
            responses=m.answers(m.LagoSubscriptionOut, *READ))  # fmt: skip
async def get_subscription_route(request: Request, principal: Read, external_id: str) -> Response:
    try:
        return _json({"subscription": await _call(_compat(request).lago_subscriptions.find, principal.tenant,
                                                  external_id)})  # fmt: skip
    except LagoNotFound as exc:
        return _not_found(exc.code)


@router.get("/subscriptions/{external_id}/lifetime_usage",
            summary="The subscription's usage since it started, invoiced and current (Lago: lifetime usage)",
            responses=m.answers(LifetimeUsageOut, *READ, 422, 503))  # fmt: skip
async def lifetime_usage_route(request: Request, principal: Read, external_id: str) -> Response:
    """The usage fees of the subscription's issued invoices plus its current usage; no thresholds (no progressive
    billing here). See api/compat/lago/lifetime_usage.py."""
    compat = _compat(request)

    def run() -> dict[str, Any]:
        now = datetime.now(UTC)
        found = compat.lago_subscriptions.find(principal.tenant, external_id, now)

        def current(customer: str, subscription: str) -> dict[str, Any]:
            return usage_of(compat, principal.tenant, customer, subscription)

        return lifetime_usage(compat.state.sessions, principal.tenant, found, current, now)

    try:
        return _json({"lifetime_usage": await _call(run)})
    except LagoNotFound as exc:
        return _not_found(exc.code)
    except ClickHouseUnavailable as exc:
        raise ApiError(503, "unavailable", f"usage store unavailable: {exc}", headers={"Retry-After": "1"}) from None
    except ValueError as exc:  # the close cannot price its current period (as current_usage): said, not a 500
        return _json(validation_error({"external_id": [str(exc)]}), 422)


@router.put("/subscriptions/{external_id}", summary="Update a subscription: name, ending_at, subscription_at",
            responses=m.answers(m.LagoSubscriptionOut, *WRITE, 404),
            openapi_extra=m.body_schema(m.SubscriptionUpdateInput))  # fmt: skip
async def update_subscription_route(request: Request, principal: Admin, external_id: str) -> Response:
    """Lago's `subscriptions.update`: only the fields sent change (`ending_at` null: it runs on until terminated;
    `subscription_at` only before it starts); a time inside an invoiced period is refused (422)."""
    raw = await _body(request, "subscription")
    try:
        obj = await _call(_compat(request).lago_subscriptions.update, principal.tenant, external_id, raw)
    except LagoNotFound as exc:
        return _not_found(exc.code)
    except (Invalid, Conflict) as exc:
        return _invalid(exc)
    return _json({"subscription": obj})


@router.delete("/subscriptions/{external_id}", summary="Terminate a subscription now",
               responses=m.answers(m.LagoSubscriptionOut, *READ, 422, 503))  # fmt: skip
async def terminate_subscription(request: Request, principal: Admin, external_id: str) -> Response:
    try:
        obj = await _call(_compat(request).lago_subscriptions.terminate, principal.tenant, external_id)
    except LagoNotFound as exc:
        return _not_found(exc.code)
    except (Invalid, Conflict) as exc:
        return _invalid(exc)
    return _json({"subscription": obj})
