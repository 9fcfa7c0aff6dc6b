"""End-to-end throughput and latency of the deployed pipeline on a real broker (issue 6).

    python bench/e2e.py [--events N] [--workers 1|2] [--engine native|legacy] [--json FILE]
                        [--latency-seconds S] [--keep-broker] [--keep-topics] [--period YYYY-MM]

One run, four phases, all on the same broker (a local one under --home, started if needed, or
METERSTREAM_KAFKA_BOOTSTRAP), with fresh topics (deleted at the end unless --keep-topics), a fresh chdb store and
fresh consumer groups:

1. **Produce.** N events of the demo workload (`ingest.workload`, mixed telco/cloud tenants, 3%
   duplicates, 0.5% malformed) are generated up front and produced to `usage-events` with the
   pipeline's own idempotent producer (`acks=all`). Nothing consumes them yet. They are dated in
   last month (UTC; `--period` to choose), like the demo's: inside the default event-time window
   whatever the day, and the same events (fixed seed) for every run within a month.
2. **Raw baseline.** One confluent-kafka consumer (fresh group, `consume(10000)`) reads the whole
   topic and `orjson.loads` every value, nothing else: events/s.
3. **Pipeline (backlog drain).** The processor instance(s) (`python -m meterstream.deploy.cli process`, n of them
   in one consumer group, each with its own ops port) and the ClickHouse sink start as separate OS processes, as
   deployed, on the
   pre-produced backlog. We measure the *backlog* method (documented option of the issue): the
   events are already in Kafka, so "first produce" is replaced by the moment the pipeline starts
   moving. `pipeline_events_per_s` = N / (t_drained - t_first_commit), where t_first_commit is the
   first poll (every 0.2 s) at which the processor group has committed anything, and t_drained the
   first poll at which the processor group *and* the sink group have committed everything (the sink
   commits only after ClickHouse acknowledged the insert, so committed = visible). We also report
   the wall time from process launch (`pipeline_wall_incl_startup_s`).
4. **Latency at half the max rate.** With the pipeline still running, a second workload (new ids) is
   produced at a fixed rate of `--latency-fraction` (0.5) x the rate measured in phase 3, for
   `--latency-seconds`. Side channel, nothing added to the schema or the pipeline:
   - the benchmark produces in 10 ms ticks (one `produce_batch` call each, of messages built up front) and notes
     each tick's wall clock as its events' produce time (over-estimating by at most 10 ms). It gives each event
     the partition the pipeline's producers would (`schemas.event.partition_of_key`), so the n-th event to
     partition p lands at p's end offset before the phase + n (one idempotent producer; checked against the end
     offsets after the phase): no delivery callback. Its producer lingers `--latency-linger-ms` (50; the
     pipeline's own producers 20): at 30,000 events/s the broker's CPU per event ingested is about halved (6.5
     -> 3.5 µs, fewer and larger produce requests), and the latency includes the linger;
   - every 50 ms the benchmark reads the sink group's committed offsets on `rated-usage`;
   - after the phase, a read-only consumer (its own group) reads the phase's `rated-usage` messages and maps every
     output message's (partition, offset) to the input positions its records carry (`src_partition`,
     `src_offset`): an output at offset o of partition p is visible from the first poll where committed(p) > o.
   Producing, polling and following cost the two measured cores as little as they can: the load generator is not
   the system measured (`cpu_us_per_event_latency` reports its CPU as `bench`).
   latency = visible time - produce time (both on this machine's clock). It includes the
   producer's linger, the processor's batch, the sink's batch age (`sink_batch_seconds`) and the
   ClickHouse insert, and over-estimates by at most one poll (50 ms) and one tick (10 ms). Rated rows only (duplicates
   and dead letters have no rated row). The first 2 s are a warm-up and are not counted.
   `cpu_us_per_event_latency`: each process's CPU (the benchmark's own as `bench`) per event produced after
   the warm-up; `threads_cpu_s_latency` where it went per thread group. `--latency-rate R` produces at R
   events/s instead (to compare settings at one rate).

The JSON holds `baseline_events_per_s, pipeline_events_per_s, ratio, p50_latency_s, p99_latency_s,
events` and more: `workers`, `engine` (`native`: the columnar processor; `legacy`: the per-message
loop, `METERSTREAM_PROCESSOR_ENGINE=legacy`, kept to compare in the same run), CPU seconds used by
each process and per event (`cpu_us_per_event`, phase 3; `cpu_us_per_event_steady` from the first
commit to the drain, start-up left out; `baseline_broker_cpu_us_per_event`: the broker's CPU serving the
raw baseline), peak RSS of each process (`rss_mb`, VmHWM
at the end of phase 3; the broker's is its peak since it started), the processors' dedup state per
remembered id once they stopped (`dedup_ids`: dedup entries in their RocksDB stores;
`state_dir_bytes_per_id`: the state directories on disk, WAL, index and running totals included,
per id; `estimate_live_bytes_per_id`: RocksDB's own `rocksdb.estimate-live-data-size`, summed over
the partition stores, per id), produce rate, how the events fall on the input partitions
(`input_per_partition`) and which instance processed how many (`events_per_instance`, from each instance's
`meterstream_processor_events_in_total`; `busiest_instance_share`: with n instances the busiest one bounds the
speed-up), ... A short markdown table is printed. `--customers uniform` makes every customer as likely (the
default, pareto, is the demo's: each tenant's first customer sends ~56% of its events, so two partitions carry
most of the backlog and which instance gets them decides how much a second instance helps).
`machine_parallel_scaling` (bench/machine.py, measured between phases 2 and 3): the work two CPU-bound processes
do at once over one's alone, ~2.0 on two free cores; other load on the machine lowers it, and the ratio with it.
`--timeline` records, every 0.5 s of phase 3, the committed events, each instance's events read and every
process's CPU seconds (`timeline` in the JSON: where the drain's wall time goes). `--profile DIR`
records py-spy raw stacks of the processor(s) and the sink during phase 3, idle frames included so that
waits show (`python bench/e2e.py
--profile prof/` then aggregate the `.raw` files). After the run, the state changelog: `changelog_bytes_per_id`
(its segments on the local broker's disk, before compaction, per dedup id) and `restore_s_per_million_entries`
(every partition restored into empty stores, as an instance does when a partition arrives with no local store).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from machine import parallel_scaling  # bench/machine.py
from state_footprint import dedup_footprint  # bench/state_footprint.py

from meterstream.deploy.cli_common import is_terminal, progress
from meterstream.deploy.demo import last_month
from meterstream.deploy.pipeline import Pipeline, demo_environment
from meterstream.deploy.ports import free_port_pair
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import DeliveryTracker, make_producer, produce_all
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.ingest.workload import Truth, WorkloadSpec, generate
from meterstream.processor.runner import app_id, state_dir
from meterstream.schemas.event import partition_of_key
from meterstream.schemas.rated import is_rows, rows_body, unpack
from meterstream.schemas.rated_arrow import is_arrow, read_arrow
from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def say(msg: str) -> None:
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


class BenchPipeline(Pipeline):
    """deploy.pipeline.Pipeline; processor instance i (0-based) is `start_processor(i + 1)`: one consumer group."""

    def start_worker(self, i: int, n: int) -> subprocess.Popen:
        return self.start_processor(i + 1)


def events_read(port: int) -> int | None:
    """Messages a processor instance read from the usage topic (`meterstream_processor_events_in_total` on its
    ops port); None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("meterstream_processor_events_in_total "):
            return int(float(line.split()[1]))
    return None


