"""The processors' live, effective-dated catalog: the compacted `entities` topic read as a global table.

`EntityTable` is the pure state: the newest document per key (customers, plan versions, subscriptions;
`schemas/entities.py`) and the lookup `plan_for(tenant, customer, meter, at)` — the plan of the
subscription phase in effect at `at`, the event's own time, never its arrival time. `LiveCatalog` fills it
from Kafka: it assigns every partition of `entities` from the beginning (no consumer group, nothing
committed), reads to the end offsets seen at start, then `poll_updates()` applies whatever has arrived
without waiting (the processor calls it once per loop iteration). `CatalogView` is what the processor
asks: live entities first, the file catalog (`settings.catalog`) as fallback.

Order independence: a document is a whole state with a version. The table keeps, per key, the document
with the highest version (on equal versions a deleted one wins), so redeliveries, a relay's at-least-once
repeats and documents arriving out of order leave the same state. See docs/entities-stream.md.

Wiring into the processor loop (two lines): `view.poll_updates()` once per loop iteration, and
`view.plan_for(tenant, customer, meter, at)` in place of `catalog.plan_for(tenant, customer)`; drop plan
caches when `view.generation` changes. When it answers None, dead-letter with field `customer` and
`no_subscription_reason(...)` — after one `view.catch_up()` per batch, so that a subscription Kafka
acknowledged before the event was produced (a replayed dead letter) is always seen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from meterstream.billing.charges import SubscriptionCharges
from meterstream.billing.periods import Schedule
from meterstream.billing.plans import lookup_from
from meterstream.rating.catalog import Catalog, CatalogError, Plan, build_plan
from meterstream.schemas.entities import (
    DEFAULT_CUSTOMER,
    CustomerDoc,
    EntityDoc,
    Phase,
    PlanVersionDoc,
    SubscriptionDoc,
    WalletDoc,
    decode_change,
)
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

# The dead-letter reason for usage that no subscription covers at the event's time. The relay replays
# dead letters whose reason starts with it once a subscription of that customer arrives (entities/relay.py).
NO_SUBSCRIPTION = "no subscription at the event's time"
# The file catalog's reason (processor/rate.py) for the same situation; replayed alike.
NO_PLAN = "no plan for customer"

UPDATES = Counter("meterstream_live_catalog_updates_total", "Entity documents applied to the live catalog")
BAD = Counter("meterstream_live_catalog_bad_documents_total", "Entity messages the live catalog could not use", ["why"])
GENERATION = Gauge("meterstream_live_catalog_generation", "Changes every time the live catalog changes")


def no_subscription_reason(tenant: str, customer: str, at: datetime) -> str:
    """`no subscription at the event's time: customer T/C at 2026-11-03T10:00:00+00:00`."""
    return f"{NO_SUBSCRIPTION}: customer {tenant}/{customer} at {at.isoformat()}"


def is_waiting_for_subscription(reason: str) -> bool:
    """A dead letter that a new subscription may make rateable (the relay's replay filter)."""
    return reason.startswith(NO_SUBSCRIPTION) or reason.startswith(NO_PLAN)


@dataclass(frozen=True)
class _Candidate:
    """One plan in effect over [start, end) for a customer, in lookup order, with the billing periods of
    its subscription (None: the subscription's periods cannot be computed, UTC months are used)."""

    start: datetime
    end: datetime | None
    plan: Plan
    schedule: Schedule | None = None


def _newer(new: EntityDoc, old: EntityDoc | None) -> bool:
    """Keep the highest version; on a tie a deletion wins (so the state does not depend on arrival order)."""
    if old is None or new.version > old.version:
        return True
    return new.version == old.version and new.deleted and not old.deleted


class EntityTable:
    """The newest entity documents by key and the effective-dated plan lookup (pure: no I/O)."""

    def __init__(self) -> None:
        self.docs: dict[str, EntityDoc] = {}
        self.generation = 0
        self._customers: dict[tuple[str, str], CustomerDoc] = {}
        self._plans: dict[tuple[str, str], dict[int, PlanVersionDoc]] = {}
        self._subs: dict[tuple[str, str], dict[str, SubscriptionDoc]] = {}  # (tenant, customer) -> id -> doc
        self._candidates: dict[tuple[str, str], list[_Candidate]] = {}
        self._plan_cache: dict[tuple[str, str, int, bytes], Plan | None] = {}
        # prepaid wallets (processor/balances.py): (tenant, customer) -> wallet id -> doc, and the customers whose
        # wallets or customer document changed since the processor last took them (`take_wallet_changes`)
        self._wallets: dict[tuple[str, str], dict[str, WalletDoc]] = {}
        self.wallet_changes: set[tuple[str, str]] = set()

    # --- updates -------------------------------------------------------------------------------------
    def apply(self, doc: EntityDoc) -> bool:
        """Apply one document; True when it changed the table (False: an older or equal version)."""
        key = doc.key
        old = self.docs.get(key)
        if not _newer(doc, old):
            return False
        self._unindex(old)
        self.docs[key] = doc
        if isinstance(doc, WalletDoc):  # not a rating change: the plan caches and `generation` stay
            self._wallets.setdefault((doc.tenant, doc.customer), {})[doc.id] = doc
            self.wallet_changes.add((doc.tenant, doc.customer))
            UPDATES.inc()
            return True
        self._forget_plan(doc)
        if isinstance(doc, CustomerDoc):
            self._customers[(doc.tenant, doc.external_id)] = doc
            self.wallet_changes.add((doc.tenant, doc.external_id))  # its thresholds or credit limit may change
        elif isinstance(doc, PlanVersionDoc):
            self._plans.setdefault((doc.tenant, doc.code), {})[doc.version] = doc
        else:
            self._subs.setdefault((doc.tenant, doc.customer), {})[doc.external_id] = doc
        self._changed()
        return True

    def remove(self, key: str) -> bool:
        """A tombstone (a null value on the compacted topic): forget the key."""
        old = self.docs.pop(key, None)
        if old is None:
            return False
        self._unindex(old)
        if isinstance(old, WalletDoc):
            return True
        self._forget_plan(old)
        self._changed()
        return True

    def apply_message(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one message of the `entities` topic; a message that is not a document is logged and skipped."""
        if value is None:
            if key is None:
                BAD.labels("no key").inc()
                return False
            return self.remove(key.decode("utf-8", "replace"))
        try:
            doc = decode_change(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            BAD.labels("decode").inc()
            log.error("entities: message %r is not an entity document (%s); skipped", key, exc)
            return False
        if key is not None and key.decode("utf-8", "replace") != doc.key:
            BAD.labels("key").inc()
            log.error("entities: message key %r does not match its document's key %r; skipped", key, doc.key)
            return False
        return self.apply(doc)

    def _unindex(self, old: EntityDoc | None) -> None:
        if isinstance(old, CustomerDoc):
            self._customers.pop((old.tenant, old.external_id), None)
        elif isinstance(old, PlanVersionDoc):
            versions = self._plans.get((old.tenant, old.code), {})
            versions.pop(old.version, None)
        elif isinstance(old, SubscriptionDoc):
            self._subs.get((old.tenant, old.customer), {}).pop(old.external_id, None)
        elif isinstance(old, WalletDoc):
            self._wallets.get((old.tenant, old.customer), {}).pop(old.id, None)
            self.wallet_changes.add((old.tenant, old.customer))

    def _forget_plan(self, doc: EntityDoc) -> None:
        """Built plans are cached across changes (plan versions are immutable); only this version's go."""
        if isinstance(doc, PlanVersionDoc):
            for k in [k for k in self._plan_cache if k[:3] == (doc.tenant, doc.code, doc.version)]:
                del self._plan_cache[k]

    def _changed(self) -> None:
        self.generation += 1
        self._candidates.clear()  # cheap to rebuild: phases over cached plans
        UPDATES.inc()
        GENERATION.set(self.generation)

    # --- reads ---------------------------------------------------------------------------------------
    def customer(self, tenant: str, external_id: str) -> CustomerDoc | None:
        return self._customers.get((tenant, external_id))

    def wallets(self, tenant: str, customer: str) -> list[WalletDoc]:
        """The customer's wallets that are not deleted, by id (oldest first: ids are ULIDs)."""
        found = self._wallets.get((tenant, customer), {})
        return [found[k] for k in sorted(found) if not found[k].deleted]

    def has_wallets(self, tenant: str, customer: str) -> bool:
        return bool(self._wallets.get((tenant, customer)))

    def take_wallet_changes(self) -> set[tuple[str, str]]:
        """The customers whose wallets (or customer document) changed since the last call."""
        changed, self.wallet_changes = self.wallet_changes, set()
        return changed

    def plan_version(self, tenant: str, code: str, version: int) -> PlanVersionDoc | None:
        return self._plans.get((tenant, code), {}).get(version)

    def subscriptions(self, tenant: str, customer: str) -> list[SubscriptionDoc]:
        """The customer's subscriptions that are not deleted, by external id."""
        subs = self._subs.get((tenant, customer), {})
        return [subs[k] for k in sorted(subs) if not subs[k].deleted]

    def plan_for(self, tenant: str, customer: str, meter: str, at: datetime) -> Plan | None:
        """The plan that rates `meter` at the event's time `at` (timezone-aware).

        The customer's own subscriptions first (by external id; in a phase its main plan, then its add-ons),
        then the tenant's default subscription (`customer == "*"`). When plans are in effect but none prices
        `meter`, the first of them (so the caller reports the unpriced meter); None when no phase is in
        effect at `at`.
        """
        found = self.match(tenant, customer, meter, at)
        return None if found is None else found.plan

    def match(self, tenant: str, customer: str, meter: str, at: datetime) -> _Candidate | None:
        """The candidate whose plan `plan_for` answers (see there)."""
        first = None
        for c in self._candidates_for(tenant, customer):
            if c.start <= at and (c.end is None or at < c.end):
                if c.plan.rates(meter):
                    return c
                if first is None:
                    first = c
        return first

    def period_for(self, tenant: str, customer: str, meter: str, at: datetime) -> str | None:
        """The billing period, as `Schedule.label` names it, of the subscription whose plan rates `meter` at
        `at`, in the customer's time zone: the running totals and bundles of that usage are kept per this
        period, so a graduated tier restarts where the invoice's period does. None: no subscription rates
        it, or its periods cannot be computed (then the UTC calendar month, as for the file catalog)."""
        found = self.match(tenant, customer, meter, at)
        if found is None or found.schedule is None or not found.plan.rates(meter):
            return None
        return found.schedule.label(found.schedule.period_containing(at))

    def has_subscriptions(self, tenant: str, customer: str) -> bool:
        """Whether any subscription (the customer's or the tenant's default) may decide its plan."""
        return bool(self._candidates_for(tenant, customer))

    def _candidates_for(self, tenant: str, customer: str) -> list[_Candidate]:
        slot = (tenant, customer)
        found = self._candidates.get(slot)
        if found is None:
            found = []
            owners = (customer,) if customer == DEFAULT_CUSTOMER else (customer, DEFAULT_CUSTOMER)
            billed = self._customers.get(slot)
            timezone = billed.timezone if billed is not None and not billed.deleted else "UTC"
            for owner in owners:
                for sub in self.subscriptions(tenant, owner):
                    schedule = self._schedule(sub, timezone)
                    for phase in sub.phases:
                        for plan in self._phase_plans(sub, phase):
                            found.append(_Candidate(phase.start, phase.end, plan, schedule))
            self._candidates[slot] = found
        return found

    def _schedule(self, sub: SubscriptionDoc, timezone: str) -> Schedule | None:
        """The subscription's billing periods in the billed customer's time zone, as the close computes them
        (billing.charges); None (logged) when its plans are not all known yet or do not make a schedule."""
        versions = [doc for (t, _), by_version in self._plans.items() if t == sub.tenant for doc in by_version.values()]
        try:
            return SubscriptionCharges(sub, lookup_from(versions), timezone).schedule
        except (KeyError, ValueError) as exc:
            log.warning("entities: %s: billing periods unknown (%s); its usage is totalled per UTC month", sub.key,
                        exc)  # fmt: skip
            return None

    def _phase_plans(self, sub: SubscriptionDoc, phase: Phase) -> list[Plan]:
        plans = []
        main = self._build(sub.tenant, phase.plan_code, phase.plan_version, phase.usage_overrides, sub.key)
        if main is not None:
            plans.append(main)
        for code in phase.addons:
            version = self._addon_version(sub.tenant, code, phase.start)
            addon = None if version is None else self._build(sub.tenant, code, version, {}, sub.key)
            if addon is not None:
                plans.append(addon)
        return plans

    def _addon_version(self, tenant: str, code: str, start: datetime) -> int | None:
        """An add-on's newest version published at or before the phase start (else its oldest one)."""
        versions = self._plans.get((tenant, code), {})
        if not versions:
            return None
        before = [v for v, d in versions.items() if d.published_at is not None and d.published_at <= start]
        return max(before) if before else min(versions)

    def _build(
        self, tenant: str, code: str, version: int, overrides: dict[str, dict[str, Any]], owner: str
    ) -> Plan | None:
        """The plan version as a rating Plan (id `code@version`), with the subscription's usage overrides.

        Plan versions are immutable, so a deleted version still rates the phases that used it (deleting a plan
        only stops new use). A missing or unparseable version is logged and rates nothing.
        """
        cache_key = (tenant, code, version, msgspec.json.encode(overrides, order="sorted"))
        if cache_key in self._plan_cache:
            return self._plan_cache[cache_key]
        doc = self.plan_version(tenant, code, version)
        plan = None
        if doc is None:
            log.warning("entities: %s uses plan %s@%s of tenant %s, which is not (yet) known", owner, code, version,
                        tenant)  # fmt: skip
        else:
            try:
                plan = build_plan(
                    doc.rating_id,
                    doc.currency,
                    {**doc.usage, **overrides},
                    doc.telecom,
                    name=doc.name,
                    where=f"plan {tenant}/{doc.rating_id}",
                    meters_field="usage",
                )
            except CatalogError as exc:
                BAD.labels("plan").inc()
                log.error("entities: %s cannot be rated with (%s)", owner, exc)
        self._plan_cache[cache_key] = plan
        return plan


class LiveCatalog:
    """The `entities` topic as a global table: every partition from the beginning, no group, no commits."""

    def __init__(self, settings: Settings, table: EntityTable | None = None) -> None:
        from meterstream.ingest.topics import entities_topic

        self.settings = settings
        self.topic = entities_topic(settings)
        self.table = table or EntityTable()
        self._consumer: Consumer | None = None
        # end offsets are asked on a connection of their own: on the reading consumer's, a ListOffsets request
        # waits behind its long-poll fetch (fetch.wait.max.ms) and each catch_up took ~100 ms (measured)
        self._probe: Consumer | None = None
        self._partitions: list[int] = []

    @property
    def generation(self) -> int:
        return self.table.generation

    def plan_for(self, tenant: str, customer: str, meter: str, at: datetime) -> Plan | None:
        return self.table.plan_for(tenant, customer, meter, at)

    def period_for(self, tenant: str, customer: str, meter: str, at: datetime) -> str | None:
        return self.table.period_for(tenant, customer, meter, at)

    def start(self, timeout: float = 30.0) -> int:
        """Create the topic if missing, assign all its partitions from the beginning and read to the end
        offsets seen now (the state as of start); returns the number of documents applied."""
        from meterstream.ingest.topics import ensure_entities_topic

        ensure_entities_topic(self.settings, timeout=timeout)
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap,
                "group.id": f"{self.settings.topic_prefix}meterstream-live-catalog",  # never joined nor committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                # an empty long-poll fetch costs the broker CPU (processor/runner.py); a change ends it at once
                "fetch.wait.max.ms": 500,
                "topic.metadata.refresh.interval.ms": 60_000,
            }
        )
        meta = consumer.list_topics(self.topic, timeout=timeout).topics[self.topic]
        if meta.error is not None:
            consumer.close()
            raise KafkaException(meta.error)
        self._partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._consumer = consumer
        self._probe = Consumer({"bootstrap.servers": self.settings.bootstrap,
                                "group.id": f"{self.settings.topic_prefix}meterstream-live-catalog-probe"})  # fmt: skip
        return self.catch_up(timeout)

    def poll_updates(self, max_messages: int = 1000) -> int:
        """Apply what has already arrived (never waits); returns how many documents changed the table."""
        if self._consumer is None:
            raise RuntimeError("LiveCatalog.start() first")
        changed = 0
        for msg in self._consumer.consume(num_messages=max_messages, timeout=0):
            changed += self._apply(msg)
        return changed

    def catch_up(self, timeout: float = 5.0) -> int:
        """Read up to the end offsets the broker reports now (a change acknowledged before this call is then
        applied); returns how many documents changed the table. Raises TimeoutError past `timeout`."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("LiveCatalog.start() first")
        deadline = time.monotonic() + timeout
        target = {}
        for p in self._partitions:
            low, high = self._watermarks(p, deadline)
            if high > low:
                target[p] = high
        position = {tp.partition: tp.offset for tp in consumer.position(
            [TopicPartition(self.topic, p) for p in target])}  # fmt: skip
        pending = {p for p, high in target.items() if position.get(p, -1) < high}
        changed = 0
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: partitions {sorted(pending)} not read to their end in {timeout} s")
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= target.get(msg.partition(), 0):
                            pending.discard(msg.partition())
                    elif err.fatal():
                        raise KafkaException(err)
                    else:
                        log.warning("%s: consumer error: %s", self.topic, err)
                    continue
                changed += self._apply(msg)
                if msg.offset() + 1 >= target.get(msg.partition(), 0):
                    pending.discard(msg.partition())
        return changed

    def _watermarks(self, partition: int, deadline: float) -> tuple[int, int]:
        """(low, high) of a partition, retried while the broker is not ready (a topic created a moment ago)."""
        probe = self._probe or self._consumer
        assert probe is not None
        while True:
            try:
                wait = max(deadline - time.monotonic(), 0.5)
                return probe.get_watermark_offsets(TopicPartition(self.topic, partition), wait, False)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                # a topic created a moment ago: no leader yet, or metadata still naming no leader
                not_ready = isinstance(err, KafkaError) and (
                    err.retriable()
                    or err.code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
                )
                if not not_ready or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _apply(self, msg: Any) -> int:
        if msg.error() is not None:
            err = msg.error()
            if err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("%s: consumer error: %s", self.topic, err)
            return 0
        return int(self.table.apply_message(msg.key(), msg.value()))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._probe is not None:
            self._probe.close()
            self._probe = None


class CatalogView:
    """What the processor asks: the live entities first, the file catalog (`settings.catalog`) as fallback.

    Per lookup: a live plan in effect at the event's time that prices the meter; else the file catalog's plan
    (the customer's assignment, else the tenant's `*`) if it prices the meter; else whichever plan was found
    (the caller reports the unpriced meter); None when neither has a plan (dead-letter with
    `no_subscription_reason`).
    """

    def __init__(self, live: LiveCatalog | EntityTable | None, fallback: Catalog | None = None) -> None:
        self.live = live
        self.fallback = fallback

    @property
    def generation(self) -> int:
        return self.live.generation if self.live is not None else 0

    def plan_for(self, tenant: str, customer: str, meter: str, at: datetime) -> Plan | None:
        plan = self.live.plan_for(tenant, customer, meter, at) if self.live is not None else None
        if plan is not None and plan.rates(meter):
            return plan
        file_plan = self.fallback.plan_for(tenant, customer) if self.fallback is not None else None
        if file_plan is not None and file_plan.rates(meter):
            return file_plan
        return plan or file_plan

    def period_for(self, tenant: str, customer: str, meter: str, at: datetime) -> str | None:
        """The billing period of a live subscription's usage (`EntityTable.period_for`); None when the plan
        `plan_for` answers is not a live one (then the UTC calendar month)."""
        return self.live.period_for(tenant, customer, meter, at) if self.live is not None else None

    def no_plan_reason(self, tenant: str, customer: str, at: datetime) -> str:
        """The dead-letter reason when `plan_for` found nothing (the relay replays these letters)."""
        if self.live is None and self.fallback is not None:
            return self.fallback.no_plan_reason(tenant, customer, at)
        return no_subscription_reason(tenant, customer, at)

    def timed(self, tenant: str, customer: str) -> bool:
        """Whether live subscriptions (the customer's or the tenant's default) decide this customer's plan,
        so the answer depends on the event's time; else the file catalog's answer holds at every time."""
        if self.live is None:
            return False
        table = self.live.table if isinstance(self.live, LiveCatalog) else self.live
        return table.has_subscriptions(tenant, customer)

    def poll_updates(self) -> int:
        return self.live.poll_updates() if isinstance(self.live, LiveCatalog) else 0

    def catch_up(self, timeout: float = 5.0) -> int:
        return self.live.catch_up(timeout) if isinstance(self.live, LiveCatalog) else 0

    def close(self) -> None:
        if isinstance(self.live, LiveCatalog):
            self.live.close()


def open_catalog_view(settings: Settings, fallback: Catalog | None = None, timeout: float = 30.0) -> CatalogView:
    """A started live catalog (read to the end) behind a view with `fallback`, as a processor opens it."""
    live = LiveCatalog(settings)
    live.start(timeout)
    return CatalogView(live, fallback)


__all__ = [
    "DEFAULT_CUSTOMER",
    "NO_PLAN",
    "NO_SUBSCRIPTION",
    "CatalogView",
    "EntityTable",
    "LiveCatalog",
    "is_waiting_for_subscription",
    "no_subscription_reason",
    "open_catalog_view",
]
