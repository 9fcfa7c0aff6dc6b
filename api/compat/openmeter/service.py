"""What the OpenMeter routes do, behind HTTP: ingest CloudEvents, replay unmatched ones, list events.

Thin on purpose: meters come from entities/meters.py, the translation from ingest/translate.py, the
one ingest path is api/ingest.py's IngestService and the one query path api/queries.py.

Ingest of one request:
1. every CloudEvent's envelope is checked first; if any is malformed the request is refused (400,
   each bad event named by index, field and reason), those events are dead-lettered (stage "api") and
   nothing else of the request is stored (OpenMeter refuses such a batch too);
2. each event becomes one usage event per meter of its type (customer = the customer whose usage
   attribution lists the subject, else the subject); events of a type no meter has are kept as
   unmatched (entities/unmatched.py) once the rest is acknowledged; an event a meter cannot measure
   (value missing, not a number, negative) is dead-lettered with `data.<path>` and the reason;
3. the usage events go through IngestService.submit: acknowledged by Kafka before the 204, or
   `Unavailable` (503 + Retry-After; retrying is safe: the ids derive from (source, id, meter)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import select

from meterstream.api.ingest import IngestService
from meterstream.api.metrics import count_events
from meterstream.api.queries import UsageQueries, time_range
from meterstream.entities.customers import CustomerRepository
from meterstream.entities.meters import MeterRepository
from meterstream.entities.priceable import file_catalog_prices
from meterstream.entities.subjects import SubjectRepository
from meterstream.entities.unmatched import UnmatchedEvent, UnmatchedRepository
from meterstream.ingest.translate import (
    UNIQUE_DIMENSION,
    MeterDefinition,
    check_envelope,
    parse_derived_id,
    simple_path,
    translate,
)
from meterstream.schemas.event import InvalidEvent, format_time


@dataclass
class IngestReport:
    """What one ingest request did (the route answers 204; tests and metrics look at this)."""

    usage_events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unmatched: int = 0
    unmeasurable: list[tuple[int, InvalidEvent]] = field(default_factory=list)


class BadEnvelopes(Exception):
    """Malformed CloudEvents: (index, field, reason) each; nothing of the request was stored."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        super().__init__("; ".join(f"[{i}].{f}: {r}" for i, f, r in problems[:5]))
        self.problems = problems


