"""CPU per event of the stream processor's step, in process (no Kafka): the columnar batch path
(`processor/columnar.py`, what the native engine runs) and the per-message loop (`step.process` on each
message, `METERSTREAM_PROCESSOR_ENGINE=legacy`), measured in the same run on the same input.

The demo workload (telecom and cloud events, 3% duplicates, 0.5% malformed, out-of-order times) for one
period, round-robin over the partitions, cut into polled batches; each path
gets its own fresh RocksDB stores, processes every batch against a `BatchState` buffer, packs the rated
records into messages (`schemas.rated.pack`) and commits state, counters and offset per batch, as the
runner does (the columnar path's records as the runner packs them: JSON rows with
`schemas.rated.pack_rows`). Both paths must give the same number of rated records and the same RocksDB
contents, key by key (checked), so the figures compare equal work. Reported: µs of CPU per event for
each path (this process's CPU time, RocksDB's threads included, so that other work on a shared machine
inflates it less than wall time; best of `--repeat` runs; the collector settled after set-up as the runner
settles it after its first batch), legacy / columnar, and the wall-clock figures beside them.

    python bench/processor_step.py [--events 100000] [--partitions 4] [--batch 5000] [--repeat 2]
                                   [--json FILE] [--profile columnar|legacy]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

from meterstream.collector import BetweenBatches
from meterstream.ingest.workload import WorkloadSpec, generate
from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import Catalog, load_catalog
from meterstream.schemas import rated
from meterstream.schemas.event import TimeWindow
from meterstream.schemas.rated import pack
from meterstream.schemas.settings import Settings

TOPIC = "usage"
WINDOW_MS = 35 * 86_400_000

# the runner's collector: off inside a batch, young collections between batches every second (tick)
COLLECTOR = BetweenBatches()
Runner = Callable[[list[list[Message]], dict[int, PartitionStore], int], int]


def messages(events: int, partitions: int, period: str) -> list[Message]:
    """The workload as polled messages: round-robin over partitions, offsets counting per partition."""
    records = list(generate(WorkloadSpec(events=events, period=period, run_id="bench")))
    return [Message(i % partitions, i // partitions, key, value, None) for i, (key, value) in enumerate(records)]


def columnar_runner(catalog: Catalog, window: TimeWindow) -> Runner:
    step = ColumnarStep(catalog, TOPIC, WINDOW_MS, window)
    step.pack = rated.RowPacker  # as the runner: each chunk's rows encoded right after it is rated

    def run(batches: list[list[Message]], stores: dict[int, PartitionStore], now_ms: int) -> int:
        n = 0
        latest: dict[int, BatchState] = {}
        for msgs in batches:
            states = {}
            for p in {m.partition for m in msgs}:
                states[p] = latest[p] = BatchState(stores[p], latest.get(p))
            out = step.run(states, msgs, now_ms)
            for lines in out.rated.values():
                n += len(lines)
            for p, state in states.items():
                state.commit(out.last[p] + 1, out.outcomes.get(p, Counter()))
            COLLECTOR.tick()  # as the runner's loop, between batches
        return n

    return run


def legacy_runner(catalog: Catalog, window: TimeWindow) -> Runner:
    """`NativeProcessor.process_legacy` without Kafka: `step.process` per message."""

    def run(batches: list[list[Message]], stores: dict[int, PartitionStore], now_ms: int) -> int:
        n = 0
        latest: dict[int, BatchState] = {}
        dumps = orjson.dumps
        for msgs in batches:
            states: dict[int, BatchState] = {}
            kinds: dict[int, list[Kind]] = {}
            lines: dict[int, list[bytes]] = {}
            last: dict[int, int] = {}
            for m in msgs:
                p = m.partition
                state = states.get(p)
                if state is None:
                    state = states[p] = latest[p] = BatchState(stores[p], latest.get(p))
                    kinds[p], lines[p] = [], []
                pos = Position(TOPIC, p, m.offset, m.key, m.timestamp_ms)
                out = process(catalog, state, m.value, pos, now_ms, WINDOW_MS, time_window=window)  # type: ignore[arg-type]
                if out.rated is not None:
                    lines[p].append(dumps(out.rated))
                elif out.dead_letter is not None:
                    dumps(out.dead_letter)  # produced as JSON by the runner
                kinds[p].append(out.kind)
                last[p] = m.offset
            for ls in lines.values():
                pack(ls)
                n += len(ls)
            for p, state in states.items():
                outcomes = Counter({k.value: c for k in Kind if (c := kinds[p].count(k))})
                state.commit(last[p] + 1, outcomes)
            COLLECTOR.tick()
        return n

    return run


def timed(runner: Runner, msgs: list[Message], partitions: int, batch: int, now_ms: int, profile: bool) -> tuple:
    """One pass over `msgs` on fresh stores: (CPU seconds of this process, all threads, RocksDB's
    included; wall seconds; rated records; RocksDB contents per partition)."""
    root = Path(tempfile.mkdtemp(prefix="processor-step-bench-"))
    try:
        stores = {p: PartitionStore(root / f"p{p}") for p in range(partitions)}
        batches = [msgs[i : i + batch] for i in range(0, len(msgs), batch)]
        COLLECTOR.settle()  # as the runner does after its first batch (meterstream/collector.py)
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            t0, c0 = time.perf_counter(), time.process_time()
            profiler.runcall(runner, batches, stores, now_ms)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            out = 0
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            out = runner(batches, stores, now_ms)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        COLLECTOR.restore()
        gc.unfreeze()
        state = {p: dict(store.db.items()) for p, store in stores.items()}
        for store in stores.values():
            store.close()
        return cpu, seconds, out, state
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=5000, help="messages per polled batch (runner.BATCH_MAX)")
    ap.add_argument("--period", default="2026-10", help="the workload's month (events must lie in the time window)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each path; the best is reported")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", choices=["columnar", "legacy"], help="cProfile one run of one path instead")
    args = ap.parse_args()

    settings = Settings()
    catalog = load_catalog(settings.catalog)
    window = TimeWindow.of(settings.event_max_age_days, settings.event_max_future_minutes)
    msgs = messages(args.events, args.partitions, args.period)
    now_ms = int(time.time() * 1000)
    runners = {"columnar": columnar_runner(catalog, window), "legacy": legacy_runner(catalog, window)}
    if args.profile:
        timed(runners[args.profile], msgs, args.partitions, args.batch, now_ms, True)
        return

    load_before = os.getloadavg()[0]
    best: dict[str, float] = {}  # CPU seconds
    wall: dict[str, float] = {}
    runs: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, tuple] = {}
    for _ in range(args.repeat):
        for name, runner in runners.items():  # interleaved: both see the same machine load
            cpu, seconds, out, state = timed(runner, msgs, args.partitions, args.batch, now_ms, False)
            runs[name].append(round(cpu / len(msgs) * 1e6, 2))
            best[name] = min(best.get(name, cpu), cpu)
            wall[name] = min(wall.get(name, seconds), seconds)
            outputs[name] = (out, state)
    if outputs["columnar"] != outputs["legacy"]:
        raise SystemExit("the columnar path and the per-message loop gave different record counts or state")
    us = {name: best[name] / len(msgs) * 1e6 for name in runners}
    result = {
        "events": len(msgs),
        "partitions": args.partitions,
        "batch": args.batch,
        "columnar_cpu_us_per_event": round(us["columnar"], 2),
        "legacy_cpu_us_per_event": round(us["legacy"], 2),
        "legacy_over_columnar": round(us["legacy"] / us["columnar"], 2),
        "runs_cpu_us_per_event": runs,
        "columnar_wall_us_per_event": round(wall["columnar"] / len(msgs) * 1e6, 2),
        "legacy_wall_us_per_event": round(wall["legacy"] / len(msgs) * 1e6, 2),
        "rated_records": outputs["columnar"][0],
        "state_equal": True,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_1m_before": load_before,
        "load_1m_after": os.getloadavg()[0],
    }
    print(
        f"{len(msgs):,} events, {args.partitions} partitions, {args.batch}-event batches: columnar "
        f"{us['columnar']:.2f} µs CPU/event, legacy {us['legacy']:.2f}, ratio {result['legacy_over_columnar']}x "
        f"({outputs['columnar'][0]:,} rated in both, state equal; load {load_before:.2f})"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
