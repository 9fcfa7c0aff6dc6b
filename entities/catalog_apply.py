"""`meterstream catalog apply FILE`: bring the entity store to what a catalog file says, idempotently.

Like `kubectl apply`: the file states the desired customers, plans and subscriptions; applying it creates
what is missing, publishes a new plan version where a plan changed (and moves the file's subscriptions on
that plan to it from now on), and leaves the rest alone, so a second apply of the same file changes
nothing and says so. Nothing is deleted: an entity left out of the file stays as it is.

Two formats, also mixed in one file (docs/catalog.md):
- today's catalog (rating/catalog.py: `plans` with `id`, `currency`, `meters`/`telecom`; `assignments`
  tenant/customer/plan). Each plan is published for every tenant with an assignment to it (plans are per
  tenant in the store); each assignment becomes a customer (when missing; its details are left to the
  API) and a subscription `catalog-<customer>` from 1970-01-01T00:00:00Z on the plan's newest version
  (`customer: "*"`: the tenant's default subscription, `catalog-*`).
- the extended format: a top-level `tenant`, `customers` (billing details), plans with `code`, `usage`,
  `fixed`, `one_time`, `installments`, `minimum_commitment`, `addon`, and `subscriptions` with `start`,
  `end`, `billing_anchor`, `trial_end`, overrides and add-ons.

The whole file is validated first (every error names the file's field path, e.g.
`plans[0].usage.calls.tiers[1].up_to: ...`); only a valid file writes anything. Each entity is then written
in its own transaction by the store's functions (entities/customers.py, plans.py, subscriptions.py), which
put every change on the outbox.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from sqlalchemy.orm import sessionmaker

from meterstream.entities import customers, finalization, plans, subscriptions
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.plan_rules import validate_customer, validate_plan
from meterstream.rating.catalog import CatalogError, parse_catalog
from meterstream.schemas.entities import (
    CustomerDoc,
    FixedCharge,
    InstallmentCharge,
    OneTimeCharge,
    Phase,
    PlanVersionDoc,
    SubscriptionDoc,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ASSIGNMENT_PREFIX = "catalog-"
Outcome = Literal["created", "changed", "unchanged"]

_LEGACY_TOP = {"plans", "assignments", "version"}
_LEGACY_PLAN = {"id", "name", "currency", "meters", "telecom"}
_TOP = _LEGACY_TOP | {"tenant", "customers", "subscriptions"}
_PLAN = _LEGACY_PLAN | {"code", "usage", "interval", "fixed", "one_time", "installments", "minimum_commitment",
                        "addon", "tenant"}  # fmt: skip
_CUSTOMER = set(CustomerDoc.__struct_fields__) - {"version", "deleted"}
_SUBSCRIPTION = {"tenant", "external_id", "customer", "plan", "plan_version", "start", "end", "billing_anchor",
                 "trial_end", "name", "usage_overrides", "fixed_overrides", "addons"}  # fmt: skip


class CatalogApplyError(CatalogError):
    """The file cannot be applied; the message names the field path in the file and the reason."""


@dataclass(frozen=True)
class Change:
    kind: Literal["customer", "plan", "subscription"]
    name: str  # tenant/id (plans: tenant/code@version)
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name} {self.outcome}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ApplyResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.changes if c.outcome == outcome)

    def summary(self) -> str:
        """E.g. `2 created, 1 changed, 3 unchanged`; zero counts left out (`3 unchanged` = nothing was written)."""
        parts = [f"{self.count(o)} {o}" for o in ("created", "changed", "unchanged") if self.count(o)]
        return ", ".join(parts) or "nothing to apply"


@dataclass(frozen=True)
class DesiredSubscription:
    where: str
    tenant: str
    external_id: str
    customer: str
    plan: str
    plan_version: int | None  # None: the plan's newest version
    start: datetime
    end: datetime | None = None
    billing_anchor: Literal["calendar", "anniversary"] = "calendar"
    trial_end: datetime | None = None
    name: str | None = None
    usage_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed_overrides: dict[str, Any] = field(default_factory=dict)
    addons: tuple[str, ...] = ()


@dataclass
class Desired:
    """What a catalog file asks for, validated, before anything is written."""

    customers: list[tuple[str, CustomerDoc]] = field(default_factory=list)
    implicit_customers: list[tuple[str, str, str]] = field(default_factory=list)  # (where, tenant, id)
    plans: list[tuple[str, PlanVersionDoc]] = field(default_factory=list)
    subscriptions: list[DesiredSubscription] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- reading and validating the file (pure, apart from telecom files the catalog refers to) ----------


def load_document(path: Path | str) -> Any:
    """The parsed YAML or JSON document of a catalog file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogApplyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CatalogApplyError(f"{path}: not valid YAML/JSON ({exc})") from None


