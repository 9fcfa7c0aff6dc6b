"""The processor's hot path, one polled batch at a time: decode all, dedup with one multi-get, rate per
(tenant, customer, meter, period) group from cached running totals, and leave every state write in
the partition's buffer (`store.BatchState`), which the checkpoint commits as one WriteBatch.

Equal to the per-message specification by construction where it matters and by test elsewhere:

- `step.process` (parse -> dedup -> rate, with `rating.delta` and the telecom rater) stays the one
  specification. Every message this path is not sure about goes through `step.process` itself, on
  the same buffer, in its place in the sequence: whatever `processor/decode.py` does not recognise as
  plainly valid (so every malformed event, and every error message), a replay of the same position,
  a customer without a plan, a meter the plan does not price, a destination without a rate, any
  exception while pricing. Those are rare; the running-total cache is dropped after one of them
  writes state.
- For the common event it does what `step.process` does, in the same order and with the same
  values and encodings: the dedup verdict (`processor/dedup.py`: same position = replay, within the
  window = duplicate), the new cumulative `before + quantity` in `money.EXACT` as `rate_event`
  computes it, the amount as `pricer.total(after) - pricer.total(before)` under
  `money.EXACT` (that is `UsagePricer.delta`; total(before) is the previous event's total(after),
  kept instead of recomputed), other pricers' own `delta`, `rate_cdr` for telecom records (`brief`: its
  memo's cost, line and bundle without building the RatedCDR) with the
  bundle use read back from the state's text form, the dedup entry `{"p", "o", "t"}`, the running
  total `[text, offset]`, and the rated record with the same values, as a row in the record's field
  order (the runner sends the rows as JSON rows, `schemas.rated.pack_rows`; the specification's records
  are turned into rows too). tests/processor/test_columnar_differential.py runs random batches through
  both and requires the same records (every value, decoded back from the JSON rows messages), dead
  letters and RocksDB contents, key by key.

Rating stays exact: Decimal in the engine's explicit context, never float.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from meterstream.processor import metrics
from meterstream.processor.decode import Decoder, Fast
from meterstream.processor.dedup import DEDUP_PREFIX
from meterstream.processor.rate import BUNDLE_PREFIX, CUMULATIVE_PREFIX
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import ENTRY_TAG, BatchState, decode_value, pack_tagged_entry
from meterstream.rating.catalog import Plan, PlanSource
from meterstream.rating.money import EXACT, exact_runner
from meterstream.rating.pricer import UsagePricer
from meterstream.rating.telecom import NoRate, rate_cdr
from meterstream.schemas.event import DEFAULT_TIME_WINDOW, TimeWindow, partition_of
from meterstream.schemas.rated import DeadLetter, RatedRow, RowPacker, row_of

log = logging.getLogger("meterstream.processor")
_MISSING = object()
_MISROUTED_LOGGED = 10  # customers named in the log one by one; after that, every 1,000th
# Quantities and amounts this large are left to the specification, which refuses what the store's
# Decimal(38, s) columns cannot hold (with its own wording); 10**18 is under both limits.
_BIG = Decimal(10**18)
_NEG_BIG = -_BIG
_TELECOM = "telecom"
_USAGE = "usage"
_OTHER = "other"
_NO_PLAN = object()
_TIMED = object()  # a route that depends on the event's time (live subscriptions)
_ROUTES_MAX = 100_000  # (tenant, customer, meter) routes kept; cleared when exceeded
_WRITES_TOTALS = (Kind.RATED, Kind.REPLAYED)
# messages of one partition decoded, rated and packed together before the next ones: a polled batch (up to
# runner.BATCH_MAX) goes through in chunks of this many, so that a chunk's decoded events and rows are still in
# the CPU's caches when the next stage reads them (a whole partition's 5,000-20,000 events' objects, ~1.5 KB
# each, are not); the batch still commits as one (its state buffer, one WriteBatch)
CHUNK = 512


class Message(NamedTuple):
    """One input message: where it sits in Kafka and its bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # the Kafka timestamp (None or negative: none; the batch clock then)


