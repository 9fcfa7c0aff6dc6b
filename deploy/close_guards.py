"""Close guards: refuse to close a period that has not ended where it is billed, or while the pipeline still
holds unprocessed events (issue #15, item 3). `--force` overrides them (the caller decides; nothing here closes).

A period (YYYY-MM) has ended once it has ended in every time zone it is billed in: UTC for the catalog file's
customers, and each subscription customer's own time zone (the entity store; the close bills the subscription
periods that end in the label's LOCAL month, `billing.periods.label_window`). The latest of those ends is
the one that counts, e.g. 2026-12 ends 2027-01-01T05:00Z for a customer in America/New_York.

The pipeline has unprocessed events while the processor's consumer group has not committed past the end of
`usage-events` as it was when the check started, or the sink's group past the end of `rated-usage` (dead
letters never reach an invoice, so the sink's dead-letter backlog does not count). Measured against a snapshot
of the end offsets, so that a check that waits (`billing run`) finishes under continuous traffic: what was
produced before the check must be processed; later events are new (late usage of a closed period becomes an
adjustment on the next invoice). The lag is not split by period: any backlog refuses. Kafka unreachable
refuses too (the lag cannot be known).

Grace periods (issue #15 item 2): a customer with `invoice_grace_days` N is finalized only once its period has
ended in its own time zone and N more days have passed; until then its draft is kept current (late usage lands
in it). `in_grace` lists the customers still in theirs; `close_refusal` names them (`--force` closes them too),
the billing run closes everyone else and comes back for them (deploy/billing_run.py).

A close of one customer (`close --customer`) is checked against that customer's own time zone and grace, and
the same pipeline backlog (the lag is not split by customer either).

Pure decisions (`period_end`, `grace_end`, `GuardReport`) and small I/O functions (`billing_zones`, `in_grace`,
`pipeline_backlog`, `kafka_error`, `check_close`, `resolve_tenant`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from meterstream.billing.periods import label_window
from meterstream.schemas.settings import Settings

if TYPE_CHECKING:
    from meterstream.ingest.lag import LagProbe
    from meterstream.invoice_emitter.store_plans import StoreView

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
FORCE_HINT = "use --force to close anyway"
Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset


def check_period(period: str) -> str:
    """`period` if it is YYYY-MM, else ValueError naming the field."""
    if not isinstance(period, str) or not PERIOD_RE.match(period):
        raise ValueError(f"period: must be YYYY-MM, got {period!r}")
    return period


@dataclass(frozen=True)
class PeriodEnd:
    period: str
    end: datetime  # UTC instant: the latest local end among the zones
    zone: str  # the zone where it ends last

    def text(self) -> str:
        return f"{self.period} ends {self.end.astimezone(UTC):%Y-%m-%dT%H:%MZ} in {self.zone}"


def period_end(period: str, zones: Iterable[str] = ()) -> PeriodEnd:
    """The instant `period` has ended everywhere: the latest start of the next month among `zones` and UTC.
    On a tie, UTC (then the alphabetically first zone) is named."""
    check_period(period)
    best: PeriodEnd | None = None
    for zone in ["UTC", *sorted(set(zones) - {"UTC"})]:
        end = label_window(period, zone)[1]
        if best is None or end > best.end:
            best = PeriodEnd(period, end, zone)
    assert best is not None
    return best


@dataclass(frozen=True)
class Grace:
    tenant: str
    customer: str
    until: datetime  # UTC instant: the period's local end + the customer's grace days

    def text(self) -> str:
        return f"{self.tenant}/{self.customer} until {self.until.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def grace_end(period: str, timezone: str, grace_days: int) -> datetime:
    """When a customer's invoice of `period` may be finalized: the period's end in `timezone` + `grace_days`."""
    return label_window(check_period(period), timezone)[1] + timedelta(days=grace_days)


def grace_text(grace: list[Grace], shown: int = 5) -> str:
    """e.g. '2 customers in their grace period: t1/c1 until 2026-12-04T00:00Z, t1/c2 until ...'."""
    names = ", ".join(g.text() for g in grace[:shown])
    more = f" and {len(grace) - shown:,} more" if len(grace) > shown else ""
    return f"{_count(len(grace), 'customer')} in their grace period: {names}{more}"


@dataclass(frozen=True)
class Backlog:
    processor: int  # usage events the processor has not committed
    sink: int  # rated-usage messages the sink has not committed (one message carries many records)

    @property
    def empty(self) -> bool:
        return self.processor == 0 and self.sink == 0


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dataclass
class GuardReport:
    """What the guards found for one close; `reasons` is empty when the close may go ahead."""

    end: PeriodEnd
    now: datetime
    backlog: Backlog | None = None  # None: not measured (Kafka unreachable, or the broker could not tell yet)
    kafka_problem: str | None = None
    notes: list[str] = field(default_factory=list)
    grace: list[Grace] = field(default_factory=list)  # customers still in their grace period

    @property
    def ended(self) -> bool:
        return self.now >= self.end.end

    @property
    def reasons(self) -> list[str]:
        out = [] if self.ended else [self.end.text()]
        if self.grace:
            out.append(grace_text(self.grace))
        if self.kafka_problem is not None:
            out.append(self.kafka_problem)
        elif self.backlog is None:
            out.append("the broker cannot tell the pipeline's lag yet (group coordinator not ready)")
        else:
            if self.backlog.processor > 0:
                out.append(f"processor lag {_count(self.backlog.processor, 'event')}")
            if self.backlog.sink > 0:
                out.append(f"sink lag {_count(self.backlog.sink, 'message')}")
        return out

    @property
    def ok(self) -> bool:
        return not self.reasons

    def message(self) -> str:
        """e.g. '2026-12 ends 2027-01-01T05:00Z in America/New_York; processor lag 1,234 events; sink lag 2
        messages; use --force to close anyway' ('' when nothing stands in the way)."""
        reasons = self.reasons
        return "; ".join([*reasons, FORCE_HINT]) if reasons else ""