def _fail(where: str, reason: str) -> CatalogApplyError:
    return CatalogApplyError(f"{where}: {reason}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, "must be a list")
    return value


def _known(raw: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = set(raw) - set(allowed)
    if extra:
        raise _fail(f"{where}.{sorted(extra)[0]}", "unknown field")


def _no_float(value: Any, where: str) -> Any:
    if isinstance(value, float):
        raise _fail(where, f'write amounts as quoted decimal strings ("{value}"): a float is not exact')
    return value


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(where, f"an RFC 3339 time such as 2026-01-01T00:00:00Z (got {value!r})") from None
    else:
        raise _fail(where, f"an RFC 3339 time such as 2026-01-01T00:00:00Z (got {value!r})")
    if moment.tzinfo is None:
        raise _fail(where, "needs an offset (Z or +hh:mm)")
    return moment.astimezone(UTC)


def _convert(raw: Any, typ: type, where: str) -> Any:
    try:
        return msgspec.convert(raw, typ)
    except msgspec.ValidationError as exc:
        message = str(exc)
        reason, _, at = message.partition(" - at `$")
        path = at.rstrip("`")
        raise _fail(f"{where}{path}", reason) from None


def _store_error(where: str, exc: Exception) -> CatalogApplyError:
    field_name = getattr(exc, "field", None)
    if isinstance(exc, Invalid) and field_name:
        return _fail(f"{where}.{field_name}", exc.reason)
    return _fail(where, str(exc).strip("'\""))


def _telecom(spec: Any, currency: str, where: str, base_dir: Path | None) -> dict[str, Any]:
    """A telecom section inlined and canonical (csv/file references resolved): the store keeps no paths."""
    from meterstream.rating.catalog import _parse_telecom

    plan = _parse_telecom(spec, currency, where, base_dir)
    return plan.model_dump(mode="json", exclude={"currency"})


def _tenant_of(raw: dict[str, Any], default: str | None, where: str) -> str:
    tenant = raw.get("tenant", default)
    if not isinstance(tenant, str) or not tenant:
        raise _fail(f"{where}.tenant", "required (here, as the file's top-level `tenant`, or one --tenant)")
    return tenant


def read_catalog(data: Any, *, base_dir: Path | None = None, tenants: Iterable[str] = ()) -> Desired:
    """Validate a catalog document and return what it asks for. `tenants` (the CLI's --tenant): apply only
    these tenants' entities; with exactly one, it is also the tenant of entities that name none."""
    only = set(tenants)
    data = _mapping(data, "$")
    _known(data, _TOP, "$")
    legacy = set(data) <= _LEGACY_TOP and all(isinstance(p, dict) and set(p) <= _LEGACY_PLAN
                                              for p in _list(data.get("plans"), "plans"))  # fmt: skip
    if legacy:
        try:
            parse_catalog(data, base_dir=base_dir)  # today's format: today's validation and messages
        except CatalogApplyError:
            raise
        except CatalogError as exc:
            raise CatalogApplyError(str(exc)) from None
    default = data.get("tenant")
    if default is None and len(only) == 1:
        default = next(iter(only))
    desired = Desired()
    wanted = (lambda t: t in only) if only else (lambda t: True)

    customer_ids: set[tuple[str, str]] = set()
    for i, raw in enumerate(_list(data.get("customers"), "customers")):
        where = f"customers[{i}]"
        raw = _mapping(raw, where)
        _known(raw, _CUSTOMER, where)
        tenant = _tenant_of(raw, default, where)
        doc = _convert({**raw, "tenant": tenant, "version": 0}, CustomerDoc, where)
        try:
            validate_customer(doc)
        except Invalid as exc:
            raise _store_error(where, exc) from None
        if (tenant, doc.external_id) in customer_ids:
            raise _fail(f"{where}.external_id", f"customer {doc.external_id!r} appears twice")
        customer_ids.add((tenant, doc.external_id))
        if wanted(tenant):
            desired.customers.append((where, doc))

    subs: list[DesiredSubscription] = []
    for i, raw in enumerate(_list(data.get("assignments"), "assignments")):
        where = f"assignments[{i}]"
        raw = _mapping(raw, where)
        _known(raw, {"tenant", "customer", "plan"}, where)
        for key in ("tenant", "customer", "plan"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise _fail(f"{where}.{key}", "required, a non-empty string")
        tenant, customer = raw["tenant"], raw["customer"]
        subs.append(
            DesiredSubscription(where, tenant, ASSIGNMENT_PREFIX + customer, customer, raw["plan"], None, EPOCH)
        )
        if customer != "*" and (tenant, customer) not in customer_ids:
            customer_ids.add((tenant, customer))
            if wanted(tenant):
                desired.implicit_customers.append((where, tenant, customer))
    for i, raw in enumerate(_list(data.get("subscriptions"), "subscriptions")):
        where = f"subscriptions[{i}]"
        raw = _mapping(raw, where)
        _known(raw, _SUBSCRIPTION, where)
        for key in ("external_id", "customer", "plan"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise _fail(f"{where}.{key}", "required, a non-empty string")
        version = raw.get("plan_version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise _fail(f"{where}.plan_version", f"a version number >= 1 (got {version!r})")
        anchor = raw.get("billing_anchor", "calendar")
        if anchor not in ("calendar", "anniversary"):
            raise _fail(f"{where}.billing_anchor", f"calendar or anniversary (got {anchor!r})")
        overrides = _mapping(raw.get("fixed_overrides") or {}, f"{where}.fixed_overrides")
        for code, amount in overrides.items():
            _no_float(amount, f"{where}.fixed_overrides.{code}")
        subs.append(DesiredSubscription(
            where, _tenant_of(raw, default, where), raw["external_id"], raw["customer"], raw["plan"], version,
            _time(raw.get("start"), f"{where}.start") or EPOCH, _time(raw.get("end"), f"{where}.end"), anchor,
            _time(raw.get("trial_end"), f"{where}.trial_end"), raw.get("name"),
            dict(_mapping(raw.get("usage_overrides") or {}, f"{where}.usage_overrides")), dict(overrides),
            tuple(_list(raw.get("addons"), f"{where}.addons")),
        ))  # fmt: skip
    seen: dict[tuple[str, str], str] = {}
    for sub in subs:
        if (sub.tenant, sub.external_id) in seen:
            raise _fail(
                sub.where, f"subscription {sub.external_id!r} is also defined at {seen[sub.tenant, sub.external_id]}"
            )
        seen[sub.tenant, sub.external_id] = sub.where

    plan_codes: set[str] = set()
    for i, raw in enumerate(_list(data.get("plans"), "plans")):
        where = f"plans[{i}]"
        raw = _mapping(raw, where)
        _known(raw, _PLAN, where)
        if "id" in raw and "code" in raw:
            raise _fail(f"{where}.code", "give `code` or `id` (today's catalog), not both")
        if "meters" in raw and "usage" in raw:
            raise _fail(f"{where}.usage", "give `usage` or `meters` (today's catalog), not both")
        code = raw.get("code", raw.get("id"))
        if not isinstance(code, str) or not code:
            raise _fail(f"{where}.code", "required, a non-empty string")
        if code in plan_codes:
            raise _fail(f"{where}.code", f"duplicate plan {code!r}")
        plan_codes.add(code)
        currency = raw.get("currency")
        if not isinstance(currency, str):
            raise _fail(f"{where}.currency", "required, an ISO 4217 code")
        usage_field = "meters" if "meters" in raw else "usage"
        usage = dict(_mapping(raw.get(usage_field) or {}, f"{where}.{usage_field}"))
        telecom = None
        if raw.get("telecom") is not None:
            try:
                telecom = _telecom(raw["telecom"], currency, where, base_dir)
            except CatalogError as exc:
                raise CatalogApplyError(str(exc)) from None
        money: dict[str, Any] = {}
        for section, amount_key in (("fixed", "amount"), ("one_time", "amount"), ("installments", "total")):
            items = _list(raw.get(section), f"{where}.{section}")
            for j, item in enumerate(items):
                _no_float(
                    _mapping(item, f"{where}.{section}[{j}]").get(amount_key), f"{where}.{section}[{j}].{amount_key}"
                )
            money[section] = items
        minimum_where = f"{where}.minimum_commitment"
        _no_float(raw.get("minimum_commitment"), minimum_where)
        explicit = raw.get("tenant", data.get("tenant"))
        plan_tenants = {s.tenant for s in subs if s.plan == code} | ({explicit} if explicit else set())
        if not plan_tenants and default:
            plan_tenants = {default}
        if not plan_tenants:
            desired.warnings.append(f"{where} ({code}): no tenant uses it; not published (give `tenant` or --tenant)")
        for tenant in sorted(t for t in plan_tenants if wanted(t)):
            doc = PlanVersionDoc(
                tenant=tenant, code=code, version=0, name=raw.get("name", code), currency=currency,
                interval=raw.get("interval", "monthly"), usage=usage, telecom=telecom,
                fixed=_convert(money["fixed"], list[FixedCharge], f"{where}.fixed"),
                one_time=_convert(money["one_time"], list[OneTimeCharge], f"{where}.one_time"),
                installments=_convert(money["installments"], list[InstallmentCharge], f"{where}.installments"),
                minimum_commitment=_convert(raw.get("minimum_commitment"), Decimal | None, minimum_where),
                addon=raw.get("addon", False),
            )  # fmt: skip
            try:
                validate_plan(doc)
            except Invalid as exc:
                field_name = exc.field.replace("usage.", f"{usage_field}.", 1) if exc.field else exc.field
                raise _fail(f"{where}.{field_name}" if field_name else where, exc.reason) from None
            desired.plans.append((where, doc))
    desired.subscriptions = [s for s in subs if wanted(s.tenant)]
    return desired


# --- applying (each entity its own transaction, through the store's functions) -----------------------


def _apply_customer(sf: sessionmaker, where: str, doc: CustomerDoc) -> Change:
    name = f"{doc.tenant}/{doc.external_id}"
    try:
        before = customers.get_customer_doc(sf, doc.tenant, doc.external_id)
    except NotFound:
        before = None
    try:
        stored = customers.put_customer(sf, doc)
    except (Invalid, Conflict) as exc:
        raise _store_error(where, exc) from None
    if before is None:
        return Change("customer", name, "created")
    return Change("customer", name, "unchanged" if stored.version == before.version else "changed",
                  "" if stored.version == before.version else f"version {stored.version}")  # fmt: skip


def _apply_implicit_customer(sf: sessionmaker, where: str, tenant: str, external_id: str) -> Change:
    """An assignment's customer: created when missing (named by its id), else left as the API keeps it."""
    name = f"{tenant}/{external_id}"
    try:
        customers.get_customer_doc(sf, tenant, external_id)
        return Change("customer", name, "unchanged")
    except NotFound:
        pass
    try:
        customers.put_customer(sf, CustomerDoc(tenant=tenant, external_id=external_id, name=external_id, version=0))
    except (Invalid, Conflict) as exc:
        raise _store_error(f"{where}.customer", exc) from None
    return Change("customer", name, "created")


def _apply_plan(sf: sessionmaker, where: str, doc: PlanVersionDoc) -> tuple[Change, PlanVersionDoc]:
    try:
        stored, published = plans.publish_plan(sf, doc)
    except (Invalid, Conflict) as exc:
        raise _store_error(where, exc) from None
    name = f"{doc.tenant}/{stored.rating_id}"
    if not published:
        return Change("plan", name, "unchanged"), stored
    if stored.version == 1:
        return Change("plan", name, "created"), stored
    return Change("plan", name, "changed", f"new version {stored.version}"), stored


def _phase_now(sub: SubscriptionDoc, now: datetime) -> Phase | None:
    """The phase in effect now; for a subscription that has not started yet, its first phase."""
    phase = sub.phase_at(now)
    if phase is None and sub.phases and sub.phases[0].start > now:
        phase = sub.phases[0]
    return phase


def _apply_subscription(
    sf: sessionmaker,
    want: DesiredSubscription,
    newest: dict[tuple[str, str], int],
    now: datetime,
    result: ApplyResult,
    closed: Callable[[], str | None],
) -> Change:
    name = f"{want.tenant}/{want.external_id}"
    version = want.plan_version
    if version is None:
        version = newest.get((want.tenant, want.plan))
        if version is None:
            try:
                version = plans.get_plan(sf, want.tenant, want.plan).version
            except NotFound:
                raise _fail(f"{want.where}.plan", f"no plan {want.plan!r} in this file nor in the store") from None
    try:
        current = subscriptions.get_subscription(sf, want.tenant, want.external_id)
    except NotFound:
        current = None
    try:
        if current is None:
            start = want.start
            # the end of the newest month closed for every customer, in the customer's time zone, if `start` lies
            # before it: the store refuses a start before it as before its own per-customer boundary
            closed_end = finalization.closed_month_end(sf, want.tenant, want.customer, start, closed, now)
            floor = _later(finalization.finalized_until(sf, want.tenant, want.customer), closed_end)
            if start == EPOCH and floor is not None and floor > start:
                # no start in the file: from the end of the invoiced periods on (invoiced usage is not repriced)
                start = floor
                result.warnings.append(f"{want.where}: {name} starts at {floor.isoformat()}, the end of the "
                                       f"customer's invoiced (finalized) periods")  # fmt: skip
            phase = Phase(plan_code=want.plan, plan_version=version, start=start, end=want.end,
                          usage_overrides=want.usage_overrides, fixed_overrides=want.fixed_overrides,
                          addons=list(want.addons))  # fmt: skip
            doc = SubscriptionDoc(
                tenant=want.tenant, external_id=want.external_id, customer=want.customer, phases=[phase], version=0,
                billing_anchor=want.billing_anchor, trial_end=want.trial_end, name=want.name,
                status="pending" if start > now else "active",
            )  # fmt: skip
            doc = _convert(msgspec.to_builtins(doc), SubscriptionDoc, want.where)  # overrides' decimals checked
            subscriptions.create_subscription(sf, doc, finalized_until=closed_end)
            return Change("subscription", name, "created", f"{want.plan}@{version}")
        if current.customer != want.customer:
            raise _fail(f"{want.where}.customer", f"subscription {want.external_id!r} belongs to {current.customer!r}")
        phase = _phase_now(current, now)
        if phase is None:
            result.warnings.append(f"{want.where}: subscription {name} has ended (canceled?); left as it is")
            return Change("subscription", name, "unchanged", "ended")
        if (phase.plan_code, phase.plan_version) == (want.plan, version):
            # no start in the file and another in the store: it started where invoicing ended when it was created
            shifted = want.start == EPOCH != current.phases[0].start and current.phases[0].start <= (
                _later(
                    finalization.finalized_until(sf, want.tenant, want.customer),
                    finalization.closed_month_end(sf, want.tenant, want.customer, EPOCH, closed, now),
                )
                or EPOCH
            )
            differs = [k for k, have, wanted in (
                ("start", current.phases[0].start, want.start), ("billing_anchor", current.billing_anchor,
                want.billing_anchor), ("trial_end", current.trial_end, want.trial_end))
                if have != wanted and not (k == "start" and shifted)]  # fmt: skip
            if differs:
                result.warnings.append(f"{want.where}: {', '.join(differs)} of the existing subscription {name} "
                                       "differ from the file; apply changes only its plan (use the API)")  # fmt: skip
            return Change("subscription", name, "unchanged")
        at = max(now, phase.start)
        subscriptions.change_plan(sf, want.tenant, want.external_id, want.plan, at, plan_version=version)
        moved = f"{phase.plan_code}@{phase.plan_version} -> {want.plan}@{version} from {at.isoformat()}"
        return Change("subscription", name, "changed", moved)
    except Invalid as exc:
        # the store names the subscription's fields; the file names `start` (the first phase's) and `plan`
        # (a change of plan at `at`)
        renamed = {"phases[0].start": "start", "at": "plan"}.get(exc.field, exc.field)
        raise _store_error(want.where, Invalid(renamed, exc.reason)) from None
    except (Conflict, NotFound) as exc:
        raise _store_error(want.where, exc) from None


def _check_plans_against_store(sf: sessionmaker, desired: Desired) -> None:
    """`publish_plan`'s check of the tenant's meter definitions (`plans.check_usage_meters`), for every plan of the
    file, and the subscription store's for the usage overrides of every subscription the file creates, before
    anything is written; the same errors, at their field paths."""
    with sf() as s:
        for where, doc in desired.plans:
            try:
                plans.check_usage_meters(s, doc.tenant, doc.usage)
            except Invalid as exc:
                raise _store_error(where, exc) from None
        for want in desired.subscriptions:
            try:  # only a subscription the file creates gets its overrides written (`_apply_subscription`)
                subscriptions.get_subscription(sf, want.tenant, want.external_id)
                continue
            except NotFound:
                pass
            try:
                plans.check_usage_meters(s, want.tenant, want.usage_overrides, "usage_overrides")
            except Invalid as exc:
                raise _store_error(want.where, exc) from None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def apply_desired(
    sf: sessionmaker,
    desired: Desired,
    *,
    now: datetime | None = None,
    newest_closed: Callable[[], str | None] | None = None,
) -> ApplyResult:
    """Write what `read_catalog` validated: customers, plans, then subscriptions. What the store would refuse of a
    plan because of the meters it finds there (a usage price on a meter that is not a sum, entities/priceable.py)
    is checked first, so that such a file writes nothing, as an invalid one does. `newest_closed()` reads the newest
    month closed for every customer ("2026-11", or None; ClickHouse's `period_closes`: the CLI reads it, at most
    once, and only for a subscription created with a start before its customer's current month): a subscription
    the file creates does not start inside it (entities/finalization.py `closed_month_end`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    closed = functools.cache(newest_closed or (lambda: None))  # read at most once
    _check_plans_against_store(sf, desired)
    result = ApplyResult(warnings=list(desired.warnings))
    for where, doc in desired.customers:
        result.changes.append(_apply_customer(sf, where, doc))
    for where, tenant, external_id in desired.implicit_customers:
        result.changes.append(_apply_implicit_customer(sf, where, tenant, external_id))
    newest: dict[tuple[str, str], int] = {}
    for where, doc in desired.plans:
        change, stored = _apply_plan(sf, where, doc)
        newest[doc.tenant, doc.code] = stored.version
        result.changes.append(change)
    for want in desired.subscriptions:
        result.changes.append(_apply_subscription(sf, want, newest, now, result, closed))
    return result


def apply_catalog(
    sf: sessionmaker,
    data: Any,
    *,
    base_dir: Path | None = None,
    tenants: Iterable[str] = (),
    now: datetime | None = None,
    newest_closed: Callable[[], str | None] | None = None,
) -> ApplyResult:
    """Validate a catalog document, then apply it (see the module's docstring)."""
    desired = read_catalog(data, base_dir=base_dir, tenants=tenants)
    return apply_desired(sf, desired, now=now, newest_closed=newest_closed)


def apply_file(
    sf: sessionmaker,
    path: Path | str,
    *,
    tenants: Iterable[str] = (),
    now: datetime | None = None,
    newest_closed: Callable[[], str | None] | None = None,
) -> ApplyResult:
    path = Path(path)
    return apply_catalog(
        sf, load_document(path), base_dir=path.parent, tenants=tenants, now=now, newest_closed=newest_closed
    )


__all__ = [
    "EPOCH",
    "ApplyResult",
    "CatalogApplyError",
    "Change",
    "Desired",
    "DesiredSubscription",
    "apply_catalog",
    "apply_desired",
    "apply_file",
    "load_document",
    "read_catalog",
]
