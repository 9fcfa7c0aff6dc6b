"""Subscriptions: a customer on a sequence of plan-version phases over time (model + repository).

A subscription is stored as its document (`schemas.entities.SubscriptionDoc`, JSON) plus one row per
phase and add-on in `subscription_phases`, which the overlap rule and "is this plan / customer in use"
read. Every write validates first (`Invalid` naming the field), takes the entity write lock, checks the
rules against the stored state (`Conflict`), then writes the rows and the outbox entry in one
transaction. Rules (docs/entities.md):

- the customer exists (or is `*`, the tenant's default subscription); every phase names an existing,
  non-add-on plan version in the customer's currency (when it has one); add-ons are add-on plans;
- phases are ordered, each ends after it starts, and none overlaps the next;
- one customer never has two subscriptions on the same plan code overlapping in time;
- `change_plan` ends the phase in effect at `at` there and starts the new plan at `at` (pending phases
  after `at` are replaced); `cancel_subscription` ends the subscription at `at`;
- nothing takes effect inside a finalized (invoiced) period of the customer (entities/finalization.py,
  read in the same transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, and_, delete, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import outbox
from meterstream.entities.common import Conflict, Invalid, NotFound, aware
from meterstream.entities.customers import find_customer_row
from meterstream.entities.db import Base
from meterstream.entities.finalization import finalized_floor
from meterstream.entities.plan_rules import check_money, check_price, check_tenant, check_text
from meterstream.entities.plans import check_usage_meters, find_plan_row, plan_doc
from meterstream.schemas.entities import Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.webhooks import events

DEFAULT_CUSTOMER = "*"
ANCHORS = ("calendar", "anniversary")


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("tenant", "external_id", name="uq_subscriptions_tenant_external_id"),
        Index("ix_subscriptions_announced", "announced"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(256))
    customer: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    doc: Mapped[str] = mapped_column(Text)  # the document as JSON (schemas.entities encoding)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the lifecycle webhooks (`announce_due`): the first phase's start, the last phase's end (None: open-ended),
    # and what was announced of it: pending (nothing yet) | started | ended
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    announced: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # the notices (`_notices`): the trial's end, and those sent, space-delimited (` trial end45 end15 end1 `)
    trial_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    notices: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SubscriptionPhaseRow(Base):
    """One phase (kind `plan`) or one add-on of a phase (kind `addon`, version resolved at write time)."""

    __tablename__ = "subscription_phases"
    __table_args__ = (
        Index("ix_subscription_phases_plan", "tenant", "plan_code"),
        Index("ix_subscription_phases_customer", "tenant", "customer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(8))
    plan_code: Mapped[str] = mapped_column(String(128))
    plan_version: Mapped[int] = mapped_column(Integer)
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


_encoder = msgspec.json.Encoder(decimal_format="string")


def start_now(now: datetime) -> datetime:
    """A subscription's start when the caller gives none: the current second, whole. Event times are mostly whole
    seconds (Lago's `timestamp` is an integer, many producers write seconds), and an event sent right after the
    subscription, in the same second, must fall inside it rather than before its start (it would be dead-lettered
    as "no subscription at the event's time")."""
    return now.replace(microsecond=0)


def _doc(row: SubscriptionRow) -> SubscriptionDoc:
    return msgspec.json.decode(row.doc, type=SubscriptionDoc)


def _instant(field: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise Invalid(field, f"an RFC 3339 time with an offset (got {type(value).__name__})")
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(field, f"must have a time zone offset (got {value.isoformat()})")
    return value.astimezone(UTC)


def _check_not_finalized(
    s: Session, field: str, when: datetime, tenant: str, customer: str, finalized_until: datetime | None
) -> None:
    """Refuse a change taking effect before the end of the customer's newest finalized (invoiced) period: the
    one the close recorded (entities/finalization.py), read here in the write's own transaction, under the
    entity write lock, so a close recording it and this write cannot both win; or the caller's
    `finalized_until`, whichever is later. Invoiced periods are not rewritten."""
    floor = finalized_floor(s, tenant, customer)
    if finalized_until is not None:
        given = _instant("finalized_until", finalized_until)
        floor = given if floor is None else max(floor, given)
    if floor is not None and when < floor:
        raise Invalid(
            field,
            f"{when.isoformat()} is in a finalized (invoiced) period of customer {customer!r}, which ends "
            f"{floor.isoformat()}: changes may take effect from then on",
        )


def _overlaps(a_start: datetime, a_end: datetime | None, b_start: datetime, b_end: datetime | None) -> bool:
    """Do [a_start, a_end) and [b_start, b_end) share an instant (None: open-ended)? An empty one (end <= start:
    a subscription canceled before it started) shares none."""
    if (a_end is not None and a_end <= a_start) or (b_end is not None and b_end <= b_start):
        return False
    return (b_end is None or a_start < b_end) and (a_end is None or b_start < a_end)


def _span(start: datetime, end: datetime | None) -> str:
    return f"[{start.isoformat()}, {end.isoformat() if end else 'open'})"


def _plan(
    s: Session, tenant: str, code: object, version: object, field: str, end: datetime | None = None
) -> PlanVersionDoc:
    """The plan version (code, version); `Invalid` naming `<field>.plan_code` / `<field>.plan_version`.
    A deleted version is accepted only for a phase that ended before now (`end`): history stays valid."""
    code_field, version_field = (
        (f"{field}.plan_code", f"{field}.plan_version") if field else ("plan_code", "plan_version")
    )
    if not isinstance(code, str) or not code:
        raise Invalid(code_field, "required, a plan code")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(version_field, f"a version number >= 1 (got {version!r})")
    row = find_plan_row(s, tenant, code, version, include_deleted=True)
    ended = end is not None and end <= datetime.now(UTC)
    if row is None or (row.deleted_at is not None and not ended):
        if find_plan_row(s, tenant, code) is None:
            raise Invalid(code_field, f"unknown plan {code!r}")
        raise Invalid(version_field, f"plan {code!r} has no version {version}")
    return plan_doc(row)


def _normalize(s: Session, doc: SubscriptionDoc) -> tuple[SubscriptionDoc, list[tuple[str, str, int, Phase]]]:
    """Validate against the stored customer and plans; returns the doc with UTC times, and
    (kind, plan code, plan version, phase) for every phase and add-on."""
    check_tenant(doc.tenant)
    check_text("external_id", doc.external_id)
    check_text("customer", doc.customer)
    check_text("name", doc.name, required=False)
    if doc.billing_anchor not in ANCHORS:
        raise Invalid("billing_anchor", f"one of {', '.join(ANCHORS)} (got {doc.billing_anchor!r})")
    trial_end = _instant("trial_end", doc.trial_end) if doc.trial_end is not None else None
    currency = None
    if doc.customer != DEFAULT_CUSTOMER:
        customer = find_customer_row(s, doc.tenant, doc.customer, lock=True)
        if customer is None:
            raise Invalid("customer", f"unknown customer {doc.customer!r} (create it first)")
        currency = customer.currency
    if not isinstance(doc.phases, list) or not doc.phases:
        raise Invalid("phases", "at least one phase (a plan version from a start time)")
    phases: list[Phase] = []
    rows: list[tuple[str, str, int, Phase]] = []
    for i, phase in enumerate(doc.phases):
        where = f"phases[{i}]"
        if not isinstance(phase, Phase):
            raise Invalid(where, "must be a phase (plan_code, plan_version, start, end)")
        start = _instant(f"{where}.start", phase.start)
        end = _instant(f"{where}.end", phase.end) if phase.end is not None else None
        if end is not None and end <= start:
            raise Invalid(f"{where}.end", f"must be after the start ({end.isoformat()} <= {start.isoformat()})")
        if phases:
            prev = phases[-1]
            if prev.end is None:
                raise Invalid(f"phases[{i - 1}].end", "only the last phase may be open-ended")
            if start < prev.end:
                raise Invalid(f"{where}.start", f"phases must be ordered and not overlap ({start.isoformat()} "
                              f"is before the end of phases[{i - 1}], {prev.end.isoformat()})")  # fmt: skip
        plan = _plan(s, doc.tenant, phase.plan_code, phase.plan_version, where, end)
        if plan.addon:
            raise Invalid(f"{where}.plan_code", f"plan {plan.code!r} is an add-on: attach it through `addons`")
        if currency is not None and plan.currency != currency:
            raise Invalid(f"{where}.plan_code", f"plan {plan.code!r} is in {plan.currency}, the customer in {currency}")
        _check_overrides(where, phase, plan)
        check_usage_meters(s, doc.tenant, phase.usage_overrides, f"{where}.usage_overrides")  # sums only
        addon_rows = []
        for j, code in enumerate(phase.addons):
            addon_row = None
            if isinstance(code, str):
                addon_row = find_plan_row(s, doc.tenant, code)
                if addon_row is None and end is not None and end <= datetime.now(UTC):  # history: deleted since
                    addon_row = find_plan_row(s, doc.tenant, code, include_deleted=True)
            if addon_row is None:
                raise Invalid(f"{where}.addons[{j}]", f"unknown plan {code!r}")
            if not addon_row.addon:
                raise Invalid(f"{where}.addons[{j}]", f"plan {code!r} is not an add-on")
            if addon_row.currency != plan.currency:
                raise Invalid(
                    f"{where}.addons[{j}]", f"add-on {code!r} is in {addon_row.currency}, the plan in {plan.currency}"
                )
            addon_rows.append((code, addon_row.version))
        if len(set(phase.addons)) != len(phase.addons):
            raise Invalid(f"{where}.addons", "an add-on is attached twice")
        fixed = msgspec.structs.replace(phase, start=start, end=end)
        phases.append(fixed)
        rows.append(("plan", plan.code, plan.version, fixed))
        rows.extend(("addon", code, version, fixed) for code, version in addon_rows)
    normalized = msgspec.structs.replace(doc, phases=phases, trial_end=trial_end, deleted=False)
    return normalized, rows


def _check_overrides(where: str, phase: Phase, plan: PlanVersionDoc) -> None:
    if not isinstance(phase.usage_overrides, dict) or not isinstance(phase.fixed_overrides, dict):
        raise Invalid(f"{where}.usage_overrides", "must map meters to prices (fixed_overrides: codes to amounts)")
    for meter, spec in phase.usage_overrides.items():
        if meter not in plan.usage:
            raise Invalid(f"{where}.usage_overrides.{meter}", f"plan {plan.rating_id} does not price meter {meter!r}")
        check_price(f"{where}.usage_overrides.{meter}", spec, plan.currency)
    codes = {fee.code for fee in plan.fixed}
    for code, amount in phase.fixed_overrides.items():
        if code not in codes:
            raise Invalid(f"{where}.fixed_overrides.{code}", f"plan {plan.rating_id} has no fixed charge {code!r}")
        check_money(f"{where}.fixed_overrides.{code}", amount, plan.currency)


def _check_no_overlap(
    s: Session, doc: SubscriptionDoc, rows: list[tuple[str, str, int, Phase]], own_id: int | None
) -> None:
    """One customer, one plan code: no two subscriptions in effect at the same instant."""
    for _kind, code, _version, phase in (r for r in rows if r[0] == "plan"):
        stmt = (
            select(SubscriptionPhaseRow, SubscriptionRow.external_id)
            .join(SubscriptionRow, SubscriptionRow.id == SubscriptionPhaseRow.subscription_id)
            .where(
                SubscriptionPhaseRow.tenant == doc.tenant,
                SubscriptionPhaseRow.customer == doc.customer,
                SubscriptionPhaseRow.plan_code == code,
                SubscriptionPhaseRow.kind == "plan",
            )
        )
        if own_id is not None:
            stmt = stmt.where(SubscriptionPhaseRow.subscription_id != own_id)
        for other, other_id in s.execute(stmt):
            start, end = aware(other.start), aware(other.end)
            assert start is not None
            if _overlaps(phase.start, phase.end, start, end):
                index = next(j for j, p in enumerate(doc.phases) if p is phase)
                raise Conflict(
                    f"phases[{index}].plan_code",
                    f"customer {doc.customer!r} is already on plan {code!r} in subscription {other_id!r} over "
                    f"{_span(start, end)}, which overlaps {_span(phase.start, phase.end)}",
                )


def _status(doc: SubscriptionDoc, now: datetime, canceled: bool = False) -> str:
    last_end = doc.phases[-1].end
    if last_end is not None and last_end <= now:
        return "terminated"
    if canceled:
        return "canceled"
    return "pending" if doc.phases[0].start > now else "active"


def _write_phases(s: Session, row: SubscriptionRow, rows: list[tuple[str, str, int, Phase]]) -> None:
    s.execute(delete(SubscriptionPhaseRow).where(SubscriptionPhaseRow.subscription_id == row.id))
    for kind, code, version, phase in rows:
        s.add(
            SubscriptionPhaseRow(
                subscription_id=row.id, tenant=row.tenant, customer=row.customer, kind=kind, plan_code=code,
                plan_version=version, start=phase.start, end=phase.end,
            )
        )  # fmt: skip


def _store(
    s: Session,
    row: SubscriptionRow,
    doc: SubscriptionDoc,
    rows: list[tuple[str, str, int, Phase]],
    updated: bool = False,
) -> SubscriptionDoc:
    """Write `doc` over `row`, with its outbox record and the lifecycle events it makes due; `updated`: a change of
    a subscription that exists (a plan change, a new name, start or end: `subscription.updated`, before the
    lifecycle events the change brings, such as `subscription.terminated` for an end moved into the past)."""
    now = datetime.now(UTC)
    row.version, row.status, row.updated_at = doc.version, doc.status, now
    row.doc = _encoder.encode(doc).decode()
    if row.notices and aware(row.ends_at) != doc.phases[-1].end:  # another end: its alerts are due again
        row.notices = _encode_notices(t for t in row.notices.split() if not t.startswith("end"))
    row.starts_at, row.ends_at = doc.phases[0].start, doc.phases[-1].end
    row.trial_ends_at = doc.trial_end
    s.flush()
    _write_phases(s, row, rows)
    s.flush()
    outbox.append(s, [doc])
    if updated:
        events.subscription_event(s, doc, events.SUBSCRIPTION_UPDATED, now)
    _announce(s, row, doc, now)
    return doc


# --- lifecycle webhooks ---------------------------------------------------------------------------------------
# A subscription is announced once when it starts (`subscription.started`: its first phase's start has come) and
# once when it ends (`subscription.terminated`: its last phase's end has come; one canceled before it started
# sends only this, with status canceled, when canceled), in the transaction that writes it or, for a start or end
# that comes later, in the transaction of `announce_due` that sees it come (the webhook dispatcher runs it every
# `ANNOUNCE_SECONDS`, the daily billing run too). A plan change inside a subscription (a new phase) is not a start.
# A subscription ended and then extended is announced as started again; one moved to start later waits again.
ANNOUNCE_SECONDS = 30.0


def _transitions(announced: str | None, starts: datetime, ends: datetime | None, now: datetime
                 ) -> tuple[list[str], str]:  # fmt: skip
    """(the events due, in order; what is announced after them) for a subscription over [starts, ends)."""
    state = announced or "pending"
    never_runs = ends is not None and ends <= starts  # canceled before it started: ended now
    if ends is not None and (ends <= now or never_runs):
        if state == "ended":
            return [], state
        started = [events.SUBSCRIPTION_STARTED] if state == "pending" and not never_runs else []
        return [*started, events.SUBSCRIPTION_TERMINATED], "ended"
    if starts <= now:
        return ([events.SUBSCRIPTION_STARTED] if state != "started" else []), "started"
    return [], "pending"


def _announce(s: Session, row: SubscriptionRow, doc: SubscriptionDoc, now: datetime) -> int:
    due, row.announced = _transitions(row.announced, doc.phases[0].start, doc.phases[-1].end, now)
    for type in due:
        events.subscription_event(s, doc, type, now)
    sent = frozenset((row.notices or "").split())
    notices, after = _notices(sent, doc.phases[0].start, doc.trial_end, doc.phases[-1].end, now)
    for type, extra in notices:
        events.subscription_event(s, doc, type, now, extra)
    if after != sent:
        row.notices = _encode_notices(after)
    return len(due) + len(notices)


# Notices, as Lago sends them: `subscription.trial_ended` once the trial is over (a trial that ends inside the
# subscription's time), and `subscription.termination_alert` 45, 15 and 1 day(s) before a known end (only the
# nearest of those due at once: a subscription written 10 days before its end gets the 15-day alert, not both;
# an end moved re-arms them). Sent by the write that makes them due or by `announce_due` (every 30 s).
TERMINATION_ALERT_DAYS = (45, 15, 1)


def _notices(sent: frozenset[str], starts: datetime, trial_end: datetime | None, ends: datetime | None,
             now: datetime) -> tuple[list[tuple[str, dict[str, Any]]], frozenset[str]]:  # fmt: skip
    """(the notices due at `now`: (event type, its extra data), in order; the tokens sent after them)."""
    due: list[tuple[str, dict[str, Any]]] = []
    tokens = set(sent)
    if trial_end is not None and "trial" not in tokens and trial_end <= now:
        if starts < trial_end and (ends is None or trial_end < ends):  # else no trial ran: nothing to say
            due.append((events.SUBSCRIPTION_TRIAL_ENDED, {"trial_ended_at": trial_end}))
        tokens.add("trial")  # done either way (announce_due looks no more)
    if ends is not None and now < ends:
        passed = [d for d in TERMINATION_ALERT_DAYS if ends - timedelta(days=d) <= now and f"end{d}" not in tokens]
        if passed:
            days = min(passed)
            due.append((events.SUBSCRIPTION_TERMINATION_ALERT, {"alert_days": days}))
            tokens.update(f"end{d}" for d in TERMINATION_ALERT_DAYS if d >= days)
    return due, frozenset(tokens)


def _encode_notices(tokens: Iterable[str]) -> str | None:
    """The `notices` column: the tokens sorted, space-delimited with a space at each end (so that `LIKE '% end1 %'`
    finds `end1` and not `end15`); None for none."""
    found = sorted(set(tokens))
    return f" {' '.join(found)} " if found else None


def _notice_due(now: datetime) -> Any:
    """SQL: a notice of `_notices` may be due at `now` (the pure function decides)."""
    unsent = lambda token: or_(SubscriptionRow.notices.is_(None), SubscriptionRow.notices.not_like(f"% {token} %"))  # noqa: E731
    trial = and_(SubscriptionRow.trial_ends_at.is_not(None), SubscriptionRow.trial_ends_at <= now, unsent("trial"))
    alerts = [and_(SubscriptionRow.ends_at > now, SubscriptionRow.ends_at <= now + timedelta(days=d),
                   unsent(f"end{d}")) for d in TERMINATION_ALERT_DAYS]  # fmt: skip
    return or_(trial, *alerts)


def announce_due(sf: sessionmaker, now: datetime, limit: int = 500) -> int:
    """Announce the starts, ends and notices that have come by `now` and were not announced (see above), each
    subscription in its own transaction; returns how many events were written."""
    ends = and_(SubscriptionRow.ends_at.is_not(None), SubscriptionRow.ends_at <= now,
                or_(SubscriptionRow.announced.is_(None), SubscriptionRow.announced != "ended"))  # fmt: skip
    starts = and_(SubscriptionRow.starts_at <= now,
                  or_(SubscriptionRow.ends_at.is_(None), SubscriptionRow.ends_at > now),
                  or_(SubscriptionRow.announced.is_(None), SubscriptionRow.announced != "started"))  # fmt: skip
    with sf() as s:
        ids = list(s.scalars(select(SubscriptionRow.id).where(or_(ends, starts, _notice_due(now)))
                             .order_by(SubscriptionRow.id).limit(limit)))  # fmt: skip
    made = 0
    for sub_id in ids:
        with sf.begin() as s:
            row = s.scalar(select(SubscriptionRow).where(SubscriptionRow.id == sub_id).with_for_update())
            if row is not None:
                made += _announce(s, row, _doc(row), now)
    return made


def create_subscription(
    sf: sessionmaker, doc: SubscriptionDoc, *, finalized_until: datetime | None = None
) -> SubscriptionDoc:
    """Store a new subscription (version 1). `Invalid` for bad input or an unknown customer / plan version,
    `Conflict` for a taken external_id or an overlap with another subscription of the customer on a plan.
    A subscription starting in a finalized (invoiced) period of its customer is refused (`Invalid` naming
    `phases[0].start`): the boundary recorded by the close, or `finalized_until` when later."""
    if not isinstance(doc, SubscriptionDoc):
        raise Invalid("", f"expected a SubscriptionDoc, got {type(doc).__name__}")
    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        normalized, rows = _normalize(s, doc)
        _check_not_finalized(s, "phases[0].start", normalized.phases[0].start, doc.tenant, doc.customer,
                             finalized_until)  # fmt: skip
        taken = s.scalar(
            select(SubscriptionRow.customer).where(
                SubscriptionRow.tenant == doc.tenant, SubscriptionRow.external_id == doc.external_id
            )
        )
        if taken is not None:
            raise Conflict("external_id", f"subscription {doc.external_id!r} already exists (customer {taken!r})")
        _check_no_overlap(s, normalized, rows, None)
        normalized = msgspec.structs.replace(normalized, version=1, status=_status(normalized, now))
        row = SubscriptionRow(
            tenant=doc.tenant, external_id=doc.external_id, customer=doc.customer, version=1, status="",
            doc="", created_at=now, updated_at=now,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return _store(s, row, normalized, rows)


def _find(s: Session, tenant: str, external_id: str) -> SubscriptionRow:
    row = s.scalar(
        select(SubscriptionRow).where(SubscriptionRow.tenant == tenant, SubscriptionRow.external_id == external_id)
    )
    if row is None:
        raise NotFound(f"subscription {external_id!r} not found")
    return row


def get_subscription(sf: sessionmaker, tenant: str, external_id: str) -> SubscriptionDoc:
    with sf() as s:
        return _doc(_find(s, tenant, external_id))


def list_subscriptions(sf: sessionmaker, tenant: str, customer: str | None = None) -> list[SubscriptionDoc]:
    """The tenant's subscriptions (of one customer when given), oldest first."""
    stmt = select(SubscriptionRow).where(SubscriptionRow.tenant == tenant)
    if customer is not None:
        stmt = stmt.where(SubscriptionRow.customer == customer)
    with sf() as s:
        return [_doc(r) for r in s.scalars(stmt.order_by(SubscriptionRow.id))]


def _check_version(expected: int | None, row: SubscriptionRow) -> None:
    if expected is not None and expected != row.version:
        raise Conflict(
            "version",
            f"subscription {row.external_id!r} is at version {row.version}, not {expected}: reload it and retry",
        )


def _carry(phase: Phase, plan: PlanVersionDoc) -> tuple[dict, dict]:
    """The overrides a phase keeps on a new version of its plan: those the version still prices."""
    if phase.plan_code != plan.code:
        return {}, {}
    codes = {fee.code for fee in plan.fixed}
    usage = {m: p for m, p in phase.usage_overrides.items() if m in plan.usage}
    return usage, {c: a for c, a in phase.fixed_overrides.items() if c in codes}


def change_plan(
    sf: sessionmaker,
    tenant: str,
    external_id: str,
    plan_code: str,
    at: datetime,
    plan_version: int | None = None,
    expected_version: int | None = None,
    *,
    finalized_until: datetime | None = None,
) -> SubscriptionDoc:
    """Move the subscription to `plan_code` (version `plan_version`, default the newest) from `at` on.

    The phase in effect at `at` ends there and the new phase starts at `at` (a phase starting exactly at
    `at` is replaced); phases that would have started after `at` (pending changes) are dropped; the new
    phase ends when the subscription ends (a scheduled cancellation stays), keeps the add-ons of the phase
    in effect at `at`, and its overrides when the plan
    code stays the same (those the new version still prices). `at` in the future is a pending change.
    Already on that plan version at `at`: nothing is written. `at` in a finalized (invoiced) period of the
    customer (before the boundary the close recorded, or `finalized_until` when later) is refused
    (`Invalid` naming `at`): back-dated changes never rewrite an invoiced period."""
    when = _instant("at", at)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _find(s, tenant, external_id)
        _check_version(expected_version, row)
        _check_not_finalized(s, "at", when, tenant, row.customer, finalized_until)
        current = _doc(row)
        if plan_version is None:
            newest = find_plan_row(s, tenant, plan_code) if isinstance(plan_code, str) else None
            if newest is None:
                raise Invalid("plan_code", f"unknown plan {plan_code!r}")
            plan_version = newest.version
        plan = _plan(s, tenant, plan_code, plan_version, "")
        index = next(
            (i for i, p in enumerate(current.phases) if p.start <= when and (p.end is None or when < p.end)), None
        )
        if index is None:
            first, last = current.phases[0], current.phases[-1]
            if when < first.start:
                raise Invalid("at", f"before the subscription starts ({first.start.isoformat()})")
            if last.end is not None and when >= last.end:
                raise Invalid("at", f"the subscription has ended ({last.end.isoformat()})")
            raise Invalid("at", "falls between two phases: no plan is in effect then")
        old = current.phases[index]
        if old.plan_code == plan.code and old.plan_version == plan.version and index == len(current.phases) - 1:
            return current
        usage, fixed = _carry(old, plan)
        new = Phase(plan_code=plan.code, plan_version=plan.version, start=when, end=current.phases[-1].end,
                    usage_overrides=usage, fixed_overrides=fixed, addons=list(old.addons))  # fmt: skip
        kept = current.phases[:index]
        if old.start < when:
            kept.append(msgspec.structs.replace(old, end=when))
        changed = msgspec.structs.replace(current, phases=[*kept, new])
        normalized, rows = _normalize(s, changed)
        _check_no_overlap(s, normalized, rows, row.id)
        now = datetime.now(UTC)
        normalized = msgspec.structs.replace(normalized, version=row.version + 1, status=_status(normalized, now))
        return _store(s, row, normalized, rows, updated=True)


def cancel_subscription(
    sf: sessionmaker,
    tenant: str,
    external_id: str,
    at: datetime,
    expected_version: int | None = None,
    *,
    finalized_until: datetime | None = None,
) -> SubscriptionDoc:
    """End the subscription at `at`: the phase in effect then ends at `at`, later phases are dropped.
    Canceling before it starts leaves an empty first phase [start, start): no instant is covered.
    `at` in a finalized (invoiced) period of the customer is refused, as for `change_plan`."""
    when = _instant("at", at)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _find(s, tenant, external_id)
        _check_version(expected_version, row)
        _check_not_finalized(s, "at", when, tenant, row.customer, finalized_until)
        current = _doc(row)
        last = current.phases[-1]
        if last.end is not None and when >= last.end:
            raise Invalid("at", f"the subscription already ends at {last.end.isoformat()}")
        phases = []
        for phase in current.phases:
            if phase.start >= when:
                break
            phases.append(msgspec.structs.replace(phase, end=when) if phase.end is None or phase.end > when else phase)
        if not phases:
            first = current.phases[0]
            phases = [msgspec.structs.replace(first, end=first.start)]
        changed = msgspec.structs.replace(current, phases=phases)
        rows = []
        for phase in phases:
            rows.append(("plan", phase.plan_code, phase.plan_version, phase))
            for code in phase.addons:
                addon = find_plan_row(s, tenant, code, include_deleted=True)
                rows.append(("addon", code, addon.version if addon is not None else 0, phase))
        now = datetime.now(UTC)
        changed = msgspec.structs.replace(changed, version=row.version + 1, status=_status(changed, now, canceled=True))
        return _store(s, row, changed, rows)


KEEP: Any = object()  # `update_subscription`: leave this field as it is


def update_subscription(
    sf: sessionmaker,
    tenant: str,
    external_id: str,
    *,
    name: str | None = KEEP,
    start: datetime = KEEP,
    end: datetime | None = KEEP,
    expected_version: int | None = None,
    finalized_until: datetime | None = None,
) -> SubscriptionDoc:
    """Rename a subscription, move its end, or move its start while it has not started (what is not passed stays).

    `end`: an instant (the subscription ends then: later phases are dropped, the phase in effect then ends there,
    an earlier end extended), or None (it runs on until canceled). Refused (`Invalid` naming the field) once the
    subscription has ended, for an end not after its start, and, for `start`, once it has started or past the end
    of its first phase. An instant inside a finalized (invoiced) period of the customer is refused as for
    `change_plan` (`finalized_until` as there). A subscription canceled (`cancel_subscription`) stays canceled while
    it has an end; clearing the end makes it active again."""
    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = _find(s, tenant, external_id)
        _check_version(expected_version, row)
        current = _doc(row)
        phases = list(current.phases)
        last_end = phases[-1].end
        if last_end is not None and last_end <= now and (start is not KEEP or end is not KEEP):
            raise Invalid("end" if end is not KEEP else "start",
                          f"the subscription ended at {last_end.isoformat()}: it can no longer change")  # fmt: skip
        if start is not KEEP:
            when = _instant("start", start)
            first = phases[0]
            if first.start <= now:
                raise Invalid("start", f"the subscription started at {first.start.isoformat()}: its start can no "
                              "longer move")  # fmt: skip
            if first.end is not None and when >= first.end:
                raise Invalid("start", f"must be before the end of its first phase, {first.end.isoformat()}")
            _check_not_finalized(s, "start", when, tenant, row.customer, finalized_until)
            phases[0] = msgspec.structs.replace(first, start=when)
        if end is not KEEP:
            if end is None:
                phases[-1] = msgspec.structs.replace(phases[-1], end=None)
            else:
                when = _instant("end", end)
                if when <= phases[0].start:
                    raise Invalid("end", f"must be after the start, {phases[0].start.isoformat()}")
                _check_not_finalized(s, "end", when, tenant, row.customer, finalized_until)
                kept = [phase for phase in phases if phase.start < when]
                last = kept[-1]
                if last is phases[-1] or last.end is None or last.end > when:
                    kept[-1] = msgspec.structs.replace(last, end=when)
                phases = kept
        changed = msgspec.structs.replace(current, phases=phases, name=current.name if name is KEEP else name)
        if changed == current:  # nothing changes: nothing written, nothing announced
            return current
        normalized, rows = _normalize(s, changed)
        _check_no_overlap(s, normalized, rows, row.id)
        canceled = current.status == "canceled" and normalized.phases[-1].end is not None
        normalized = msgspec.structs.replace(normalized, version=row.version + 1,
                                             status=_status(normalized, now, canceled=canceled))  # fmt: skip
        return _store(s, row, normalized, rows, updated=True)


def subscriptions_in_use(
    s: Session, tenant: str, now: datetime, *, customer: str | None = None, plan_code: str | None = None
) -> Sequence[str]:
    """External ids of subscriptions with a phase (or add-on) not ended at `now`, of a customer or a plan."""
    stmt = (
        select(SubscriptionRow.external_id, SubscriptionPhaseRow.start, SubscriptionPhaseRow.end)
        .join(SubscriptionRow, SubscriptionRow.id == SubscriptionPhaseRow.subscription_id)
        .where(SubscriptionPhaseRow.tenant == tenant)
    )
    if customer is not None:
        stmt = stmt.where(SubscriptionPhaseRow.customer == customer)
    if plan_code is not None:
        stmt = stmt.where(SubscriptionPhaseRow.plan_code == plan_code)
    out: dict[str, None] = {}
    for external_id, start, end in s.execute(stmt):
        start, end = aware(start), aware(end)
        if (end is None or end > now) and not (end is not None and start is not None and end <= start):
            out[external_id] = None
    return sorted(out)


def running_phases(s: Session, tenant: str, customer: str, now: datetime) -> list[tuple[str, str, int]]:
    """(subscription, plan code, plan version) of the customer's main-plan phases not ended at `now`."""
    stmt = (
        select(SubscriptionRow.external_id, SubscriptionPhaseRow)
        .join(SubscriptionRow, SubscriptionRow.id == SubscriptionPhaseRow.subscription_id)
        .where(
            SubscriptionPhaseRow.tenant == tenant,
            SubscriptionPhaseRow.customer == customer,
            SubscriptionPhaseRow.kind == "plan",
        )
    )
    out = []
    for external_id, phase in s.execute(stmt):
        start, end = aware(phase.start), aware(phase.end)
        if end is None or (end > now and start is not None and end > start):
            out.append((external_id, phase.plan_code, phase.plan_version))
    return out