# --- I/O ------------------------------------------------------------------------------------------------


def billing_zones(store: StoreView | None) -> set[str]:
    """The time zones subscription customers are billed in: each customer with a subscription of its own, and
    every customer of a tenant that has a default subscription (`*`: it bills that tenant's other customers).
    Empty without an entity store (the catalog file's customers are billed in UTC months)."""
    if store is None:
        return set()
    from sqlalchemy import select

    from meterstream.entities.customers import CustomerRow
    from meterstream.schemas.entities import DEFAULT_CUSTOMER

    subscribed = store.subscriptions()
    zones = {store.timezone(t, c) for (t, c) in subscribed if c != DEFAULT_CUSTOMER}
    default_tenants = sorted({t for (t, c) in subscribed if c == DEFAULT_CUSTOMER})
    if default_tenants:
        with store.sf() as s:
            stmt = select(CustomerRow.timezone).where(
                CustomerRow.tenant.in_(default_tenants), CustomerRow.deleted_at.is_(None)
            )
            zones |= {z or "UTC" for z in s.scalars(stmt.distinct())}
    return zones


def in_grace(
    store: StoreView | None, period: str, now: datetime, customers: set[tuple[str, str]] | None = None
) -> list[Grace]:
    """The customers (of `customers`, default every customer in the store) whose invoice of `period` is not issued
    yet and whose grace period has not passed at `now`, by end of grace then name."""
    if store is None:
        return []
    from meterstream.invoice_emitter.closed import issued_keys

    out = []
    for (tenant, customer), doc in store.customers().items():
        if doc.invoice_grace_days <= 0 or (customers is not None and (tenant, customer) not in customers):
            continue
        until = grace_end(period, doc.timezone, doc.invoice_grace_days)
        if now < until:
            out.append(Grace(tenant, customer, until))
    if out:
        issued = issued_keys(store.sf, period)
        out = [g for g in out if (g.tenant, g.customer) not in issued]
    return sorted(out, key=lambda g: (g.until, g.tenant, g.customer))