class BatchOutput:
    """What one batch produced, per input partition, in input order."""

    __slots__ = ("balances", "dead_letters", "last", "messages", "outcomes", "rated")

    def __init__(self) -> None:
        # rated records as rows (values in schemas.rated.RATED_FIELDS order), to be packed as JSON rows
        # (schemas.rated.pack_rows)
        self.rated: dict[int, list[RatedRow]] = {}
        # the same rows as message values, per partition, when the step packs them (ColumnarStep.pack)
        self.messages: dict[int, list[bytes]] = {}
        self.dead_letters: list[tuple[int, bytes | None, DeadLetter]] = []  # (partition, key, letter)
        self.outcomes: dict[int, Counter[str]] = {}
        self.last: dict[int, int] = {}  # last offset seen per partition
        # prepaid balances' outputs (topic, key, value): snapshots, provisioning commands, notifications
        self.balances: list[tuple[str, bytes, bytes]] = []


class Columns(NamedTuple):
    """One partition's messages of a batch, in Kafka order, as the columns the batch path reads: the messages as
    they came (`sources`: `Message` tuples, or the consumer's own messages, processor/runner.py `kafka_columns`,
    which are then never copied into tuples), their offsets, values and Kafka timestamps (None: none), and
    `message`, which makes one source a whole `Message` (for the few that go through the specification)."""

    sources: list[Any]
    offsets: list[int]
    values: list[bytes | None]
    timestamps: list[int | None]
    message: Callable[[Any], Message]

    def cut(self, start: int, stop: int) -> Columns:
        """Messages start..stop-1 (a chunk)."""
        return Columns(self.sources[start:stop], self.offsets[start:stop], self.values[start:stop],
                       self.timestamps[start:stop], self.message)  # fmt: skip


_offset_of = itemgetter(Message._fields.index("offset"))
_value_of = itemgetter(Message._fields.index("value"))
_timestamp_of = itemgetter(Message._fields.index("timestamp_ms"))


def _itself(m: Message) -> Message:
    return m


def columns_of(msgs: Sequence[Message]) -> dict[int, Columns]:
    """`Message` tuples of any partitions as each partition's columns, in order."""
    by_partition: dict[int, list[Message]] = {}
    for m in msgs:
        by_partition.setdefault(m.partition, []).append(m)
    return {
        p: Columns(ms, list(map(_offset_of, ms)), list(map(_value_of, ms)), list(map(_timestamp_of, ms)), _itself)
        for p, ms in by_partition.items()
    }


class _Fallback(Exception):
    """This message goes through the per-message specification."""