def changelog_footprint(run: Settings, broker_data: Path | None, dedup_ids: int, scratch: Path) -> dict:
    """The changelog after the run: its bytes on the broker's disk per remembered id (segments as written, not
    yet compacted: an upper bound) and the time to restore every partition into empty stores, per million
    state entries (`processor/changelog.py` ChangelogReader, as an instance does on assignment)."""
    from meterstream.processor.changelog import ChangelogReader, changelog_topic
    from meterstream.processor.store import PartitionStore

    topic = changelog_topic(run)
    out: dict = {}
    if broker_data is not None:
        size = sum(f.stat().st_size for d in broker_data.glob(f"{topic}-*") for f in d.glob("*.log"))
        out["changelog_bytes"] = size
        out["changelog_bytes_per_id"] = round(size / dedup_ids, 1) if dedup_ids else None
    reader = ChangelogReader(run)
    entries = records = 0
    started = time.perf_counter()
    try:
        for p in range(run.partitions):
            store = PartitionStore(scratch / f"p{p}")
            done = reader.catch_up(p, store)
            store.close()
            if done is not None:
                entries += done.entries
                records += done.records
    finally:
        reader.close()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    out.update({"restore_entries": entries, "restore_records": records, "restore_seconds": round(seconds, 2),
                "restore_s_per_million_entries": round(seconds / entries * 1e6, 2) if entries else None})  # fmt: skip
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


_THREAD_NUMBER = re.compile(r"[-#]?\d+")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a live process's threads, summed per thread name with its numbers left out (a JVM's
    threads are named: request handlers, network threads, GC, JIT compilers...; Linux /proc)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        group = _THREAD_NUMBER.sub("", name) or name
        out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        out["(system time)"] = out.get("(system time)", 0.0) + int(fields[12]) / tick  # of all threads
    return out