def resolve_tenant(client: Any, db: str, store: StoreView | None, customer: str, tenant: str | None) -> str:
    """The tenant of `customer` for a close of one customer: `tenant` when given, else the one tenant that has
    usage or a customer record with that id. ValueError naming the field when there is none or several."""
    if tenant:
        return tenant
    rows = client.query(f"SELECT DISTINCT tenant FROM {db}.rated_usage WHERE customer = {{c:String}}",
                        parameters={"c": customer}).result_rows  # fmt: skip
    tenants = {r[0] for r in rows}
    if store is not None:
        tenants |= {t for (t, c) in store.customers() if c == customer}
    if not tenants:
        raise ValueError(f"customer: no usage and no customer record with the id {customer!r}")
    if len(tenants) > 1:
        raise ValueError(f"tenant: customer {customer!r} exists in tenants {', '.join(sorted(tenants))}; name one "
                         "with --tenant")  # fmt: skip
    return tenants.pop()


def kafka_error(settings: Settings, timeout: float = 5.0) -> str | None:
    """None when the broker answers a metadata request within `timeout`, else the reason for a refusal."""
    from confluent_kafka import Consumer, KafkaException

    probe = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "meterstream-close-guard",
                      "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    try:
        probe.list_topics(timeout=timeout)
        return None
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        return (f"Kafka at {settings.bootstrap} is unreachable ({getattr(err, 'str', lambda: str(err))()}): "
                "the pipeline's lag cannot be checked")  # fmt: skip
    finally:
        probe.close()


def _committed(probe: LagProbe, group: str, tps: list[tuple[str, int]]) -> Offsets | None:
    """The group's committed offsets (-1: none) for `tps`; None while the coordinator cannot tell.
    (The same OffsetFetch as `LagProbe.group_lag`, with the per-partition answer.)"""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from meterstream.ingest.lag import coordinator_not_ready

    reader = probe.groups.get(group)
    if reader is None:
        reader = probe.groups[group] = Consumer({**probe.conf, "group.id": group})
    try:
        answer = reader.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
    except KafkaException as exc:
        if coordinator_not_ready(exc):
            return None
        raise
    return {(tp.topic, tp.partition): tp.offset for tp in answer}


def end_offsets(probe: LagProbe, topics: list[str]) -> Offsets:
    return {(t, p): off for t in topics for p, off in probe.end_offsets(t).items()}


def behind(targets: Offsets, committed: Offsets) -> int:
    """Messages before `targets` not committed (a partition with no commit counts from 0). Pure."""
    return sum(max(0, end - max(committed.get(tp, -1), 0)) for tp, end in targets.items())


@dataclass
class LagTargets:
    """The end offsets a wait must reach: usage-events taken once; rated-usage taken once the processor
    reached its target (the records it produced for those events are then all in rated-usage)."""

    usage: Offsets
    rated: Offsets | None = None


def pipeline_backlog(settings: Settings, probe: LagProbe, targets: LagTargets | None = None
                     ) -> tuple[Backlog | None, LagTargets]:  # fmt: skip
    """(backlog against `targets`, the targets); the first call with targets=None snapshots them now.
    Backlog None: the broker cannot tell the committed offsets yet."""
    from meterstream.ingest.topics import Topics
    from meterstream.processor.runner import app_id

    topics = Topics.from_settings(settings)
    targets = targets or LagTargets(end_offsets(probe, [topics.usage]))
    done = _committed(probe, app_id(settings), list(targets.usage))
    if done is None:
        return None, targets
    processor = behind(targets.usage, done)
    if processor > 0:
        rated = targets.rated or end_offsets(probe, [topics.rated])
    else:
        targets.rated = targets.rated or end_offsets(probe, [topics.rated])
        rated = targets.rated
    sink_done = _committed(probe, settings.topic("meterstream-sink"), list(rated))
    if sink_done is None:
        return None, targets
    return Backlog(processor, behind(rated, sink_done)), targets


