"""The faust worker: reads usage events, runs `step.process`, writes rated usage and dead letters.

Billing correctness does not hinge on faust (see shared pitfalls): the agent processes one message at a
time in offset order (no gaps in acks, #606), uses at-least-once (no transactions, #517), keeps no
windowed tables (#193/#250), and all state lives in one table whose changelog partition is the
source partition, so dedup entries are durable before the running totals they guard. Outputs go to
the source partition number and are deterministic, so a replay only repeats identical records.

Table writes and source offsets are not committed together here (unlike the native engine's one
WriteBatch), so a message can come back after a crash with its dedup entry written and its output
or some of its running totals not. The shared step (`step.evaluate` / `step.commit`) knows nothing of
that: this engine keeps, per processed position, its own entry `f|<partition>|<offset>` -> `{"p", "t",
"r": rated record, "w": running-total writes}` in the same table, written before the dedup entry
(same changelog partition, so in that order), and on a replay of that position finishes the writes
and re-emits the record unchanged (`process_replayable`). A separate faust Table would have its own
changelog topic, with no order against the dedup entries after a crash.

Dedup entries older than the window are purged like the native engine does (`PartitionStore.purge_before`):
when a partition's first message is processed and then whenever the cutoff day moves, the agent deletes
that partition's expired `d|` entries (and the `f|` entries of the same age) from the table, inside the
message's processing, since faust only lets an agent write (and tombstone in the changelog) the
partition of the event it is processing. The table has no day index, so a purge scans the locally held
table once a day per partition; a partition without traffic is not purged, but then it does not grow
either.

Prepaid debit (processor/balances.py, the same `Balances` as the native engine: one specification of the wallet
rules): the worker rates against the live catalog (the `entities` topic over the catalog file, as the native
engine), and after each rated event of a customer with a wallet or a credit limit runs `Balances.after_batch` on
that one row, with the table as the state (the entry `w|<tenant>\x1f<customer>` lives on the customer's own
partition, as its usage). The balance, provisioning and notification outputs are sent first, then the entry is
written: a crash between them repeats the outputs with the same ids (the entry keeps the last debited offset, so
a replayed event is never debited twice). Not done here: a wallet change without usage (a top-up, a new
rule) is decided at the customer's next event, not at once (the native engine's `tick`: faust lets an agent
write a table only while it processes an event of that partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import faust
import orjson

from meterstream.ingest.topics import Topics
from meterstream.ops_http import serve_ops
from meterstream.processor import metrics
from meterstream.processor.balances import Balances
from meterstream.processor.dedup import DEDUP_PREFIX
from meterstream.processor.live_catalog import open_catalog_view
from meterstream.processor.runner import app_id
from meterstream.processor.step import Kind, Outcome, Position, Priced, apply_writes, commit, evaluate
from meterstream.processor.store import DAY_MS
from meterstream.rating.catalog import Catalog, PlanSource, load_catalog
from meterstream.schemas.event import TimeWindow, partition_of_key
from meterstream.schemas.rated import row_of
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.processor")
OUTPUT_PREFIX = "f|"  # this engine's own entries: what a processed position emitted and wrote
_PURGED_PREFIXES = (DEDUP_PREFIX, OUTPUT_PREFIX)


def output_key(partition: int, offset: int) -> str:
    return f"{OUTPUT_PREFIX}{partition}|{offset}"


def process_replayable(
    catalog: Catalog,
    state: MutableMapping[str, Any],
    value: bytes,
    pos: Position,
    now_ms: int,
    window_ms: int,
    time_window: TimeWindow | None = None,
) -> Outcome:
    """`step.process` for a state that is not committed with the input offset.

    A new event: its output entry, then the shared commit (dedup entry, running totals). A replay of a
    position whose output entry exists: the running totals the crash may have cut off are finished
    (`apply_writes` skips those already at this offset) and the same record is emitted again.
    """
    out = evaluate(catalog, state, value, pos, now_ms, window_ms, time_window)
    if isinstance(out, Priced):
        kept = {"p": pos.partition, "t": now_ms, "r": out.record, "w": out.writes}
        state[output_key(pos.partition, pos.offset)] = kept
        return commit(state, out, pos, now_ms)
    if out.kind is Kind.REPLAYED:
        done = state.get(output_key(pos.partition, pos.offset))
        if done is not None:
            apply_writes(state, done["w"], pos.offset)
            return Outcome(Kind.REPLAYED, rated=done["r"])
    return out


def expired_dedup_keys(items: Iterable[tuple[str, Any]], partition: int, cutoff_day: int) -> list[str]:
    """Keys of the dedup and output entries of `partition` written before `cutoff_day` (days since the epoch).

    The same rule as `PartitionStore.purge_before`; the entry's `p` says which input partition wrote it
    (and so which changelog partition holds it). An output entry goes with the dedup entry written at
    the same time: a replay of its position is then no longer recognised either.
    """
    cutoff_ms = cutoff_day * DAY_MS
    return [
        key
        for key, entry in items
        if key.startswith(_PURGED_PREFIXES) and entry is not None and entry["p"] == partition and entry["t"] < cutoff_ms
    ]


class DedupPurger:
    """Forgets ids older than the dedup window, per partition, at most once per cutoff day."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.purged_day: dict[int, int] = {}

    def purge(self, state: MutableMapping[str, Any], partition: int, now_ms: int) -> int:
        """Delete `partition`'s expired entries from `state` if the cutoff day moved; returns how many."""
        cutoff_day = (now_ms - self.window_ms) // DAY_MS
        if self.purged_day.get(partition) == cutoff_day:
            return 0
        expired = expired_dedup_keys(list(state.items()), partition, cutoff_day)
        for key in expired:
            del state[key]
        self.purged_day[partition] = cutoff_day
        return len(expired)


