"""Instructions per event of the processor's columnar batch path, counted by callgrind (deterministic: the
machine is shared and noisy, wall and CPU time are not; instruction counts repeat to a fraction of a percent).

What is counted, per polled batch, as `processor/runner.py` `process_batch` runs it without Kafka: the
reading of confluent-kafka's messages into columns per partition (the runner's own `kafka_columns`, on real
`confluent_kafka.Message` objects, built beforehand), a `BatchState` per partition, `ColumnarStep.run_columns` (decode,
dedup, rating, the rows packed as JSON rows by `schemas.rated.RowPacker`) and each partition's state commit
(prepare + apply in RocksDB). Not counted: producing, consuming, the checkpoint's changelog, balances.

The demo workload (`ingest.workload`, seed 7: telecom and cloud events, 3% duplicates, 0.5% malformed,
out-of-order times) of `--period`, on 4 partitions by key as produced, in 5,000-message batches (`--batch`;
`--customers uniform`: every customer as likely, as bench/e2e.py --customers uniform); `--warm` events first
(caches, memos, RocksDB's memtables), then `--events` measured. The clock is fixed (`NOW_MS`) and the Kafka
timestamps are realistic: a minute before it, one millisecond more every 100 messages (a backlog
produced at ~100,000 events/s, as bench/e2e.py drains one). Timestamps a year old would send every event
through the per-message specification.

Collection is toggled on `functools_reduce` (a C function; a Python-level marker cannot be toggled on): the
measured batches run inside one `functools.reduce` call and nothing else does. The output: instructions per
event, the top inclusive C functions (Python's own frames show as the interpreter, so the Python of the loop is
what the named pieces leave), and a SHA-256 of every output (Arrow messages, dead letters, counters, RocksDB
contents): a change that keeps the outputs byte-identical keeps the digest (`--digest-only` computes it without
valgrind, in seconds).

    python bench/processor_icount.py [--events 20000] [--warm 20000] [--customers pareto|uniform] [--batch 5000]
                                     [--json FILE] [--digest-only] [--top 40]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Message as KafkaMessage

from meterstream.collector import BetweenBatches
from meterstream.ingest.workload import WorkloadSpec, generate
from meterstream.processor.columnar import BatchOutput, ColumnarStep
from meterstream.processor.runner import kafka_columns
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import load_catalog
from meterstream.schemas import rated
from meterstream.schemas.event import TimeWindow, partition_of_key
from meterstream.schemas.settings import Settings

TOPIC = "usage"
WINDOW_MS = 35 * 86_400_000
NOW_MS = 1_796_191_200_000  # 2026-12-02T06:00:00Z: the clock of every batch (deterministic)
PARTITIONS = 4
BATCH = 5_000
MARKER = "functools_reduce"


def kafka_messages(events: int, period: str, customers: str = "pareto") -> list[KafkaMessage]:
    """The workload as consumed messages: each on its key's partition, as produced, Kafka timestamps (CreateTime) a
    minute before NOW_MS, one ms more every 100 messages."""
    out = []
    offsets = [0] * PARTITIONS
    spec = WorkloadSpec(events=events, period=period, run_id="bench", customers=customers)
    for i, (key, value) in enumerate(generate(spec)):
        p = partition_of_key(key, PARTITIONS)  # librdkafka's default partitioner
        ts = (1, NOW_MS - 60_000 + i // 100)  # (TIMESTAMP_CREATE_TIME, ms)
        out.append(KafkaMessage(topic=TOPIC, partition=p, offset=offsets[p], key=key, value=value, timestamp=ts))
        offsets[p] += 1
    return out


class Run:
    """Fresh stores and a ColumnarStep, as one processor instance holds them."""

    def __init__(self, root: Path) -> None:
        settings = Settings()
        catalog = load_catalog(settings.catalog)
        window = TimeWindow.of(settings.event_max_age_days, settings.event_max_future_minutes)
        self.step = ColumnarStep(catalog, TOPIC, WINDOW_MS, window)
        self.step.pack = rated.RowPacker  # as the runner
        self.step.partitions = PARTITIONS  # as the runner: each customer's home partition is checked
        self.stores = {p: PartitionStore(root / f"p{p}") for p in range(PARTITIONS)}
        self.latest: dict[int, BatchState] = {}
        self.outputs: list[BatchOutput] = []  # digested after the measured batches, not within them
        self.digest = hashlib.sha256()
        self.rated = self.dead = 0

    def batch(self, msgs: list[KafkaMessage]) -> None:
        columns = kafka_columns(msgs, self.stores)
        states = {}
        for p in columns:
            states[p] = self.latest[p] = BatchState(self.stores[p], self.latest.get(p))
        out = self.step.run_columns(states, columns, NOW_MS)
        for p, state in states.items():
            state.commit(out.last[p] + 1, out.outcomes.get(p, Counter()))
        self.outputs.append(out)

    def digest_outputs(self) -> str:
        """Every output, in batch order, as one SHA-256."""
        for out in self.outputs:
            self._digest(out)
        self.outputs.clear()
        return self.digest.hexdigest()

    def _digest(self, out: BatchOutput) -> None:
        update = self.digest.update
        for p in sorted(out.messages):
            for value in out.messages[p]:
                update(value)
            self.rated += len(out.rated[p])
        for p, key, letter in out.dead_letters:
            update(orjson.dumps([p, key and key.hex(), letter]))
        self.dead += len(out.dead_letters)
        update(orjson.dumps({str(p): dict(c) for p, c in sorted(out.outcomes.items())}))
        update(orjson.dumps(sorted(out.last.items())))

    def state_digest(self) -> str:
        h = hashlib.sha256()
        for p, store in sorted(self.stores.items()):
            for key, value in store.db.items():
                h.update(orjson.dumps([p, bytes(key).hex(), bytes(value).hex()]))
        return h.hexdigest()


def inner(args: argparse.Namespace) -> None:
    """The measured process (under callgrind, or alone for --digest-only): prints one JSON line."""
    msgs = kafka_messages(args.warm + args.events, args.period, args.customers)
    size = args.batch
    warm = [msgs[i : i + size] for i in range(0, args.warm, size)]
    measured = [msgs[i : i + size] for i in range(args.warm, len(msgs), size)]
    root = Path(tempfile.mkdtemp(prefix="processor-icount-"))
    try:
        run = Run(root)
        for b in warm:
            run.batch(b)
        run.digest_outputs()
        collector = BetweenBatches()  # as the runner does after its first batch: no collection inside a batch
        collector.settle()
        steps: list[Callable[[], None]] = [functools.partial(run.batch, b) for b in measured]
        functools.reduce(lambda _, f: f(), steps, None)  # the one call callgrind counts in
        collector.restore()
        digest = run.digest_outputs()
        result = {"rated": run.rated, "dead_letters": run.dead, "outputs": digest}
        code = sys.modules[ColumnarStep.__module__].__file__ or ""
        result["code"] = str(Path(code).parent.parent)  # the tree measured (PYTHONPATH may point at another)
        result["state"] = run.state_digest()
        for store in run.stores.values():
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(orjson.dumps(result).decode())


_ROW = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$")
# the interpreter's own call machinery and the program's frame (inclusive of everything): not shown
_GENERIC = re.compile(
    r"ceval|/call\.c|pycore_|classobject|methodobject|_functoolsmodule|pythonrun|main\.c|python\.c|below main"
    r"|libc-start|\?\?\?:0x|'\d+$|Vectorcall"
)


def top_functions(out_file: Path, n: int) -> tuple[int, list[tuple[str, int]]]:
    """(total instructions, the `n` largest inclusive functions) from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total = int(re.search(r"^([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))  # type: ignore[union-attr]
    rows = []
    for line in text.splitlines():
        match = _ROW.match(line)
        if match and "PROGRAM TOTALS" not in line and not _GENERIC.search(match.group(2)):
            name = re.sub(r"^/tmp/python-build[^/]*/Python-[^/]*/", "", match.group(2).split(" [")[0])
            rows.append((name, int(match.group(1).replace(",", ""))))
    return total, rows[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="measured events (a multiple of --batch)")
    ap.add_argument("--warm", type=int, default=20_000, help="events before the measured ones")
    ap.add_argument("--period", default="2026-11", help="the workload's month (within 92 days of NOW_MS)")
    ap.add_argument(
        "--customers",
        default="pareto",
        choices=["pareto", "uniform"],
        help="the workload's customers: pareto (the demo's) or uniform (bench/e2e.py --customers uniform)",
    )
    ap.add_argument("--batch", type=int, default=BATCH, help="messages per polled batch (bench/e2e.py: up to 20,000)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--digest-only", action="store_true", help="no valgrind: only the outputs' digests")
    ap.add_argument("--keep", type=Path, help="keep callgrind's output file here (for callgrind_annotate)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner or args.digest_only:
        inner(args)
        return
    work = Path(tempfile.mkdtemp(prefix="processor-icount-cg-"))
    try:
        out_file = work / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--toggle-collect={MARKER}",
            f"--callgrind-out-file={out_file}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--inner",
            f"--events={args.events}",
            f"--warm={args.warm}",
            f"--period={args.period}",
            f"--customers={args.customers}",
            f"--batch={args.batch}",
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # set and dict orders, hence some counts, repeat
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        outputs = orjson.loads(proc.stdout.strip().splitlines()[-1])
        total, top = top_functions(out_file, args.top)
        if args.keep:
            shutil.copyfile(out_file, args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_event = total / args.events
    result = {
        "instructions_per_event": round(per_event),
        "instructions": total,
        "events": args.events,
        "warm_up": args.warm,
        "batch": args.batch,
        "customers": args.customers,
        "partitions": PARTITIONS,
        **outputs,
        "top_inclusive_per_event": {name: round(n / args.events) for name, n in top},
        "python": platform.python_version(),
        "command": "python bench/processor_icount.py " + " ".join(sys.argv[1:]),
    }
    print(f"{per_event:,.0f} instructions/event ({args.events:,} events after {args.warm:,})")
    for name, n in top:
        print(f"{n / args.events:>10,.0f}  {name}")
    print(f"outputs {outputs['outputs'][:16]}  state {outputs['state'][:16]}  rated {outputs['rated']}")
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