def _settling(exc: Exception) -> bool:
    """An answer of a broker that is settling (topic just created, leader moving, coordinator loading)."""
    from confluent_kafka import KafkaError

    from meterstream.ingest.lag import coordinator_not_ready

    err = exc.args[0] if exc.args else None
    leaderless = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART)  # fmt: skip
    return coordinator_not_ready(exc) or (isinstance(err, KafkaError) and err.code() in leaderless)  # type: ignore[arg-type]


def check_close(
    settings: Settings,
    period: str,
    store: StoreView | None = None,
    now: datetime | None = None,
    probe: LagProbe | None = None,
    targets: LagTargets | None = None,
    kafka_timeout: float = 5.0,
    settle_seconds: float = 10.0,
    customers: set[tuple[str, str]] | None = None,
) -> tuple[GuardReport, LagTargets | None]:
    """Every guard for closing `period` now (grace periods aside: `in_grace`). `probe`: an open LagProbe to reuse
    (else one is opened and closed). Answers the broker gives while it settles (no partition leader yet, group
    coordinator loading) are asked again for up to `settle_seconds`. `customers`: a close of these alone (their
    time zones count, not everyone's)."""
    from confluent_kafka import KafkaException

    from meterstream.ingest.lag import LagProbe

    if customers is not None:
        zones = {store.timezone(t, c) for t, c in customers} if store is not None else set()
    else:
        zones = billing_zones(store)
    report = GuardReport(period_end(period, zones), now or datetime.now(UTC))
    problem = kafka_error(settings, kafka_timeout)
    if problem is not None:
        report.kafka_problem = problem
        return report, targets
    own = probe is None
    probe = probe or LagProbe(settings)
    deadline = time.monotonic() + settle_seconds
    try:
        while True:
            try:
                report.backlog, targets = pipeline_backlog(settings, probe, targets)
                break
            except KafkaException as exc:  # e.g. a topic just created has no leader yet: ask again, briefly
                if not _settling(exc) or time.monotonic() > deadline:
                    report.kafka_problem = f"Kafka at {settings.bootstrap}: cannot read the pipeline's lag ({exc})"
                    break
                time.sleep(0.5)
            if report.backlog is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        if own:
            probe.close()
    return report, targets


def close_refusal(
    settings: Settings,
    period: str,
    client: Any = None,
    store: StoreView | None = None,
    customers: set[tuple[str, str]] | None = None,
    now: datetime | None = None,
    end_grace: bool = False,
) -> str | None:
    """Why `meterstream close --period [--customer]` must not run now ('...; use --force to close anyway'), or
    None. A period already closed (for everyone, or for each of `customers`) is re-issued unchanged, so nothing
    is checked for it (needs `client`). `store`: the entity store (default: the one the settings name, opened
    after those checks). Customers in their grace period refuse the close, named, unless `end_grace` (their
    grace ends now: an invoice finalized early; the other guards stay). A bad period is a RuntimeError naming the
    field (the CLI prints operator errors without a traceback)."""
    try:
        check_period(period)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    if client is not None:
        from meterstream.invoice_emitter.ledger import closed_periods

        if period in closed_periods(client, settings.clickhouse_database):
            return None
    store = store if store is not None else opened_store(settings)
    if customers is not None and store is not None:
        from meterstream.invoice_emitter.closed import issued_keys

        if customers <= issued_keys(store.sf, period):
            return None
    report, _ = check_close(settings, period, store, now, customers=customers)
    report.grace = [] if end_grace else in_grace(store, period, report.now, customers)
    return report.message() or None


def opened_store(settings: Settings) -> StoreView | None:
    from meterstream.invoice_emitter.store_plans import StoreView

    return StoreView.open(settings)
