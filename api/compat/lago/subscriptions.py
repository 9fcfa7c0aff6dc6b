"""Lago subscriptions on the entity store (blocking; I/O through the store's public functions).

`POST /subscriptions` with a `plan_code`: a subscription of the store (entities.subscriptions) on the
newest version of that plan from `subscription_at` (default now) to `ending_at` (default open), periods
on `billing_time` (calendar | anniversary); a customer Lago does not know yet is created with its
external id as name, as Lago does. The same `external_id` again with the same plan returns the
subscription; with another plan it moves the subscription to that plan from now on (prorated by the
close; Lago's downgrade-at-period-end is not reproduced). Every subscription is also recorded in
`lago_subscriptions` (external id -> customer), which attributes events that name only the subscription.
Without a `plan_code` only that record is written (pricing from the catalog file's assignments: the
behaviour before plans existed). `DELETE /subscriptions/{external_id}` ends it now. Back-dated starts
and ends into invoiced periods are refused by the store (`entities/finalization.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import sessionmaker

from meterstream.api.compat.lago.plans import FEE_CODE, amount_to_cents, lago_uuid, overrides_from_lago
from meterstream.billing.periods import Schedule
from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import get_customer_doc, put_customer
from meterstream.entities.lago_subscriptions import LagoSubscription, LagoSubscriptionRepository
from meterstream.entities.plans import get_plan
from meterstream.entities.subscriptions import (
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    list_subscriptions,
    start_now,
    update_subscription,
)
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.event import format_time

ANCHORS = ("calendar", "anniversary")
STATUSES = ("active", "pending", "canceled", "terminated")
# store field -> the Lago field a client sent
_FIELDS = {"phases[0].start": "subscription_at", "phases[0].end": "ending_at", "at": "ending_at", "end": "ending_at",
           "start": "subscription_at",
           "billing_anchor": "billing_time", "phases[0].plan_code": "plan_code", "customer": "external_customer_id",
           "plan_version": "plan_code", "trial_end": "plan_overrides.trial_period"}  # fmt: skip
# store field prefixes -> the Lago field of the overrides they came from
_PREFIXES = (("phases[0].usage_overrides", "plan_overrides.charges"),
             ("phases[0].fixed_overrides", "plan_overrides.amount_cents"))  # fmt: skip


class LagoNotFound(LookupError):
    """404 in Lago's shape: `code` is e.g. `plan_not_found`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def lago_field(field: str) -> str:
    for prefix, lago in _PREFIXES:
        if field.startswith(prefix):
            return lago
    return _FIELDS.get(field, field)


def _text(raw: Mapping[str, Any], name: str, required: bool = False) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise Invalid(name, "required, a string of 1-256 characters")
    return value