class TableState(MutableMapping[str, Any]):
    """The table as the shared step writes it: a write of None deletes the key (a changelog tombstone), as the native
    store does (processor/store.py: a released session's `h|held|` key); faust itself would keep the JSON value null,
    in the table and in its changelog, for every session ever held."""

    __slots__ = ("table",)

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        return self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        if value is not None:
            self.table[key] = value
        elif key in self.table:
            del self.table[key]

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


class _Pending:
    """The table as `Balances` sees it: reads through, writes kept until the outputs are sent (`writes`)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.writes: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.writes[key] if key in self.writes else self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value


def _partition_counts(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": settings.bootstrap}).list_topics(timeout=30)
    return {name: len(md.topics[name].partitions) for name in names}


def build_app(settings: Settings, catalog: PlanSource | Catalog) -> faust.App:
    topics = Topics.from_settings(settings)
    window_ms = settings.dedup_window_days * 86_400_000
    time_window = TimeWindow.of(settings.event_max_age_days, settings.event_max_future_minutes)
    datadir = settings.home.resolve() / "processor" / app_id(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings),
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=5_000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        table_standby_replicas=0,
    )
    usage = app.topic(topics.usage, key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    rated = app.topic(topics.rated, key_serializer="raw", value_serializer="raw")
    dead = app.topic(topics.dead_letters, key_serializer="raw", value_serializer="raw")
    state = app.Table("state", default=None, partitions=settings.partitions, key_type=str)
    status = metrics.ProcessorStatus()
    purger = DedupPurger(window_ms)
    balances = Balances.of_catalog(settings, catalog)  # None: a catalog without live entities (no wallets)
    outputs: dict[str, tuple[Any, int]] = {}
    if balances is not None:
        from meterstream.ingest.topics import ensure_provisioning_topics

        ensure_provisioning_topics(settings)
        names = (balances.balances, balances.provisioning, balances.notifications)
        for name, count in _partition_counts(settings, names).items():
            outputs[name] = (app.topic(name, key_serializer="raw", value_serializer="raw"), count)

        @app.timer(interval=0.2)
        async def poll_entities() -> None:
            catalog.poll_updates()  # type: ignore[union-attr]  # entity changes: seen by the next event

    @app.agent(usage)
    async def rate_usage(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            t0 = time.perf_counter()
            metrics.EVENTS_IN.inc()
            now_ms = int(time.time() * 1000)
            purged = purger.purge(state, msg.partition, now_ms)
            if purged:
                metrics.DEDUP_PURGED.inc(purged)
            out = process_replayable(
                catalog,
                TableState(state),
                msg.value,
                Position(msg.topic, msg.partition, msg.offset, msg.key, _timestamp_ms(msg)),
                now_ms,
                window_ms,
                time_window=time_window,
            )
            if out.rated is not None:
                await rated.send(key=msg.key, value=orjson.dumps(out.rated), partition=msg.partition)
                if balances is not None:
                    pending, rows = _Pending(state), {msg.partition: [row_of(out.rated)]}
                    for topic, key, value in balances.after_batch({msg.partition: pending}, rows, {}, now_ms):
                        target, count = outputs[topic]  # keyed by customer: librdkafka's partitioner, as natively
                        await target.send(key=key, value=value, partition=partition_of_key(key, count))
                    for key, entry in pending.writes.items():
                        state[key] = entry
            elif out.dead_letter is not None:
                dl = out.dead_letter
                metrics.DEAD_LETTERS.labels(dl["stage"], dl["field"]).inc()
                await dead.send(key=msg.key, value=orjson.dumps(dl), partition=msg.partition)
            metrics.OUTCOMES.labels(out.kind.value).inc()
            metrics.STEP_SECONDS.observe(time.perf_counter() - t0)
            status.processed(1)
            if status.events % 1000 == 0 or out.kind is Kind.DEAD_LETTER:
                _update_lag(app, msg, status)

    app.meterstream_status = status  # type: ignore[attr-defined]
    return app


def _timestamp_ms(msg: Any) -> int | None:
    """The message's Kafka timestamp in epoch milliseconds (faust gives seconds as a float), or None."""
    ts = getattr(msg, "timestamp", None)
    return round(ts * 1000) if ts is not None and ts > 0 else None


def _update_lag(app: faust.App, msg: Any, status: metrics.ProcessorStatus) -> None:
    try:
        high = app.consumer.highwater(msg.tp)
        if high is not None:
            status.set_lag(msg.partition, max(high - msg.offset - 1, 0))
    except Exception:  # lag is advisory
        pass


def run_worker(settings: Settings) -> None:
    """Run the processor until SIGTERM/SIGINT (faust handles both and shuts down cleanly)."""
    # live entities (the compacted `entities` topic) first, the catalog file as fallback: as the native engine
    catalog = open_catalog_view(settings, load_catalog(settings.catalog))
    app = build_app(settings, catalog)
    status = app.meterstream_status  # type: ignore[attr-defined]

    serve_ops(
        settings.processor_metrics_port,
        host=settings.ops_host,
        health=status.health,
        setting="METERSTREAM_PROCESSOR_METRICS_PORT",
    )
    worker = faust.Worker(app, loglevel="WARN", quiet=True)
    worker.execute_from_commandline()
