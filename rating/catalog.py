"""Catalog v1: plans (one currency each, a price per meter) and which customer is on which plan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names the field path and the reason."""


@dataclass(frozen=True)
class Plan:
    id: str
    currency: str
    prices: dict[str, Any]  # meter -> rating.Price (parsed once, reused on every event)
    telecom: Any | None = None  # rating.telecom.TelecomPlan when the plan rates CDRs
    telecom_meters: frozenset[str] = frozenset()
    name: str = ""

    def rates(self, meter: str) -> bool:
        return meter in self.prices or meter in self.telecom_meters


class PlanSource(Protocol):
    """What the stream processor asks for a plan: a file `Catalog`, or the live entities' `CatalogView`
    (processor/live_catalog.py) that falls back to one."""

    def plan_for(self, tenant: str, customer: str, meter: str | None = None, at: Any = None) -> Plan | None: ...

    def no_plan_reason(self, tenant: str, customer: str, at: Any = None) -> str: ...

    def timed(self, tenant: str, customer: str) -> bool: ...

    def period_for(self, tenant: str, customer: str, meter: str, at: Any) -> str | None: ...


@dataclass(frozen=True)
class Catalog:
    plans: dict[str, Plan]
    assignments: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, customer|"*") -> plan

    def plan_for(self, tenant: str, customer: str, meter: str | None = None, at: Any = None) -> Plan | None:
        """The customer's own assignment, else the tenant's default (`customer: "*"`), else None.

        `meter` and `at` (the event's time) are what the live catalog (processor/live_catalog.py) needs to
        pick a subscription phase; a file catalog's assignments hold at every time for every meter.
        """
        plan_id = self.assignments.get((tenant, customer)) or self.assignments.get((tenant, "*"))
        return self.plans.get(plan_id) if plan_id else None

    def no_plan_reason(self, tenant: str, customer: str, at: Any = None) -> str:
        """The dead-letter reason when `plan_for` has no plan for the customer."""
        return f"no plan for customer {tenant}/{customer}"

    def period_for(self, tenant: str, customer: str, meter: str, at: Any) -> str | None:
        """The billing period usage is totalled in, when not the event's UTC calendar month (None: it is,
        always, in a file catalog; live subscriptions have their own periods, processor/live_catalog.py)."""
        return None

    def timed(self, tenant: str, customer: str) -> bool:
        """Whether the customer's plan depends on the event's time (never, in a file catalog)."""
        return False