class OpenMeterService:
    """Holds the repositories; takes the IngestService and the query path from `state` (the app's) at call
    time, so whatever the app uses now (tests swap them) is what this layer uses."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self._sessions = state.sessions
        self.sessions = state.sessions  # the entity store (customers: entities/customers.py functions)
        self.meters = MeterRepository(state.sessions, file_prices=self._file_prices)
        self.subjects = SubjectRepository(state.sessions)
        self.customers = CustomerRepository(state.sessions)
        self.unmatched = UnmatchedRepository(state.sessions)

    def _file_prices(self, tenant: str) -> dict[str, list[str]]:
        """The meters the file catalog (`settings.catalog`, the processor's fallback plans) prices for the tenant."""
        settings = getattr(self._state, "settings", None)
        return file_catalog_prices(getattr(settings, "catalog", None), tenant)

    @property
    def ingest(self) -> IngestService:
        return self._state.ingest

    @property
    def queries(self) -> UsageQueries:
        return self._state.queries

    # -- ingest ------------------------------------------------------------------------------------

    def ingest_events(self, tenant: str, events: list[Any], now: datetime | None = None) -> IngestReport:
        now = now or datetime.now(UTC)
        envelopes = []
        problems: list[tuple[int, str, str]] = []
        for i, ev in enumerate(events):
            try:
                envelopes.append(check_envelope(ev, now))
            except InvalidEvent as exc:
                problems.append((i, exc.field, exc.reason))
        if problems:
            self.ingest.dead_letter(tenant, [(events[i], InvalidEvent(f, r)) for i, f, r in problems])
            raise BadEnvelopes(problems)
        types = {env[2] for env in envelopes}
        definitions = self.meters.definitions(tenant, types)
        self._replay_left_behind(tenant, {d.event_type for d in definitions})
        owners = self.customers.subject_customers(tenant, {env[3] for env in envelopes})
        report = IngestReport()
        usage: list[dict[str, Any]] = []
        unmatched: list[int] = []
        refused: list[tuple[Any, InvalidEvent]] = []
        for i, ev in enumerate(events):
            out = translate(ev, definitions, owners, now)
            if out.unmatched:
                unmatched.append(i)
                continue
            usage.extend(out.events)
            for err in out.errors:
                refused.append((ev, err))
                report.unmeasurable.append((i, err))
        if usage:
            results = self.ingest.submit(tenant, usage)  # raises Unavailable: the route answers 503
            count_events(results)
            report.usage_events = len(results)
            report.accepted = sum(1 for r in results if r.status == "accepted")
            report.rejected = sum(1 for r in results if r.status == "rejected")
            report.duplicates = report.usage_events - report.accepted - report.rejected
        self.ingest.dead_letter(tenant, refused)
        for i in unmatched:
            self._keep_unmatched(tenant, events[i], now)
        report.unmatched = len(unmatched)
        return report

    def _keep_unmatched(self, tenant: str, ev: dict[str, Any], now: datetime) -> None:
        """Keep an event no meter covers, once per (source, id) while not replayed (a client retry keeps no
        second copy); an event without a time gets its reception time, so a later replay meters it then."""
        kept = select(UnmatchedEvent.id).where(
            UnmatchedEvent.tenant == tenant,
            UnmatchedEvent.source == ev["source"],
            UnmatchedEvent.event_id == ev["id"],
            UnmatchedEvent.replayed_at.is_(None),
        )
        with self._sessions() as s:
            if s.scalar(kept.limit(1)) is not None:
                return
        if ev.get("time") is None:
            ev = {**ev, "time": format_time(now)}
        self.unmatched.add(tenant, ev, event_type=ev["type"], source=ev["source"], event_id=ev["id"],
                           reason=f"no meter for event type {ev['type']!r}")  # fmt: skip

    def _replay_left_behind(self, tenant: str, types: set[str]) -> None:
        """Unmatched events of a type that has a meter now: their replay at meter creation failed (Kafka was
        down); replay them before this request's events, so they are never left behind."""
        for event_type in sorted(types):
            if self.unmatched.count(tenant, event_type=event_type):
                self.replay_unmatched(tenant, event_type)

    def replay_unmatched(self, tenant: str, event_type: str) -> int:
        """After a meter for `event_type` was created: its stored unmatched events, through translate + submit."""
        definitions = self.meters.definitions(tenant, {event_type})
        owners: dict[str, dict[str, str]] = {}

        def _translate(raw: Any) -> list[dict[str, Any]]:
            subject = raw.get("subject") if isinstance(raw, dict) else None
            if isinstance(subject, str) and subject not in owners:
                owners[subject] = self.customers.subject_customers(tenant, [subject])
            return translate(raw, definitions, owners.get(subject or "", {})).events

        return self.unmatched.replay(tenant, event_type, _translate, self.ingest.submit)

    # -- reads ---------------------------------------------------------------------------------------

    def meter_subjects(self, tenant: str, slug: str, start: datetime | None, end: datetime | None) -> list[str]:
        return self.group_values(tenant, slug, None, start, end)

    def group_values(
        self, tenant: str, slug: str, key: str | None, start: datetime | None, end: datetime | None
    ) -> list[str]:
        """The distinct non-empty values of a meter's group-by `key` (None: the subject) in its usage, sorted."""
        db = self.queries.db
        column = "subject" if key is None else "dimensions[{key:String}]"
        where = ["tenant = {tenant:String}", "meter = {meter:String}", f"{column} != ''"]
        params: dict[str, Any] = {"tenant": tenant, "meter": slug, "key": key or ""}
        time_range(start, end, where, params)
        sql = f"SELECT DISTINCT {column} AS v FROM {db}.rated_usage FINAL WHERE {' AND '.join(where)} ORDER BY v"
        return [r[0] for r in self.queries.query(sql, params)]

    def list_events(self, tenant: str, f: EventFilter) -> list[dict[str, Any]]:
        """Ingested events, newest first: see `EventFilter` and docs/openmeter.md (what is reconstructed)."""
        meters = {m.slug: m.definition for m in self.meters.list(tenant, include_deleted=True)}
        customer_ids = {c.meterstream_id: c.id for c in self.customers.list(tenant, page_size=10_000)[0]}
        wanted_customers = None
        if f.customer_ids:
            wanted_customers = set()
            for cid in f.customer_ids:
                try:
                    wanted_customers.add(self.customers.get(tenant, cid).meterstream_id)
                except LookupError:
                    wanted_customers.add(cid)
        out = self._rated_events(tenant, f, meters, customer_ids, wanted_customers)
        out += self._refused_events(tenant, f, meters)
        out += self._unmatched_events(tenant, f)
        out = [e for e in out if f.keeps(e, wanted_customers)]
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        out.sort(key=lambda e: (_parse(e["event"]["time"]) or epoch, str(e["event"]["id"])), reverse=True)
        page = out[: f.limit]
        for e in page:
            e.pop("_customer", None)
        return page

    def _rated_events(self, tenant: str, f: EventFilter, meters: dict[str, MeterDefinition],
                      customer_ids: dict[str, str], customers: set[str] | None) -> list[dict[str, Any]]:  # fmt: skip
        db = self.queries.db
        where = ["tenant = {tenant:String}", "startsWith(event_id, 'om:')"]
        params: dict[str, Any] = {"tenant": tenant, "limit": f.limit * 8}
        if f.subject is not None:
            where.append("subject = {subject:String}")
            params["subject"] = f.subject
        if customers:
            where.append("customer IN {customers:Array(String)}")
            params["customers"] = sorted(customers)
        time_range(f.start, f.end, where, params)
        if f.id is not None:
            where.append("endsWith(event_id, {idsuffix:String})")
            params["idsuffix"] = f":{f.id}"
        sql = (
            "SELECT event_id, subject, customer, meter, toString(quantity), toUnixTimestamp64Milli(time), "
            f"dimensions, source FROM {db}.rated_usage FINAL WHERE {' AND '.join(where)} "
            "ORDER BY time DESC, event_id LIMIT {limit:UInt32}"
        )
        grouped: dict[tuple[str, str], dict[str, Any]] = {}
        for event_id, subject, customer, meter, qty, ms, dims, source in self.queries.query(sql, params):
            parsed = parse_derived_id(event_id)
            source_id = (parsed[1], parsed[2]) if parsed else (source, event_id)
            definition = meters.get(meter)
            rec = grouped.get(source_id)
            if rec is None:
                when = format_time(datetime.fromtimestamp(ms / 1000, UTC))
                cloud = {"id": source_id[1], "source": source_id[0], "specversion": "1.0",
                         "type": definition.event_type if definition else meter, "subject": subject or None,
                         "time": when, "data": {}}  # fmt: skip
                rec = grouped[source_id] = {"event": cloud, "customerId": customer_ids.get(customer, customer),
                                            "ingestedAt": when, "storedAt": when, "_customer": customer}  # fmt: skip
            if definition is not None:
                _rebuild(rec["event"]["data"], definition, qty, dict(dims))
        return list(grouped.values())

    def _refused_events(self, tenant: str, f: EventFilter, meters: dict[str, MeterDefinition]) -> list[dict[str, Any]]:
        """Events refused by the API (their CloudEvent as received) and, by the processor, usage events translated
        from a CloudEvent (id `om:...`) that it could not rate, e.g. a meter no plan prices: their CloudEvent
        rebuilt as for rated events, so an accepted event never vanishes from the list."""
        db = self.queries.db
        sql = (
            f"SELECT stage, event_id, field, reason, raw FROM {db}.dead_letters FINAL "
            "WHERE tenant = {tenant:String} AND ((stage = 'api' AND topic = 'api') "
            "OR (stage = 'rate' AND startsWith(event_id, 'om:'))) "
            "ORDER BY offset DESC LIMIT {limit:UInt32}"
        )
        out = []
        for stage, event_id, fld, reason, raw in self.queries.query(sql, {"tenant": tenant, "limit": f.limit * 8}):
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            cloud = _cloud_event_of(data, meters) if stage == "api" else _cloud_event_of_usage(event_id, data, meters)
            if cloud is None:
                continue
            out.append({"event": cloud, "validationError": f"{fld}: {reason}", "customerId": None,
                        "ingestedAt": cloud["time"], "storedAt": cloud["time"]})  # fmt: skip
        return out

    def _unmatched_events(self, tenant: str, f: EventFilter) -> list[dict[str, Any]]:
        out = []
        for item in self.unmatched.list(tenant, limit=f.limit * 8):
            ev = item.event
            if not isinstance(ev, dict):
                continue
            at = item.received_at
            received = format_time(at if at.tzinfo else at.replace(tzinfo=UTC))
            cloud = {k: ev.get(k) for k in ("id", "source", "type", "subject", "time", "data")}
            cloud["specversion"] = "1.0"
            cloud["time"] = cloud["time"] or received
            out.append({"event": cloud, "validationError": item.reason, "customerId": None,
                        "ingestedAt": received, "storedAt": received})  # fmt: skip
        return out


@dataclass(frozen=True)
class EventFilter:
    """events.list parameters: OpenMeter's `id` (contains), `subject`, `customerId`, `from`/`to` on the event
    time, `ingestedAtFrom`/`ingestedAtTo`, and `limit` (1-100, default 100)."""

    id: str | None = None
    subject: str | None = None
    customer_ids: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    ingested_from: datetime | None = None
    ingested_to: datetime | None = None
    limit: int = 100

    def keeps(self, rec: dict[str, Any], customers: set[str] | None) -> bool:
        ev = rec["event"]
        if self.id is not None and self.id not in str(ev.get("id")):
            return False
        if self.subject is not None and ev.get("subject") != self.subject:
            return False
        if customers is not None and rec.get("_customer") not in customers:
            return False
        when = _parse(ev.get("time"))
        ingested = _parse(rec.get("ingestedAt"))
        if when is not None and ((self.start and when < self.start) or (self.end and when >= self.end)):
            return False
        if ingested is not None and self.ingested_from and ingested < self.ingested_from:
            return False
        return not (ingested is not None and self.ingested_to and ingested >= self.ingested_to)


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None  # a refused event's time may lack its offset


def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _put(data: dict[str, Any], path: str | None, value: Any) -> None:
    """Set `value` at a simple JSONPath ($.a.b) in `data`; other paths are skipped (not reconstructible)."""
    keys = simple_path(path) if path else None
    if not keys:
        return
    node = data
    for key in keys[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[keys[-1]] = value


def _rebuild(data: dict[str, Any], meter: MeterDefinition, qty: str, dims: dict[str, str]) -> None:
    """The parts of the original `data` a meter kept: its value and its group-by values."""
    if meter.aggregation == "UNIQUE_COUNT":
        if UNIQUE_DIMENSION in dims:
            _put(data, meter.value_property, dims[UNIQUE_DIMENSION])
    elif meter.aggregation != "COUNT":
        _put(data, meter.value_property, _number(qty))
    for name, path in meter.group_by.items():
        if name in dims:
            _put(data, path, dims[name])


def _cloud_event_of_usage(
    event_id: str, usage: dict[str, Any], meters: dict[str, MeterDefinition]
) -> dict[str, Any] | None:
    """The CloudEvent a translated usage event came from (`om:<meter>:<len>:<source>:<id>`), its data rebuilt from
    what the meter kept (as `_rated_events` does); None for a hashed id, which does not name its source and id."""
    parsed = parse_derived_id(event_id)
    if parsed is None:
        return None
    meter, source, cloud_id = parsed
    definition = meters.get(meter)
    dims = usage.get("dimensions")
    cloud = {"id": cloud_id, "source": source, "specversion": "1.0",
             "type": definition.event_type if definition else meter, "subject": usage.get("subject") or None,
             "time": usage.get("time"), "data": {}}  # fmt: skip
    quantity = usage.get("quantity")
    if definition is not None and isinstance(quantity, str):
        _rebuild(cloud["data"], definition, quantity, dims if isinstance(dims, dict) else {})
    return cloud


def _cloud_event_of(raw: dict[str, Any], meters: dict[str, MeterDefinition]) -> dict[str, Any] | None:
    """The CloudEvent of a dead letter written by this layer: the raw CloudEvent itself, or a translated
    usage event (refused by the ingest path) whose derived id names its source and id."""
    if isinstance(raw.get("source"), str) and "type" in raw and "meter" not in raw:
        cloud = {k: raw.get(k) for k in ("id", "source", "type", "subject", "time", "data")}
        cloud["specversion"] = "1.0"
        return cloud
    parsed = parse_derived_id(raw.get("id")) if isinstance(raw.get("id"), str) else None
    if parsed is None:
        return None
    meter, source, event_id = parsed
    definition = meters.get(meter)
    return {"id": event_id, "source": source, "specversion": "1.0",
            "type": definition.event_type if definition else meter, "subject": raw.get("subject"),
            "time": raw.get("time"), "data": None}  # fmt: skip