def _time(name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(name, f"an ISO 8601 time such as 2022-08-08T00:00:00Z (got {value!r})")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # Lago reads times without an offset as UTC
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(name, f"an ISO 8601 time such as 2022-08-08T00:00:00Z (got {value!r})") from None


def status_of(doc: SubscriptionDoc, now: datetime) -> str:
    """Lago's status at `now`: pending before the start, active, terminated after the end (canceled: ended
    before it started)."""
    first, last = doc.phases[0], doc.phases[-1]
    if last.end is not None and last.end <= now:
        return "canceled" if last.end <= first.start else "terminated"
    return "pending" if first.start > now else "active"


class LagoSubscriptions:
    def __init__(self, sessions: sessionmaker, mappings: LagoSubscriptionRepository,
                 closed_until: Callable[[str, str, datetime], datetime | None] | None = None) -> None:  # fmt: skip
        """`closed_until(tenant, customer, when)`: for a write at `when`, the end of the newest month closed for
        every customer (api/closed_periods.py), a boundary for the customers the close did not invoice; the store
        keeps it as `finalized_until` with its own."""
        self.sf = sessions
        self.mappings = mappings
        self.closed_until = closed_until or (lambda _tenant, _customer, _when: None)

    # --- writes -------------------------------------------------------------------------------------

    def create(self, tenant: str, raw: Any, now: datetime | None = None) -> dict[str, Any]:
        """Lago's subscription object of the created (or found, or changed) subscription. Raises `Invalid`
        (fields named as Lago's), `LagoNotFound` (plan), `SubscriptionConflict` (id of another customer)."""
        now = now or datetime.now(UTC)
        if not isinstance(raw, Mapping):
            raise Invalid("subscription", "must be a JSON object")
        external_id = _text(raw, "external_id", required=True)
        customer = _text(raw, "external_customer_id", required=True)
        plan_code, name = _text(raw, "plan_code"), _text(raw, "name")
        assert external_id is not None and customer is not None
        overrides_raw = raw.get("plan_overrides")
        if overrides_raw is not None and plan_code is None:
            raise Invalid("plan_overrides", "overrides need a plan_code")
        billing_time = raw.get("billing_time") or "calendar"
        if billing_time not in ANCHORS:
            raise Invalid("billing_time", f"one of {', '.join(ANCHORS)} (got {billing_time!r})")
        start = _time("subscription_at", raw.get("subscription_at")) or start_now(now)
        end = _time("ending_at", raw.get("ending_at"))
        recorded = self.mappings.get(tenant, external_id)
        if recorded is not None and recorded.external_customer_id != customer:
            raise Invalid("external_id", f"subscription {external_id} belongs to customer "
                          f"{recorded.external_customer_id}")  # fmt: skip
        if plan_code is None:  # event attribution only (pricing from the catalog file)
            mapping, _ = self.mappings.create(tenant, external_id, customer, None, name)
            return legacy_object(mapping)
        try:
            plan = get_plan(self.sf, tenant, plan_code)
        except NotFound:
            raise LagoNotFound("plan_not_found", f"plan {plan_code!r} not found") from None
        overrides = None if overrides_raw is None else overrides_from_lago(overrides_raw, plan)
        trial_end = None
        if overrides is not None and overrides.trial_days:
            trial_end = start + timedelta(seconds=int(overrides.trial_days * 86_400))
        try:
            existing: SubscriptionDoc | None = get_subscription(self.sf, tenant, external_id)
        except NotFound:
            existing = None
        try:
            if existing is None:
                self._ensure_customer(tenant, customer, plan)
                phase = Phase(plan_code=plan.code, plan_version=plan.version, start=start, end=end,
                              usage_overrides=overrides.usage if overrides else {},
                              fixed_overrides=overrides.fixed if overrides else {})  # fmt: skip
                doc = SubscriptionDoc(
                    tenant=tenant, external_id=external_id, customer=customer, version=0, name=name,
                    billing_anchor=billing_time, phases=[phase], trial_end=trial_end,
                )  # fmt: skip
                floor = self.closed_until(tenant, customer, start)
                stored = create_subscription(self.sf, doc, finalized_until=floor)
            elif existing.customer != customer:
                raise Invalid("external_id", f"subscription {external_id} belongs to customer {existing.customer}")
            else:
                current = existing.phase_at(now) or existing.phases[-1]
                stored = existing
                if overrides is not None and (
                    current.plan_code != plan.code
                    or (current.usage_overrides, current.fixed_overrides) != (overrides.usage, overrides.fixed)
                ):
                    raise Invalid("plan_overrides", f"subscription {external_id} exists: its overrides cannot be "
                                  "changed or moved to another plan here (not supported yet); end it and create "
                                  "another")  # fmt: skip
                if current.plan_code != plan.code:  # Lago: the same external_id on another plan = a plan change
                    at = max(now, existing.phases[0].start)
                    stored = change_plan(self.sf, tenant, external_id, plan.code, at,
                                         finalized_until=self.closed_until(tenant, customer, at))  # fmt: skip
        except Invalid as exc:
            raise Invalid(lago_field(exc.field), exc.reason) from None
        except Conflict as exc:
            raise Conflict(lago_field(exc.field), str(exc)) from None
        mapping, _ = self.mappings.create(tenant, external_id, customer, plan.code, name)
        return self.object(stored, mapping, now)

    def _ensure_customer(self, tenant: str, customer: str, plan: PlanVersionDoc) -> None:
        """Lago creates the customer of a subscription it does not know (external id as name, the plan's
        currency)."""
        try:
            get_customer_doc(self.sf, tenant, customer)
        except NotFound:
            try:
                put_customer(self.sf, CustomerDoc(tenant=tenant, external_id=customer, name=customer, version=0,
                                                  currency=plan.currency), expected_version=0)  # fmt: skip
            except Invalid as exc:
                raise Invalid("external_customer_id", exc.reason) from None

    def terminate(self, tenant: str, external_id: str, now: datetime | None = None) -> dict[str, Any]:
        """End the subscription now (Lago's DELETE); its object with status terminated."""
        now = now or datetime.now(UTC)
        mapping = self.mappings.get(tenant, external_id)
        try:
            doc = get_subscription(self.sf, tenant, external_id)
        except NotFound:
            if mapping is not None:
                raise Invalid("external_id", "recorded without a plan (event attribution only): nothing to "
                              "terminate") from None  # fmt: skip
            raise LagoNotFound("subscription_not_found", f"subscription {external_id!r} not found") from None
        if status_of(doc, now) in ("terminated", "canceled"):
            raise LagoNotFound("subscription_not_found", f"subscription {external_id!r} has already ended")
        try:
            stored = cancel_subscription(self.sf, tenant, external_id, now,
                                         finalized_until=self.closed_until(tenant, doc.customer, now))  # fmt: skip
        except Invalid as exc:
            raise Invalid(lago_field(exc.field), exc.reason) from None
        return self.object(stored, mapping, now)

    def update(self, tenant: str, external_id: str, raw: Any, now: datetime | None = None) -> dict[str, Any]:
        """Lago's `subscriptions.update`: `name`, `ending_at` (null: it runs on), `subscription_at` (only before
        it starts), each changed only when sent (entities.subscriptions.update_subscription); changing
        `plan_overrides` is not supported (422; `create` sets them). LagoNotFound for an unknown subscription."""
        now = now or datetime.now(UTC)
        if not isinstance(raw, Mapping):
            raise Invalid("subscription", "must be a JSON object")
        if raw.get("plan_overrides"):
            raise Invalid("plan_overrides", "changing the overrides of a subscription is not supported yet (they are "
                          "set when it is created)")  # fmt: skip
        changes: dict[str, Any] = {}
        if "name" in raw:
            changes["name"] = _text(raw, "name")
        if "ending_at" in raw:
            changes["end"] = _time("ending_at", raw["ending_at"])
        if "subscription_at" in raw:
            start = _time("subscription_at", raw["subscription_at"])
            if start is None:
                raise Invalid("subscription_at", "an ISO 8601 time (a subscription cannot lose its start)")
            changes["start"] = start
        mapping = self.mappings.get(tenant, external_id)
        try:
            doc = get_subscription(self.sf, tenant, external_id)
        except NotFound:
            if mapping is not None and "name" in changes:  # recorded without a plan: only its name is kept
                mapping, _ = self.mappings.create(tenant, external_id, mapping.external_customer_id, None,
                                                  changes["name"])  # fmt: skip
                return legacy_object(mapping)
            raise LagoNotFound("subscription_not_found", f"subscription {external_id!r} not found") from None
        at = min((v for k, v in changes.items() if k != "name" and v is not None), default=now)
        try:
            stored = update_subscription(self.sf, tenant, external_id, **changes,
                                         finalized_until=self.closed_until(tenant, doc.customer, at))  # fmt: skip
        except Invalid as exc:
            raise Invalid(lago_field(exc.field), exc.reason) from None
        except Conflict as exc:
            raise Conflict(lago_field(exc.field), str(exc)) from None
        if mapping is not None and changes.get("name") is not None:
            mapping, _ = self.mappings.create(tenant, external_id, doc.customer, None, changes["name"])
        return self.object(stored, mapping, now)

    # --- reads --------------------------------------------------------------------------------------

    def find(self, tenant: str, external_id: str, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        mapping = self.mappings.get(tenant, external_id)
        try:
            return self.object(get_subscription(self.sf, tenant, external_id), mapping, now)
        except NotFound:
            if mapping is None:
                raise LagoNotFound("subscription_not_found", f"subscription {external_id!r} not found") from None
            return legacy_object(mapping)

    def list(
        self, tenant: str, *, customer: str | None = None, plan_code: str | None = None,
        statuses: tuple[str, ...] = ("active",), now: datetime | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Subscriptions of the tenant (of a customer, on a plan), with one of `statuses` (Lago: active by
        default), oldest first; then those recorded without a plan (always active)."""
        now = now or datetime.now(UTC)
        mappings = {m.external_subscription_id: m for m in self.mappings.list(tenant, customer)}
        out = []
        for doc in list_subscriptions(self.sf, tenant, customer):
            if doc.customer == "*":
                continue  # the tenant's default subscription (own API) has no Lago customer
            obj = self.object(doc, mappings.pop(doc.external_id, None), now)
            if obj["status"] in statuses and (plan_code is None or obj["plan_code"] == plan_code):
                out.append(obj)
        if "active" in statuses:
            for m in mappings.values():
                if plan_code is None or m.plan_code == plan_code:
                    out.append(legacy_object(m))
        return out

    def object(self, doc: SubscriptionDoc, mapping: LagoSubscription | None, now: datetime) -> dict[str, Any]:
        return subscription_object(doc, mapping, now, self._plan(doc, now), self._timezone(doc))

    def _plan(self, doc: SubscriptionDoc, now: datetime) -> PlanVersionDoc | None:
        phase = doc.phase_at(now) or (doc.phases[0] if doc.phases[0].start > now else doc.phases[-1])
        try:
            return get_plan(self.sf, doc.tenant, phase.plan_code, phase.plan_version)
        except NotFound:
            return None

    def _timezone(self, doc: SubscriptionDoc) -> str:
        try:
            return get_customer_doc(self.sf, doc.tenant, doc.customer).timezone
        except NotFound:
            return "UTC"


def subscription_object(
    doc: SubscriptionDoc, mapping: LagoSubscription | None, now: datetime, plan: PlanVersionDoc | None,
    timezone: str = "UTC",
) -> dict[str, Any]:  # fmt: skip
    """Lago's subscription object of a store subscription at `now` (pure)."""
    status = status_of(doc, now)
    first, last = doc.phases[0], doc.phases[-1]
    index = next((i for i, p in enumerate(doc.phases) if p.start <= now and (p.end is None or now < p.end)), None)
    current = doc.phases[index] if index is not None else (first if first.start > now else last)
    previous = doc.phases[index - 1].plan_code if index else None
    upcoming = next((p for p in doc.phases if p.start > now), None) if index is not None else None
    fee = next((f for f in plan.fixed if f.code == FEE_CODE), plan.fixed[0] if plan.fixed else None) if plan else None
    period_start = period_end = None
    if status == "active" and plan is not None:
        schedule = Schedule.starting(first.start, plan.interval, doc.billing_anchor, timezone)
        period = schedule.period_containing(now)
        period_start, period_end = format_time(period.start), format_time(period.end)
    ended = last.end is not None and last.end <= now
    created = mapping.created_at if mapping is not None else first.start
    return {
        "lago_id": mapping.lago_id if mapping is not None else lago_uuid(doc.tenant, "subscription", doc.external_id),
        "external_id": doc.external_id, "lago_customer_id": lago_uuid(doc.tenant, "customer", doc.customer),
        "external_customer_id": doc.customer, "plan_code": current.plan_code, "name": doc.name,
        "plan_amount_cents": amount_to_cents(current.fixed_overrides.get(fee.code, fee.amount), plan.currency)
        if fee and plan else 0,
        "plan_amount_currency": plan.currency if plan else None,
        "status": status, "billing_time": doc.billing_anchor, "created_at": format_time(created),
        "subscription_at": format_time(first.start), "started_at": format_time(first.start)
        if first.start <= now else None,
        "canceled_at": format_time(last.end) if status == "canceled" else None,
        "terminated_at": format_time(last.end) if ended else None,
        "ending_at": format_time(last.end) if last.end is not None else None,
        "trial_ended_at": format_time(doc.trial_end) if doc.trial_end is not None else None,
        "previous_plan_code": previous, "next_plan_code": upcoming.plan_code if upcoming else None,
        "downgrade_plan_date": format_time(upcoming.start) if upcoming else None,
        "current_billing_period_started_at": period_start, "current_billing_period_ending_at": period_end,
        "meterstream": {"version": doc.version, "plan": f"{current.plan_code}@{current.plan_version}",
                        "phases": [{"plan": f"{p.plan_code}@{p.plan_version}", "start": format_time(p.start),
                                    "end": format_time(p.end) if p.end else None} for p in doc.phases]},
    }  # fmt: skip


def legacy_object(sub: LagoSubscription) -> dict[str, Any]:
    """A subscription recorded without a plan (event attribution only)."""
    created = format_time(sub.created_at)
    return {
        "lago_id": sub.lago_id, "external_id": sub.external_subscription_id,
        "lago_customer_id": lago_uuid(sub.tenant, "customer", sub.external_customer_id),
        "external_customer_id": sub.external_customer_id, "plan_code": sub.plan_code, "name": sub.name,
        "status": "active", "billing_time": "calendar", "created_at": created, "started_at": created,
        "subscription_at": created, "canceled_at": None, "terminated_at": None, "ending_at": None,
        "meterstream": {"plan": None},
    }  # fmt: skip