def thread_cpu_delta(before: dict[str, float], after: dict[str, float], top: int = 12) -> dict[str, float]:
    """The thread groups that used the most CPU between two `thread_cpu` samples, seconds, largest first."""
    delta = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in delta.items() if v > 0), key=lambda kv: -kv[1])[:top])


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a live process in MB (VmHWM, Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return float("nan")


def drop_topics(run: Settings) -> int:
    """Delete this run's topics (its prefix's): a broker kept across runs (the bench's own, under --home) would
    otherwise keep ~150 MB and ~30 partitions per 1M-event run for good. How many were deleted."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": run.bootstrap})
    prefix = run.topic("")
    names = [t for t in admin.list_topics(timeout=30).topics if prefix and t.startswith(prefix)]
    if not names:
        return 0
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=60)
    return len(names)


def raw_baseline(run: Settings, topic: str, expected: int) -> tuple[float, float]:
    """One consumer, orjson.loads on every value, nothing else. Returns (events/s, seconds)."""
    consumer = Consumer(
        {
            "bootstrap.servers": run.bootstrap,
            "group.id": run.topic("bench-raw-baseline"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    loads = orjson.loads
    n = parsed = 0
    t0 = None
    deadline = time.monotonic() + 600
    while n < expected and time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=10_000, timeout=1.0)
        if t0 is None and msgs:
            t0 = time.perf_counter()
        for m in msgs:
            if m.error():
                continue
            n += 1
            try:
                loads(m.value())
                parsed += 1
            except orjson.JSONDecodeError:
                pass
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    return n / seconds if seconds else float("nan"), seconds


def drain(
    run: Settings,
    pipeline: Pipeline,
    produced: int,
    timeout: float,
    on_first: Callable[[], None] = lambda: None,
    timeline: Callable[[float, int | None], None] | None = None,
) -> tuple[float, float]:
    """Poll both groups' committed offsets; returns (t_first_commit, t_drained) on the monotonic clock.
    `on_first` runs at the first commit seen (to sample CPU counters once start-up is over); `timeline(now,
    committed)`, when given, at every poll (`--timeline`). On a terminal the events processed show as a progress
    bar (`deploy/cli_common.progress`), else as a line redrawn.

    The probe costs the broker CPU too (each request ~0.3-0.7 ms of broker CPU here, measured), so it asks
    little while the processor works: the input's end offsets once (nothing else writes to it now), then
    one OffsetFetch of the processor group per poll; the sink's lag (end offsets of its topics) only once
    the processor group has committed everything."""
    topics = Topics.from_settings(run)
    probe = LagProbe(run)
    ends = probe.end_offsets(topics.usage)
    reader = Consumer({"bootstrap.servers": run.bootstrap, "group.id": app_id(run), "enable.auto.commit": False})
    tps = [TopicPartition(topics.usage, p) for p in ends]
    t_first = None
    deadline = time.monotonic() + timeout
    last_print = 0.0
    bar = is_terminal(sys.stderr)
    try:
        with progress("[e2e] events processed", produced) as advance:
            while time.monotonic() < deadline:
                pipeline.check_alive()
                now = time.monotonic()
                try:
                    committed = {tp.partition: tp.offset for tp in reader.committed(tps, timeout=10)}
                    p_lag = sum(end - max(committed.get(p, -1), 0) for p, end in ends.items())
                except KafkaException:
                    p_lag = None  # e.g. the group coordinator is still loading
                if p_lag is not None and p_lag < produced and t_first is None:
                    t_first = now
                    on_first()
                if timeline is not None:
                    timeline(now, None if p_lag is None else produced - p_lag)
                sink_topics = [topics.rated, topics.dead_letters]
                if p_lag == 0 and probe.group_lag(run.topic("meterstream-sink"), sink_topics) == 0:
                    if not bar:
                        print(file=sys.stderr)
                    return t_first or now, now
                if now - last_print > 1 and p_lag is not None:
                    last_print = now
                    if bar:
                        advance(produced - p_lag, produced)
                    else:
                        line = f"\r[e2e] processed {produced - p_lag}/{produced}     "
                        print(line, end="", file=sys.stderr, flush=True)
                time.sleep(0.2)
        raise TimeoutError("the pipeline did not drain in time")
    finally:
        reader.close()
        probe.close()


def sources(value: bytes) -> list[tuple[int, int]]:
    """The input positions (src_partition, src_offset) of a `rated-usage` message's records: a JSON rows message's
    rows as lists (the last two values), an Arrow message's two columns only, read in C: decoding whole records
    (`unpack`) cost the follower ~10 µs per row, and at the ~30,000 rows/s of the latency phase it held the GIL long
    enough to delay the poller's timestamps (the latency measured) and the paced producer (which then fell behind
    its rate)."""
    if is_rows(value):
        return [(row[-2], row[-1]) for row in orjson.loads(b"[" + rows_body(value) + b"]")]
    if is_arrow(value):
        table = read_arrow(value)
        return list(zip(table.column("src_partition").to_pylist(), table.column("src_offset").to_pylist(), strict=True))
    return [(r["src_partition"], r["src_offset"]) for r in unpack(value)]


# how often the latency phase reads the sink group's committed offsets (the latency over-estimates by at most this):
# every read is a request the broker pays ~2 ms of CPU for, 4.4% of a core at 20 ms
POLL_S = 0.05


def input_positions(parts: list[int], start: dict[int, int]) -> list[tuple[int, int]]:
    """(partition, offset) of events produced in this order to these partitions by one idempotent producer, each
    partition's first at its end offset before (`start`): the n-th to p at start[p] + n."""
    nxt = dict(start)
    out = []
    for p in parts:
        out.append((p, nxt[p]))
        nxt[p] += 1
    return out