def load_catalog(path: Path | str) -> Catalog:
    """Read a YAML or JSON catalog file; relative telecom CSV folders resolve against its directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: not valid YAML/JSON ({exc})") from None
    return parse_catalog(data, base_dir=path.parent)


def parse_catalog(data: Any, base_dir: Path | None = None) -> Catalog:
    """Validate a catalog document; every error names the field path (e.g. `plans[1].meters.sms`)."""
    if not isinstance(data, dict):
        raise CatalogError("$: must be a mapping with `plans` and `assignments`")
    unknown = set(data) - {"plans", "assignments", "version"}
    if unknown:
        raise CatalogError(f"{sorted(unknown)[0]}: unknown field")
    raw_plans = data.get("plans")
    if not isinstance(raw_plans, list) or not raw_plans:
        raise CatalogError("plans: must be a non-empty list")
    plans: dict[str, Plan] = {}
    for i, raw in enumerate(raw_plans):
        where = f"plans[{i}]"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: must be a mapping")
        extra = set(raw) - {"id", "name", "currency", "meters", "telecom"}
        if extra:
            raise CatalogError(f"{where}.{sorted(extra)[0]}: unknown field")
        plan_id = raw.get("id")
        if not isinstance(plan_id, str) or not plan_id:
            raise CatalogError(f"{where}.id: required, a non-empty string")
        if plan_id in plans:
            raise CatalogError(f"{where}.id: duplicate plan id {plan_id!r}")
        currency = raw.get("currency")
        if not isinstance(currency, str):
            raise CatalogError(f"{where}.currency: required, an ISO 4217 code")
        meters = raw.get("meters") or {}
        if not isinstance(meters, dict):
            raise CatalogError(f"{where}.meters: must map meter names to prices")
        plans[plan_id] = build_plan(
            plan_id, currency, meters, raw.get("telecom"), name=raw.get("name", plan_id), where=where, base_dir=base_dir
        )
    assignments: dict[tuple[str, str], str] = {}
    for i, raw in enumerate(data.get("assignments") or []):
        where = f"assignments[{i}]"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: must be a mapping with tenant, customer, plan")
        for key in ("tenant", "customer", "plan"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise CatalogError(f"{where}.{key}: required, a non-empty string")
        if raw["plan"] not in plans:
            raise CatalogError(f"{where}.plan: unknown plan {raw['plan']!r}")
        slot = (raw["tenant"], raw["customer"])
        if slot in assignments:
            raise CatalogError(f"{where}: {slot[0]}/{slot[1]} is assigned twice")
        assignments[slot] = raw["plan"]
    return Catalog(plans, assignments)


def build_plan(
    plan_id: str,
    currency: str,
    meters: dict[str, Any],
    telecom: Any = None,
    *,
    name: str | None = None,
    where: str = "$",
    meters_field: str = "meters",
    base_dir: Path | None = None,
) -> Plan:
    """One plan from its prices (meter -> canonical price) and optional telecom section: the parsing the file
    catalog and the live catalog (processor/live_catalog.py) share. Errors name `<where>.<meters_field>.<meter>...`
    or `<where>.telecom...`."""
    from meterstream.rating import PriceError, parse_price

    prices = {}
    for meter, spec in meters.items():
        try:
            prices[meter] = parse_price(spec, currency=currency)
        except PriceError as exc:
            raise CatalogError(f"{where}.{meters_field}.{meter}.{exc}") from None
    telecom_plan, telecom_meters = None, frozenset()
    if telecom is not None:
        telecom_plan = _parse_telecom(telecom, currency, where, base_dir)
        telecom_meters = frozenset(telecom_plan.meters)
        clash = telecom_meters & set(prices)
        if clash:
            raise CatalogError(f"{where}.{meters_field}.{sorted(clash)[0]}: also rated by the telecom section")
    if not prices and telecom_plan is None:
        raise CatalogError(f"{where}.{meters_field}: a plan must price at least one meter")
    return Plan(plan_id, currency, prices, telecom_plan, telecom_meters, plan_id if name is None else name)


def _parse_telecom(spec: Any, currency: str, where: str, base_dir: Path | None) -> Any:
    """The plan's `telecom:` section (inline, `file:` or `csv:`); `where` is the plan's path. Errors name
    `<where>.telecom...` (CSV files' paths are put under it), e.g. `plans[0].telecom.sessions.max_cost[0].band`."""
    from meterstream.rating.telecom import TelecomCatalogError, load_telecom_csv, parse_telecom_plan

    try:
        if isinstance(spec, dict) and set(spec) in ({"csv"}, {"file"}):
            ref = Path(spec.get("csv") or spec["file"])
            if not ref.is_absolute() and base_dir is not None:
                ref = base_dir / ref
            if "csv" in spec:
                return load_telecom_csv(ref, currency=currency)
            try:
                spec = yaml.safe_load(ref.read_text())
            except OSError as exc:
                raise CatalogError(f"{where}.telecom.file: cannot read {ref} ({exc.strerror})") from None
        return parse_telecom_plan(spec, currency=currency)
    except TelecomCatalogError as exc:
        named = [(p if p.split(".")[0] == "telecom" else f"telecom.{p}", r) for p, r in exc.problems]
        raise CatalogError("; ".join(f"{where}.{p}: {r}" for p, r in named)) from None
