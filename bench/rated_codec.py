"""The rated-usage topic's round trip per producer compression codec: what a codec costs the processor (producing),
the broker (storing, then serving) and the sink (consuming and reading the messages), per rated row, in one run.

    python bench/rated_codec.py [--events 100000] [--repeat 5] [--rounds 3] [--codecs lz4,zstd,none] [--json FILE]

The rated rows are the processor's (`bench/sink_format.rated_rows`: the demo workload through the columnar step),
packed into JSON rows messages as the processor sends them (`schemas.rated.pack_rows`), then repeated `--repeat`
times.
On the bench's local broker (`bench/e2e.py`'s, started if needed and stopped at the end unless `--keep-broker`),
for each round and each codec in turn (so each codec sees the same machine phase): a fresh 4-partition topic, every
message produced with the processor's producer settings (`ingest.producer.make_producer`, `linger.ms` 5) and
`compression.type` set to the codec, flushed; then consumed by one consumer with the sink's fetch settings, each
value read as the sink reads it (`rows_count`). CPU seconds: this process's (producer, then consumer: the client
threads included) and the broker's (/proc), per row.
The first round warms the broker's JIT and is left out of the summary (the median of the other rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sink_format import rated_rows  # bench/sink_format.py: this script's folder is sys.path[0]

from meterstream.deploy import kafka_local
from meterstream.deploy.ports import free_port_pair
from meterstream.ingest.producer import make_producer
from meterstream.schemas.rated import pack_rows, rows_count
from meterstream.schemas.settings import Settings

PARTITIONS = 4


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trip(settings: Settings, broker: int, values: list[bytes], rows: int, codec: str) -> dict[str, float]:
    """One codec once: µs of CPU per rated row, producing and consuming, here and in the broker."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    topic = f"bench-rated-codec-{codec}-{time.time_ns()}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    try:
        b0, c0 = cpu_seconds(broker), time.process_time()
        producer = make_producer(settings, **{"linger.ms": 5, "compression.type": codec})
        for i, value in enumerate(values):
            while True:
                try:
                    producer.produce(topic, value, partition=i % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("the producer did not deliver everything in 60 s")
        b1, c1 = cpu_seconds(broker), time.process_time()
        consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": topic, "enable.auto.commit": False,
                             "fetch.min.bytes": 65536, "fetch.wait.max.ms": 100})  # fmt: skip
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        read = 0
        while read < rows:
            for msg in consumer.consume(1000, 1.0):
                if msg.error() is None:
                    read += rows_count(msg.value())
        consumer.close()
        b2, c2 = cpu_seconds(broker), time.process_time()
        if read != rows:
            raise RuntimeError(f"{codec}: read {read} rows, sent {rows}")
    finally:
        admin.delete_topics([topic])
    us = 1e6 / rows
    return {"produce_client": (c1 - c0) * us, "produce_broker": (b1 - b0) * us,
            "consume_client": (c2 - c1) * us, "consume_broker": (b2 - b1) * us,
            "total": ((c2 - c0) + (b2 - b0)) * us}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5, help="times the rated messages are sent per codec and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--codecs", default="lz4,zstd,none")
    ap.add_argument("--home", type=Path, default=Path("/tmp/meterstream-bench"))
    ap.add_argument("--keep-broker", action="store_true", help="leave the local broker running (as bench/e2e.py)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as work:
        chunks = rated_rows(args.events, Path(work))
    values = [v for rows in chunks for v in pack_rows(rows)] * args.repeat
    rows = sum(len(c) for c in chunks) * args.repeat
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / "bench-kafka-port"  # the same broker as bench/e2e.py
    if not port_file.exists():
        port_file.write_text(str(free_port_pair()))
    settings = Settings(home=home, kafka_port=int(port_file.read_text()))
    kafka_local.start(settings)
    broker = kafka_local._pid(settings)
    if broker is None:
        raise SystemExit(f"no local broker process for {settings.bootstrap}")
    codecs = args.codecs.split(",")
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in codecs}
    try:
        for r in range(args.rounds):
            for codec in codecs:
                figures = round_trip(settings, broker, values, rows, codec)
                runs[codec].append(figures)
                print(f"round {r} {codec:5s} " + " ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    finally:
        if not args.keep_broker:
            kafka_local.stop(settings)
    kept = {c: rs[1:] or rs for c, rs in runs.items()}  # the first round warms the broker's JIT
    summary = {c: {k: round(statistics.median(f[k] for f in rs), 2) for k in rs[0]} for c, rs in kept.items()}
    bytes_per_row = round(sum(map(len, values)) / rows, 1)
    result = {"rows": rows, "messages": len(values), "arrow_bytes_per_row": bytes_per_row,
              "cpu_us_per_row_median": summary, "runs": runs}  # fmt: skip
    print(f"{rows:,} rows, {bytes_per_row} Arrow bytes per row; µs of CPU per row (median of rounds 2..):")
    for codec, figures in summary.items():
        print(f"  {codec:5s} " + " ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