def read_outputs(run: Settings, topic: str, start: dict[int, int]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Every `rated-usage` message from `start` to the topic's end, as output (partition, offset) -> the input
    positions its records carry (`sources`). Read after the latency phase, so that following the outputs costs the
    measured cores nothing while it runs."""
    probe = LagProbe(run)
    try:
        end = probe.end_offsets(topic)
    finally:
        probe.close()
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    c = Consumer({"bootstrap.servers": run.bootstrap, "group.id": run.topic("bench-latency-follower"),
                  "enable.auto.commit": False})  # fmt: skip
    try:
        c.assign([TopicPartition(topic, p, o) for p, o in start.items() if end.get(p, 0) > o])
        left = {p for p, o in start.items() if end.get(p, 0) > o}
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for m in c.consume(num_messages=5000, timeout=0.5):
                if m.error():
                    continue
                out[(m.partition(), m.offset())] = sources(m.value())
                if m.offset() + 1 >= end[m.partition()]:
                    left.discard(m.partition())
    finally:
        c.close()
    return out


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process and of this one (`bench`)."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()} | {"bench": time.process_time()}


def threads_now(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """`thread_cpu` of each named process and of this one (`bench`)."""
    return {name: thread_cpu(pid) for name, pid in (pids | {"bench": os.getpid()}).items()}


def latency_phase(
    run: Settings,
    rate: float,
    seconds: float,
    period: str,
    warmup: float = 2.0,
    customers: str = "pareto",
    pids: dict[str, int] | None = None,
    linger_ms: int = 50,
) -> dict:
    """Produce at a fixed rate; see the module docstring for how visibility is observed. `pids`: the processes
    whose CPU per event is reported (`cpu_us_per_event_latency`, with this process's as `bench`)."""
    pids = pids or {}
    topics = Topics.from_settings(run)
    sink_group = run.topic("meterstream-sink")
    produce_ts: dict[tuple[int, int], float] = {}  # input (partition, offset) -> produce wall clock
    src_of: dict[tuple[int, int], list[tuple[int, int]]] = {}  # output (p, o) -> the inputs (p, o) it packs
    visible_at: list[tuple[float, dict[int, int]]] = []  # (wall clock, committed offsets of rated)
    stop = threading.Event()

    def poll_committed() -> None:
        c = Consumer({"bootstrap.servers": run.bootstrap, "group.id": sink_group, "enable.auto.commit": False})
        parts = c.list_topics(topics.rated, timeout=10).topics[topics.rated].partitions
        tps = [TopicPartition(topics.rated, p) for p in parts]
        while not stop.is_set():
            try:
                got = c.committed(tps, timeout=5)
                visible_at.append((time.time(), {tp.partition: tp.offset for tp in got}))
            except Exception:
                pass
            time.sleep(POLL_S)
        c.close()

    threads = [threading.Thread(target=poll_committed, daemon=True)]
    for t in threads:
        t.start()
    # linger 50 ms (the pipeline's producers: 20): at a few 10,000 events/s the broker's CPU per event ingested is
    # about halved (6.5 -> 3.5 µs at 30,000/s, fewer and larger produce requests); the events' latency includes it
    producer = make_producer(run, **{"linger.ms": linger_ms})
    total = int(rate * seconds)
    spec = WorkloadSpec(events=total, period=period, run_id=f"lat{int(time.time())}", seed=11, customers=customers)
    records = list(generate(spec, Truth()))
    # each event's partition up front (the pipeline's partitioner, schemas.event.partition_of_key): with one idempotent
    # producer the n-th event produced to partition p lands at p's end offset before the phase + n, so no delivery
    # callback is needed (it cost ~5 µs of this process's CPU per event, on the cores being measured)
    probe = LagProbe(run)
    try:
        start = probe.end_offsets(topics.usage)
        rated_start = probe.end_offsets(topics.rated)  # the phase's outputs follow these (read after it)
    finally:
        probe.close()
    n_parts = len(start)
    parts = [partition_of_key(key, n_parts) if key else 0 for key, _ in records]
    # one produce_batch call per 10 ms tick, of messages built up front: ~1 µs of this process's CPU per event
    # against ~4 with a produce() call each, on the cores being measured
    messages = [{"key": key, "value": value, "partition": p} for (key, value), p in zip(records, parts, strict=True)]
    stamps = [0.0] * total  # each event's produce time: the start of its 10 ms tick (over-estimates latency <= 10 ms)

    say(f"latency phase: {total} events at {rate:,.0f}/s for {seconds:.0f}s")
    usage = topics.usage
    cpu_from, n_from = cpu_now(pids), 0  # from the warm-up's end (below)
    warm, threads_from = False, threads_now(pids)
    t0 = time.time()
    tick = 0.01
    sent = 0
    while sent < total:
        now = time.time()
        if not warm and now >= t0 + warmup:
            warm, cpu_from, n_from, threads_from = True, cpu_now(pids), sent, threads_now(pids)
        due = min(total, int((now - t0) * rate) + 1)
        if due > sent:
            stamps[sent:due] = [now] * (due - sent)
            queued = producer.produce_batch(usage, messages[sent:due])
            if queued != due - sent:  # the queue holds 1,000,000 (ingest.producer): a retry could reorder them
                raise RuntimeError(f"{due - sent - queued} events not queued: {messages[sent + queued].get('_error')}")
            sent = due
        producer.poll(0)
        time.sleep(tick)
    producer.flush(60)
    t_end_produce = time.time()
    cpu_to, threads_to = cpu_now(pids), threads_now(pids)
    produce_ts.update(zip(input_positions(parts, start), stamps, strict=True))
    seq = Counter(parts)
    probe = LagProbe(run)
    deadline = time.time() + 120
    try:
        end = probe.end_offsets(topics.usage)
        if any(end[p] - start[p] != seq.get(p, 0) for p in start):  # another producer wrote to the topic meanwhile
            raise RuntimeError(f"usage offsets moved by {end} - {start}, not the {seq} events produced: positions "
                               "unknown")  # fmt: skip
        # wait until both groups committed everything
        while time.time() < deadline:
            p_lag = probe.group_lag(app_id(run), [topics.usage])
            s_lag = probe.group_lag(sink_group, [topics.rated, topics.dead_letters])
            if p_lag == 0 and s_lag == 0:
                break
            time.sleep(0.2)
    finally:
        probe.close()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    src_of.update(read_outputs(run, topics.rated, rated_start))
    # visibility of each output: first poll where committed(p) > o
    lat: list[float] = []
    missing = 0
    by_part: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    for (p, o), srcs in src_of.items():
        by_part.setdefault(p, []).extend((o, src) for src in srcs)
    for p, outs in by_part.items():
        outs.sort()
        i = 0
        for when, committed in visible_at:
            c = committed.get(p, -1)
            while i < len(outs) and outs[i][0] < c:
                ts = produce_ts.get(outs[i][1])
                if ts is not None and ts >= t0 + warmup:
                    lat.append(when - ts)
                i += 1
        missing += len(outs) - i
    lat.sort()

    def q(x: float) -> float:
        return round(lat[min(len(lat) - 1, int(x * len(lat)))], 3) if lat else float("nan")

    return {
        "latency_rate_events_per_s": round(rate, 1),
        "latency_producer_linger_ms": linger_ms,
        "latency_produce_seconds": round(t_end_produce - t0, 2),
        "latency_events": total,
        "latency_samples": len(lat),
        "latency_not_visible": missing,
        "p50_latency_s": q(0.50),
        "p90_latency_s": q(0.90),
        "p99_latency_s": q(0.99),
        "max_latency_s": round(lat[-1], 3) if lat else float("nan"),
        # CPU per event produced while measuring (after the warm-up): the pipeline's processes, the broker and this
        # benchmark's own process (the producer and the poller; the outputs are read after), on the same two cores
        "cpu_us_per_event_latency": {
            name: round((cpu_to[name] - cpu_from[name]) / max(1, total - n_from) * 1e6, 1) for name in cpu_to
        },
        "threads_cpu_s_latency": {
            name: thread_cpu_delta(threads_from.get(name, {}), after, top=8) for name, after in threads_to.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=1, choices=[1, 2])
    ap.add_argument("--engine", default="native", choices=["native", "legacy"], help="processor engine")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--home", type=Path, default=Path("/tmp/meterstream-bench"))
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--latency-fraction", type=float, default=0.5)
    ap.add_argument("--latency-rate", type=float, default=None,
                    help="events/s of phase 4, not --latency-fraction x phase 3's rate (to compare)")  # fmt: skip
    ap.add_argument("--latency-linger-ms", type=int, default=50, help="linger.ms of phase 4's producer")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument(
        "--timeline",
        action="store_true",
        help="record every 0.5 s of the drain: committed events, each instance's events and CPU (JSON)",
    )
    ap.add_argument("--keep-broker", action="store_true", help="leave the local broker running")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks of the processes (phase 3)")
    ap.add_argument("--period", default=None, help="YYYY-MM the events are dated in (default: last month, UTC)")
    ap.add_argument("--keep-topics", action="store_true", help="leave the run's topics on the broker")
    ap.add_argument("--customers", default="pareto", choices=["pareto", "uniform"],
                    help="pareto (the default: a few customers make most events) or uniform")  # fmt: skip
    args = ap.parse_args(argv)

    from meterstream.deploy import kafka_local

    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / "bench-kafka-port"
    if port_file.exists():
        port = int(port_file.read_text())
    else:
        port = free_port_pair()
        port_file.write_text(str(port))
    settings = Settings(home=home, kafka_port=port)
    started_broker = not settings.kafka_bootstrap
    say(f"broker: {settings.bootstrap}")
    kafka_local.start(settings)

    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = home / f"run-{run_id}"
    env = demo_environment(settings, out, run_id)
    env["METERSTREAM_TOPIC_PREFIX"] = f"bench-{run_id}."
    env["METERSTREAM_KAFKA_BOOTSTRAP"] = settings.bootstrap
    env["METERSTREAM_PROCESSOR_METRICS_PORT"] = str(free_port_pair())
    env["METERSTREAM_PROCESSOR_ENGINE"] = args.engine
    run = Settings(
        _env_file=None,
        **{k.removeprefix("METERSTREAM_").lower(): v for k, v in env.items() if k.startswith("METERSTREAM_")},
    )
    ensure_topics(run)
    topics = Topics.from_settings(run)
    period = args.period or last_month()
    result: dict = {"events": args.events, "workers": args.workers, "engine": args.engine, "partitions": run.partitions,
                    "period": period, "customers": args.customers}  # fmt: skip
    result["machine"] = f"{os.cpu_count()} cores, {os.uname().machine}, broker on the same machine"
    # the interpreter every process of the run uses (the pipeline's processes are started with it): how it was built
    # moves the Python-heavy processes' CPU per event (a PGO + LTO build, as Debian's or the python:3.11-slim image's,
    # against pyenv's default build: docs/scale-out.md "Session 26")
    result["python"] = f"{platform.python_version()} {os.path.realpath(sys.executable)}"

    say(f"generating {args.events} events")
    truth = Truth()
    records = list(
        generate(WorkloadSpec(events=args.events, period=period, run_id=run_id, customers=args.customers), truth)
    )
    say(f"producing to {topics.usage}")
    t0 = time.perf_counter()
    produce_all(make_producer(run), topics.usage, records, DeliveryTracker())
    result["produce_events_per_s"] = round(args.events / (time.perf_counter() - t0))
    del records
    say(f"produced at {result['produce_events_per_s']:,}/s")
    probe = LagProbe(run)
    try:  # how the events fall on the partitions (the key is tenant/customer): a busy customer makes a busy one
        result["input_per_partition"] = {str(p): n for p, n in sorted(probe.end_offsets(topics.usage).items())}
    finally:
        probe.close()

    say("raw baseline")
    baseline_broker = kafka_local._pid(settings) if started_broker else None
    baseline_cpu0 = cpu_seconds(baseline_broker) if baseline_broker else float("nan")
    base, base_s = raw_baseline(run, topics.usage, args.events)
    result["baseline_events_per_s"] = round(base)
    result["baseline_seconds"] = round(base_s, 2)
    if baseline_broker:  # what serving the raw consumer costs the broker, to compare with phase 3's share
        result["baseline_broker_cpu_us_per_event"] = round(
            (cpu_seconds(baseline_broker) - baseline_cpu0) / args.events * 1e6, 1
        )
    say(f"baseline {base:,.0f} events/s")
    # how many cores' worth of work two processes get right now (2.0: two free cores; bench/machine.py): the
    # pipeline runs several processes, the baseline one, so other load on the machine lowers the ratio
    result["machine_parallel_scaling"] = parallel_scaling()
    say(f"two CPU-bound processes get {result['machine_parallel_scaling']} cores' worth of work")

    pipeline = BenchPipeline(env, out / "logs")
    spies: list[subprocess.Popen] = []
    try:
        broker_pid = kafka_local._pid(settings) if started_broker else None
        broker_cpu0 = cpu_seconds(broker_pid) if broker_pid else float("nan")
        t_launch = time.monotonic()
        for i in range(args.workers):
            pipeline.start_worker(i, args.workers)
        pipeline.start("sink")
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, proc in pipeline.procs.items():
                spies.append(
                    subprocess.Popen(
                        [
                            "py-spy",
                            "record",
                            "-p",
                            str(proc.pid),
                            "-f",
                            "raw",
                            "-r",
                            "97",
                            "--nonblocking",
                            "--idle",
                            "-o",
                            str(args.profile / f"{name}-w{args.workers}.raw"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        at_first: dict[str, float] = {}
        broker_threads_first: dict[str, float] = {}
        threads_first: dict[str, dict[str, float]] = {}

        def sample_first() -> None:  # CPU used by start-up and the first batches, left out of the steady figure
            at_first.update({name: cpu_seconds(p.pid) for name, p in pipeline.procs.items()})
            threads_first.update({name: thread_cpu(p.pid) for name, p in pipeline.procs.items()})
            if broker_pid:
                at_first["broker"] = cpu_seconds(broker_pid)
                broker_threads_first.update(thread_cpu(broker_pid))

        samples: list[dict] = []
        last_sample = [0.0]

        def sample_timeline(now: float, committed: int | None) -> None:
            """Every 0.5 s: the processor group's committed events, each instance's events read and CPU seconds
            so far (where the wall time of the drain goes: a rebalance, an idle instance, the sink's tail)."""
            if now - last_sample[0] < 0.5:
                return
            last_sample[0] = now
            ports = {name: int(env["METERSTREAM_PROCESSOR_METRICS_PORT"]) + i
                     for i, name in enumerate(pipeline.processors())}  # fmt: skip
            samples.append({
                "t": round(now - t_launch, 2),
                "committed": committed,
                "read": {name: events_read(port) for name, port in ports.items()},
                "cpu_s": {name: round(cpu_seconds(p.pid), 2) for name, p in pipeline.procs.items()}
                | ({"broker": round(cpu_seconds(broker_pid), 2)} if broker_pid else {}),
            })  # fmt: skip

        t_first, t_drained = drain(run, pipeline, truth.produced, timeout=3600, on_first=sample_first,
                                   timeline=sample_timeline if args.timeline else None)  # fmt: skip
        if args.timeline:
            result["timeline"] = {"t_first_commit": round(t_first - t_launch, 2),
                                  "t_drained": round(t_drained - t_launch, 2), "samples": samples}  # fmt: skip
        # which instance processed how much: with n instances the busiest one's share bounds the speed-up
        per_instance = {name: events_read(int(env["METERSTREAM_PROCESSOR_METRICS_PORT"]) + i)
                        for i, name in enumerate(pipeline.processors())}  # fmt: skip
        result["events_per_instance"] = per_instance
        if all(v is not None for v in per_instance.values()) and sum(per_instance.values()):
            result["busiest_instance_share"] = round(max(per_instance.values()) / sum(per_instance.values()), 3)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        cpu = {name: round(cpu_seconds(p.pid), 1) for name, p in pipeline.procs.items()}
        rss = {name: peak_rss_mb(p.pid) for name, p in pipeline.procs.items()}
        if broker_pid:
            cpu["broker"] = round(cpu_seconds(broker_pid) - broker_cpu0, 1)
            rss["broker"] = peak_rss_mb(broker_pid)
        sustained = truth.produced / (t_drained - t_first)
        result["pipeline_events_per_s"] = round(sustained)
        result["pipeline_seconds"] = round(t_drained - t_first, 2)
        result["pipeline_wall_incl_startup_s"] = round(t_drained - t_launch, 2)
        result["pipeline_events_per_s_incl_startup"] = round(truth.produced / (t_drained - t_launch))
        result["cpu_seconds"] = cpu
        result["cpu_us_per_event"] = {name: round(v / truth.produced * 1e6, 1) for name, v in cpu.items()}
        # from the first commit to the drain, per event processed in that time (start-up excluded; the
        # events before the first commit are a small share and are left out of both sides)
        steady = {name: cpu_seconds(p.pid) - at_first.get(name, 0.0) for name, p in pipeline.procs.items()}
        if broker_pid:
            steady["broker"] = cpu_seconds(broker_pid) - at_first.get("broker", 0.0)
        result["cpu_us_per_event_steady"] = {name: round(v / truth.produced * 1e6, 1) for name, v in steady.items()}
        # where each process's steady CPU went, per thread group (seconds; native threads included)
        result["threads_cpu_s_steady"] = {
            name: thread_cpu_delta(threads_first.get(name, {}), thread_cpu(p.pid), top=8)
            for name, p in pipeline.procs.items()
        }
        if broker_pid:
            result["broker_threads_cpu_s_steady"] = thread_cpu_delta(broker_threads_first, thread_cpu(broker_pid))
        result["rss_mb"] = rss
        result["ratio"] = round(sustained / base, 4)
        say(f"pipeline {sustained:,.0f} events/s (ratio {sustained / base:.3f}); cpu {cpu}")
        if not args.skip_latency:
            pids = {name: p.pid for name, p in pipeline.procs.items()} | ({"broker": broker_pid} if broker_pid else {})
            rate = args.latency_rate or sustained * args.latency_fraction
            result.update(latency_phase(run, rate, args.latency_seconds, period, customers=args.customers, pids=pids,
                                        linger_ms=args.latency_linger_ms))  # fmt: skip
        else:
            result.update({"p50_latency_s": None, "p99_latency_s": None})
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        pipeline.stop_all()
        if started_broker and not args.keep_broker and sys.exc_info()[0] is not None:
            kafka_local.stop(settings)
    result.update(dedup_footprint(state_dir(run)))
    try:  # the changelog is read back from the broker, then it stops
        data = settings.home.resolve() / "kafka" / "data" if started_broker else None
        result.update(changelog_footprint(run, data, result.get("dedup_ids") or 0, out / "restore"))
        if not args.keep_topics:
            say(f"deleted the run's {drop_topics(run)} topics")
    finally:
        if started_broker and not args.keep_broker:
            kafka_local.stop(settings)
    # check: every accepted event is in ClickHouse (in a subprocess: chdb, one path per process)
    sql = f"SELECT count() FROM {run.clickhouse_database}.rated_usage FINAL"
    got = subprocess.run(
        [sys.executable, "-m", "meterstream.deploy.cli", "query", sql],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    try:
        rows = int(got.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        rows = -1
    result["rated_rows"] = rows
    result["expected_rated_rows_backlog"] = truth.accepted  # + the latency phase's rows
    shutil.rmtree(out / "clickhouse", ignore_errors=True)

    table = [
        "| metric | value |",
        "| --- | --- |",
        f"| events (backlog) | {args.events:,} |",
        f"| processor workers, engine, customers | {args.workers}, {args.engine}, {args.customers} |",
        f"| events per input partition "
        f"| {', '.join(f'{k}: {v:,}' for k, v in result['input_per_partition'].items())} |",
        f"| events per instance (busiest one's share) "
        f"| {', '.join(f'{k} {v}' for k, v in result.get('events_per_instance', {}).items())} "
        f"({result.get('busiest_instance_share')}) |",
        f"| raw baseline (1 consumer + orjson) | {result['baseline_events_per_s']:,} events/s |",
        f"| pipeline, sustained (backlog drain) | {result['pipeline_events_per_s']:,} events/s |",
        f"| pipeline incl. process startup | {result['pipeline_events_per_s_incl_startup']:,} events/s |",
        f"| ratio pipeline / baseline | {result['ratio']:.3f} |",
        f"| work of 2 CPU-bound processes / 1, before phase 3 (2.0: two free cores) "
        f"| {result['machine_parallel_scaling']} |",
        f"| p50 / p99 event-to-visible latency at {result.get('latency_rate_events_per_s', 0):,.0f} events/s "
        f"| {result['p50_latency_s']} s / {result['p99_latency_s']} s |",
        f"| CPU seconds (phase 3, incl. process startup) "
        f"| {', '.join(f'{k} {v}' for k, v in result['cpu_seconds'].items())} |",
        f"| CPU µs per event | {', '.join(f'{k} {v}' for k, v in result['cpu_us_per_event'].items())} |",
        f"| CPU µs per event, first commit to drain "
        f"| {', '.join(f'{k} {v}' for k, v in result.get('cpu_us_per_event_steady', {}).items())} |",
        f"| broker CPU µs per event serving the raw baseline | {result.get('baseline_broker_cpu_us_per_event')} |",
        f"| peak RSS MB | {', '.join(f'{k} {v}' for k, v in result['rss_mb'].items())} |",
        f"| dedup state per id ({result['dedup_ids']:,} ids, {result['dedup_stores']} stores) "
        f"| {result['state_dir_bytes_per_id']} B on disk, "
        f"{result['estimate_live_bytes_per_id']} B live (RocksDB estimate) |",
        f"| changelog per id (not yet compacted), restore time per million entries "
        f"| {result.get('changelog_bytes_per_id')} B, {result.get('restore_s_per_million_entries')} s |",
    ]
    print("\n".join(table))
    if args.json:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