class ColumnarStep:
    """The batch path for one worker; keeps per-process caches of the catalog and of decoded values."""

    def __init__(
        self, catalog: PlanSource, topic: str, window_ms: int, time_window: TimeWindow | None = DEFAULT_TIME_WINDOW
    ) -> None:
        self.catalog = catalog
        self.topic = topic
        self.window_ms = window_ms  # how long an event id is remembered
        self.time_window = time_window  # how far an event's time may lie from its receive time
        self.decoder = Decoder(time_window)
        self.plans: dict[tuple[str, str], Any] = {}  # (tenant, customer) -> Plan or _NO_PLAN
        self.meters: dict[tuple[int, str], tuple[Plan, tuple[str, Any] | None]] = {}  # (id(plan), meter) -> how
        # (tenant, customer, meter) -> (plan, kind, pricing function), None where the specification decides
        self.routes: dict[tuple[str, str, str], Any] = {}  # or _TIMED
        self.generation = getattr(catalog, "generation", 0)  # of the catalog the caches were built from
        self.balances: Any = None  # processor.balances.Balances: debits the rated rows after each batch
        # makes the packer of a partition's rated rows into message values (schemas.rated.RowPacker: JSON rows),
        # which gets each chunk's rows right after the chunk is rated, while they are still in the CPU's caches;
        # None: the caller packs `rated`
        self.pack: Callable[[], RowPacker] | None = None
        # the usage topic's partition count, set by the runner: each customer's partition is then checked
        # against its key's (`partition_of`) once per batch (`_check_home`); None: not checked
        self.partitions: int | None = None
        self.homes: dict[tuple[str, str], int] = {}  # (tenant, customer) -> the partition its events came on
        self.misrouted: set[tuple[str, str]] = set()  # customers seen on another partition than their key's
        # `BatchOutput.rated` holds every rated row (True), or only the rows prepaid balances debit when `pack` is set
        # and none is watched, the rest freed as soon as each chunk is packed (False: the runner, which produces the
        # packed messages only)
        self.keep_rows = True
        self.chunk = CHUNK  # messages of a partition decoded, rated and packed together (tests set fewer)

    def run(self, states: dict[int, BatchState], msgs: Sequence[Message], now_ms: int) -> BatchOutput:
        """Process `msgs` (any partitions, Kafka order within each) against their partitions' buffers."""
        return self.run_columns(states, columns_of(msgs), now_ms)

    def run_columns(self, states: dict[int, BatchState], partitions: dict[int, Columns], now_ms: int) -> BatchOutput:
        """`run` for messages already in columns per partition (the runner's, `kafka_columns`)."""
        self._fresh()
        out = BatchOutput()
        pack, balances, chunk = self.pack, self.balances, self.chunk
        # a chunk's rows, once packed, are needed again only to debit prepaid balances (`keep_rows`: by the caller)
        drop = pack is not None and not self.keep_rows and (balances is None or not balances.needs_rows())
        for p, ms in partitions.items():
            if balances is not None:  # the partition's stream time, for held sessions (processor/balances.py)
                balances.observe_partition(p, ms.timestamps)
            state = states[p]
            rows = out.rated[p] = []
            packer = pack() if pack is not None else None
            counts: Counter[str] = Counter()
            groups: dict[tuple[str, str, str, str], list[Any]] = {}  # running totals met in this batch (`_partition`)
            bundles: dict[str, tuple[Any, dict[str, Decimal]]] = {}
            # in chunks of CHUNK messages, each decoded, rated and encoded before the next: a chunk's
            # objects (decoded events, rows) stay in the CPU's caches from one stage to the next (see CHUNK)
            size = len(ms.offsets)
            for start in range(0, size, chunk):
                first = len(rows)
                part = ms if size <= chunk else ms.cut(start, start + chunk)
                self._partition(state, p, part, now_ms, out, counts, groups, bundles)
                if packer is not None:
                    packer.add(rows[first:])
                    if drop:  # freed now, while still in the CPU's caches, not after the batch
                        del rows[first:]
            # in Kind order, zeros left out: the counters' JSON in the store is byte-identical to the legacy loop's
            out.outcomes[p] = Counter({k.value: n for k in Kind if (n := counts[k.value])})
            if packer is not None:
                out.messages[p] = packer.values()
        if balances is not None:  # prepaid debit, in the same buffers (processor/balances.py)
            out.balances = balances.after_batch(states, out.rated, out.last, now_ms)
        return out

    def _route(self, tenant: str, customer: str, meter: str) -> tuple[Plan, str, Any] | None:
        """How to rate this customer's meter (memoised): its plan, the pricer's kind and function; `_TIMED`
        when live subscriptions decide the plan, which then depends on each event's time (`_timed_route`)."""
        if self.catalog.timed(tenant, customer):
            route: Any = _TIMED
        else:
            plan = self.plans.get((tenant, customer))
            if plan is None:
                plan = self.catalog.plan_for(tenant, customer, meter, None) or _NO_PLAN
                self.plans[(tenant, customer)] = plan
            how = None if plan is _NO_PLAN else self._rating(plan, meter)
            route = None if how is None else (plan, how[0], how[1])
        if len(self.routes) >= _ROUTES_MAX:
            self.routes.clear()
        self.routes[(tenant, customer, meter)] = route
        return route

    def _timed_route(self, f: Fast) -> tuple[Plan, str, Any] | None:
        """The route of one event of a customer whose subscriptions change over time: the plan in effect
        at the event's own time (processor/live_catalog.py), not cached across events."""
        plan = self.catalog.plan_for(f.tenant, f.customer, f.meter, f.time)
        how = None if plan is None else self._rating(plan, f.meter)
        return None if how is None else (plan, how[0], how[1])  # type: ignore[return-value]

    def _fresh(self) -> None:
        """Drop what was derived from the catalog when it changed (live entity updates)."""
        generation = getattr(self.catalog, "generation", 0)
        if generation != self.generation:
            self.generation = generation
            self.plans.clear()
            self.routes.clear()
            self.meters.clear()

    def _rating(self, plan: Plan, meter: str) -> tuple[str, Any] | None:
        # keyed by the plan object (live plans of one `code@version` differ per tenant and by a
        # subscription's overrides); the entry keeps the plan, so its id is not reused meanwhile
        key = (id(plan), meter)
        entry = self.meters.get(key)
        if entry is not None and entry[0] is plan:
            return entry[1]
        how: tuple[str, Any] | None
        price = plan.prices.get(meter)
        if price is not None:
            pricer = price.pricer
            how = (_USAGE, pricer.total) if type(pricer) is UsagePricer else (_OTHER, pricer.delta)
        elif meter in plan.telecom_meters:
            how = (_TELECOM, plan.telecom)
        else:
            how = None
        self.meters[key] = (plan, how)
        return how

    def _partition(
        self,
        state: BatchState,
        p: int,
        msgs: Columns,
        now_ms: int,
        out: BatchOutput,
        counts: Counter[str],
        groups: dict[tuple[str, str, str, str], list[Any]],
        bundles: dict[str, tuple[Any, dict[str, Decimal]]],
    ) -> None:
        """One chunk of partition p's messages, in Kafka order: rows and dead letters into `out`, the last offset
        into `out.last`, each message's outcome added to `counts`. `groups` and `bundles` (below) are the
        partition's for the whole batch: its chunks share them, so a (customer, meter, period) met in an earlier
        chunk is not read back from the buffer again (with 5,000-20,000 events per partition and batch, most
        groups recur across chunks far more often than within one)."""
        received = msgs.timestamps  # Kafka's timestamps, as they are ...
        try:
            stamped = min(received) >= 0
        except TypeError:  # a None among them
            stamped = False
        if not stamped:  # ... unless one is missing or negative: the batch clock for those
            received = [now_ms if t is None or t < 0 else t for t in received]
        events = self.decoder.decode(msgs.values, received)
        pending = state.pending
        earlier = state.after.pending if state.after is not None else {}
        dkeys = [None if f is None else f"{DEDUP_PREFIX}{f.tenant}\x1f{f.id}" for f in events]
        # every event's stored entry (encoded; None: not stored), in one multi-get, read in the loop only where
        # neither this batch nor the uncommitted ones before it wrote the key (b"": no event, no entry)
        stored = state.store.get_many_raw([b"" if k is None else k.encode() for k in dkeys])
        lines = out.rated.setdefault(p, [])
        dead = out.dead_letters
        rated_n = dup_n = 0
        # (tenant, customer, meter, period) -> [before, last offset written, total(before), its pricer, its c| key,
        # its customer's b| key or None, its route or None, the running total's value it put in `pending` or None]:
        # the keys' texts built once per group, not per event;
        # the route (plan, kind, pricing function) kept unless it depends on each event's time (`_TIMED`), so that
        # an event of a known group is looked up once, by its month (`groups`, the partition's for the batch);
        # `bundles`: b| key -> (the state's value, its bundle use as decimals: read back from the value's text, as
        # the specification reads it, once per change instead of once per event)
        routes, route_of, window_ms = self.routes, self._route, self.window_ms
        run_exact, add, subtract = exact_runner(), EXACT.add, EXACT.subtract
        get, entry = state.get, pack_tagged_entry
        for source, offset, f, dkey, raw in zip(msgs.sources, msgs.offsets, events, dkeys, stored, strict=True):
            try:
                if f is None:
                    raise _Fallback
                seen = pending.get(dkey, _MISSING)
                if seen is _MISSING:
                    seen = earlier.get(dkey, raw)  # else the stored entry (encoded), or None: not stored
                if seen is not None:
                    if seen.__class__ is bytes:  # encoded: stored, or packed by this path (`pack_tagged_entry`)
                        seen = decode_value(seen)
                    if seen["p"] == p and seen["o"] == offset:
                        raise _Fallback  # a replay of this very message
                    if now_ms - seen["t"] <= window_ms:
                        dup_n += 1
                        continue
                tenant, customer, meter = f.tenant, f.customer, f.meter
                origin = f.origin
                okey = None  # its origin's entry to write (processor/dedup.py, Origins), as step.evaluate decides
                if origin is not None:
                    okey = f"{DEDUP_PREFIX}{tenant}\x1e{origin[0]}"
                    oseen = get(okey)
                    if oseen is not None and now_ms - oseen["t"] <= window_ms:
                        if oseen["k"] != origin[1]:
                            dup_n += 1  # the client event was first sent as another kind: a duplicate
                            continue
                        okey = None  # known with this kind: nothing to write
                period = f.time_text[:7]
                group = groups.get((tenant, customer, meter, period))
                if group is None or group[6] is None:  # not yet, or a live subscription's (route per event)
                    route = routes.get((tenant, customer, meter), _MISSING)
                    if route is _MISSING:
                        route = route_of(tenant, customer, meter)
                    timed = route is _TIMED
                    if timed:
                        route = self._timed_route(f)
                        if route is not None:  # a live subscription's own billing period (as rate_event)
                            own = self.catalog.period_for(tenant, customer, meter, f.time)
                            if own is not None:
                                period = own
                    if route is None:
                        raise _Fallback  # no plan, or the plan does not price the meter: the specification words it
                    gkey = (tenant, customer, meter, period)
                    group = groups.get(gkey)
                    if group is None:
                        if self.partitions is not None and self.homes.get((tenant, customer)) != p:
                            self._check_home(tenant, customer, p)
                        ckey = f"{CUMULATIVE_PREFIX}{tenant}\x1f{customer}\x1f{meter}\x1f{period}"
                        current = get(ckey)
                        # the route is kept with the group unless it depends on the event's time
                        kept = None if timed else route
                        if current is None:
                            group = [None, -1, None, None, ckey, None, kept, None]
                        else:
                            group = [Decimal(current[0]), current[-1], None, None, ckey, None, kept, None]
                        groups[gkey] = group
                else:
                    route = group[6]
                plan, kind, fn = route
                before, written, total_before, priced_by, ckey, bkey, _, total_value = group
                if written >= offset:
                    raise _Fallback  # a later write already landed: the specification decides
                after = add(before, f.quantity) if before is not None else f.quantity  # as rate_event does
                if after >= _BIG:
                    raise _Fallback  # near the column's limits: the specification decides (and words it)
                text = str(after)  # format(after, "f") where str() gives no exponent (the same text), faster
                if "E" in text:
                    text = format(after, "f")
                line = meter
                total_after = None
                bvalue = None
                if kind is _USAGE:
                    total_after = run_exact(fn, after)
                    if before is None:
                        amount = total_after
                    else:
                        if total_before is None or priced_by is not fn:  # none yet, or another plan's
                            total_before = run_exact(fn, before)
                        amount = subtract(total_after, total_before)
                elif kind is _OTHER:
                    amount = run_exact(fn, before, after)
                else:
                    if bkey is None:
                        bkey = group[5] = f"{BUNDLE_PREFIX}{tenant}\x1f{customer}\x1f{period}"
                    cached = bundles.get(bkey)
                    if cached is None:
                        current = get(bkey)
                        used = {k: Decimal(v) for k, v in current[0].items()} if current is not None else {}
                        cached = bundles[bkey] = (current, used)
                    current, used = cached
                    if current is not None and current[-1] >= offset:
                        raise _Fallback
                    try:
                        cdr = rate_cdr(
                            fn,
                            meter=meter,
                            quantity=f.quantity,
                            time_text=f.time_text,  # the canonical UTC text: parsed by the rater only if needed
                            dimensions=f.dimensions,
                            bundle_used=used,
                            brief=True,
                        )
                    except NoRate:
                        raise _Fallback from None
                    if type(cdr) is tuple:  # the rater's memo, briefly: (cost, line key, bundle or None, billed)
                        amount, line, bundle, units = cdr
                        covered = {bundle: units} if bundle is not None else None
                    else:
                        amount, line, covered = cdr.cost, cdr.line_key, cdr.bundle_units_used
                    if covered:
                        used = dict(used)  # the cached one is the state before this event
                        for bundle, units in covered.items():
                            used[bundle] = add(used[bundle], units) if bundle in used else units
                        bvalue = [{k: format(v, "f") for k, v in used.items()}, offset]
                if not _NEG_BIG < amount < _BIG:
                    raise _Fallback
                amount_text = str(amount)
                if "E" in amount_text:
                    amount_text = format(amount, "f")
                record = (  # schemas.rated.RATED_FIELDS, in order
                    tenant,
                    f.id,
                    customer,
                    f.subject or "",
                    meter,
                    f.time_text,
                    period,
                    f.quantity_text,
                    amount_text,
                    text,
                    plan.currency,
                    plan.id,
                    line,
                    f.dimensions,
                    f.source or "",
                    p,
                    offset,
                )
            except Exception:  # _Fallback, or pricing raised: the specification decides (raising the same, or not)
                if self._fallback(state, msgs.message(source), now_ms, lines, dead, counts) in _WRITES_TOTALS:
                    groups.clear()  # it moved running totals: read them again from the buffer
                    bundles.clear()
                continue
            # the writes, in step.process's order: dedup entry, origin entry, running total, bundle use
            pending[dkey] = entry(ENTRY_TAG, p, offset, now_ms)  # {"p", "o", "t"}, packed (store.pack_tagged_entry)
            if okey is not None:
                pending[okey] = {"p": p, "o": offset, "t": now_ms, "k": origin[1]}  # type: ignore[index]
            if total_value is None:
                pending[ckey] = group[7] = [text, offset]
            else:  # the list this group put in the buffer (still there, in its place): updated in place
                total_value[0], total_value[1] = text, offset
            group[0] = after if len(text) < 28 else Decimal(text)  # what the next event reads back
            group[1], group[2], group[3] = offset, total_after, fn
            if bvalue is not None:
                pending[bkey] = bvalue
                bundles[bkey] = (bvalue, {k: Decimal(v) for k, v in bvalue[0].items()})  # type: ignore[index]
            lines.append(record)
            rated_n += 1
        out.last[p] = msgs.offsets[-1]
        counts[Kind.RATED.value] += rated_n
        counts[Kind.DUPLICATE.value] += dup_n

    def _check_home(self, tenant: str, customer: str, p: int) -> None:
        """A customer's events must all come on one partition, its key's (docs/events.md), since its running
        totals and wallet live in that partition's state: events produced with another partitioner (the Java
        client's default murmur2), without the key, or to a chosen partition are rated against a second set
        of totals. Counted once per customer (`meterstream_processor_misrouted_customers_total`) and logged."""
        homes = self.homes
        if len(homes) >= _ROUTES_MAX:
            homes.clear()
        seen = homes.setdefault((tenant, customer), p)
        assert self.partitions is not None
        expected = partition_of(tenant, customer, self.partitions)
        if (p == expected and seen == p) or (tenant, customer) in self.misrouted:
            return
        if len(self.misrouted) >= _ROUTES_MAX:
            self.misrouted.clear()
        self.misrouted.add((tenant, customer))
        metrics.MISROUTED.inc()
        n = len(self.misrouted)
        if n <= _MISROUTED_LOGGED or n % 1000 == 0:
            log.warning(
                "customer %r of tenant %r: usage on partition %d%s, but its key %r belongs on partition %d: "
                "produce usage with the key tenant/customer and librdkafka's default partitioner (docs/events.md); "
                "%d customer(s) so far",
                customer, tenant, p, "" if seen == p else f" and {seen}", f"{tenant}/{customer}", expected, n,
            )  # fmt: skip

    def _fallback(
        self,
        state: BatchState,
        m: Message,
        now_ms: int,
        lines: list[RatedRow],
        dead: list[tuple[int, bytes | None, DeadLetter]],
        counts: Counter[str],
    ) -> Kind:
        """One message through the per-message specification, exactly as the legacy loop calls it."""
        pos = Position(self.topic, m.partition, m.offset, m.key, m.timestamp_ms)
        outcome = process(self.catalog, state, m.value, pos, now_ms, self.window_ms, time_window=self.time_window)
        if outcome.rated is not None:
            lines.append(row_of(outcome.rated))
        elif outcome.dead_letter is not None:
            dead.append((m.partition, m.key, outcome.dead_letter))
        counts[outcome.kind.value] += 1
        return outcome.kind


__all__ = ["BatchOutput", "ColumnarStep", "Columns", "Message", "columns_of"]
