"""`meterstream chaos`: faults while the pipeline runs, then a strict comparison with the input.

Runs the real broker, the processor and the sink as separate OS processes. Phase A bills a first
period and closes it. Phase B streams the main workload (several tenants, duplicates — some much
later —, malformed events, out-of-order times, late events for the closed period) at a steady rate,
while it SIGKILLs the processor and the sink (3 times each by default) at random points and restarts
them, restarts the Kafka broker once, and makes ClickHouse unavailable for 20+ s (a fault file the
sink checks before each insert). Then it drains, closes the period and compares, per customer and
meter, the deduplicated quantities and the invoice totals with what the generated input says. The last
line is the verdict; the exit status is non-zero on any difference.

The cluster mode (`cluster_plan`, `run_cluster_chaos`) runs the same comparison on a local 3-node KRaft cluster
(RF 3, `min.insync.replicas` 2) with processors in one consumer group, each instance with its own home (its own
local stores, as on separate machines): it SIGKILLs a broker node and starts it again, starts an instance and
SIGKILLs another one (deleting its home) while the group moves partitions to the newcomer, so the moved
partitions' state comes from the changelog only, and adds an instance mid-stream. The durable counters are
read from the changelog (every partition restored into empty stores), not from any instance's disk.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from meterstream.deploy.pipeline import Pipeline, demo_environment, wait_drained
from meterstream.deploy.pipeline import say as _say
from meterstream.schemas.settings import Settings, settings_from_env


def say(msg: str) -> None:
    _say(msg, tag="chaos")


@dataclass(frozen=True)
class ChaosPlan:
    events: int = 500_000
    seconds: float | None = None  # production spread over this long (default: about events / 6,000)
    processor_kills: int = 3
    sink_kills: int = 3
    broker_restarts: int = 1
    clickhouse_outage_s: float = 22.0
    seed: int = 11
    brokers: int = 1  # > 1: a local cluster of that many KRaft nodes (deploy/kafka_cluster.py)
    processor_instances: int = 1  # started before phase A, one consumer group
    broker_kills: int = 0  # SIGKILL one node of the cluster, start it again a few seconds later
    instance_joins: int = 0  # start one more processor instance mid-stream
    kills_on_move: int = 0  # start an instance, and SIGKILL another (its home deleted) while partitions move


def cluster_plan(events: int = 200_000, seconds: float | None = None, seed: int = 11) -> ChaosPlan:
    """The cluster mode: 3 brokers, 2 processor instances, a broker killed, an instance killed during a
    partition move, an instance added; one processor and one sink SIGKILL, ClickHouse down once."""
    return ChaosPlan(events=events, seconds=seconds, processor_kills=1, sink_kills=1, broker_restarts=0, seed=seed,
                     brokers=3, processor_instances=2, broker_kills=1, instance_joins=1, kills_on_move=1)  # fmt: skip


def run_cluster_chaos(settings: Settings, out: Path, events: int = 200_000, seconds: float | None = None,
                      as_json: bool = False) -> int:  # fmt: skip
    """`meterstream chaos --cluster`: `run_chaos` with `cluster_plan`."""
    return run_chaos(settings, cluster_plan(events, seconds), out, as_json=as_json)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "meterstream.deploy.cli", *args], env=env, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"meterstream {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _produce_paced(run: Settings, records: list[tuple[bytes, bytes]], seconds: float, done: threading.Event) -> None:
    from meterstream.ingest.producer import DeliveryTracker, make_producer, produce_all, undelivered

    producer = make_producer(run, **{"message.timeout.ms": 600_000})
    tracker = DeliveryTracker()
    chunk = max(1, len(records) // max(1, int(seconds * 10)))
    t0 = time.monotonic()
    for i in range(0, len(records), chunk):
        produce_all(producer, run.topic("usage-events"), records[i : i + chunk], tracker, flush=False)
        pause = t0 + seconds * (i + chunk) / len(records) - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if (why := undelivered(producer, tracker, 180)) is not None:
        raise RuntimeError(f"producer: events not delivered: {why}")
    done.set()


def run_chaos(settings: Settings, plan: ChaosPlan, out: Path, as_json: bool = False) -> int:
    """The chaos run; its verdict as text on stdout, or (`as_json`) as one JSON object (built in `_verdict`)."""
    from meterstream.deploy import kafka_local
    from meterstream.ingest.lag import LagProbe
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ingest.workload import Truth, WorkloadSpec, generate
    from meterstream.processor.runner import app_id
    from meterstream.rating.catalog import load_catalog

    t_start = time.monotonic()
    rng = random.Random(plan.seed)
    run_id = "c" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = out.resolve()  # the close runs in a child process with another working directory
    out.mkdir(parents=True, exist_ok=True)
    first = datetime.now(UTC).replace(day=1)
    period = (first - timedelta(days=1)).strftime("%Y-%m")
    closed = (first - timedelta(days=1)).replace(day=1) - timedelta(days=1)
    closed_period = closed.strftime("%Y-%m")
    cluster = plan.brokers > 1
    if cluster:
        settings = settings.model_copy(update={"kafka_brokers": plan.brokers})
    kafka_local.start(settings)
    env = demo_environment(settings, out, run_id)
    if cluster:
        env["METERSTREAM_KAFKA_BOOTSTRAP"] = settings.bootstrap  # every node: clients go on when one is down
    fault_file = out / "clickhouse-down"
    fault_file.unlink(missing_ok=True)
    env["METERSTREAM_SINK_FAULT_FILE"] = str(fault_file)
    env["METERSTREAM_TOPIC_PREFIX"] = f"chaos-{run_id}."
    run = settings_from_env(env)
    catalog = load_catalog(run.catalog)
    ensure_topics(run)
    group = plan.processor_instances > 1 or plan.instance_joins or plan.kills_on_move
    pipeline = Pipeline(env, out / "logs", instance_homes=out / "instances" if group else None)
    extra = ("saasco", "iotco")
    try:
        # Phase A: a period billed and closed before the storm
        truth_a = Truth()
        spec_a = WorkloadSpec(events=max(2_000, plan.events // 20), period=closed_period, run_id=f"{run_id}a",
                              extra_tenants=extra, keep_events=True, seed=plan.seed)  # fmt: skip
        from meterstream.ingest.producer import make_producer, produce_all

        for n in range(1, plan.processor_instances + 1):
            pipeline.start_processor(n)
        pipeline.start("sink")
        produce_all(make_producer(run), run.topic("usage-events"), generate(spec_a, truth_a))
        wait_drained(run, pipeline, app_id(run), truth_a.produced)
        pipeline.stop("sink")
        say(f"phase A: {truth_a.produced} events for {closed_period}; closing it")
        _cli(env, "close", "--period", closed_period, "--out", str(out / "invoices"), "--no-publish")
        pipeline.start("sink")
        from meterstream.deploy.chaos_balances import seed_wallets  # prepaid customers: the balance check

        prepaid = sorted({(t, c) for (_p, t, c, _m) in truth_a.events_by_period})[:20]
        start = datetime.fromisoformat(f"{period}-01T00:00:00+00:00")
        say(f"prepaid wallets (25 credits each, from {period}-01): {seed_wallets(run, catalog, prepaid, '25', start)}")

        # Phase B: the main stream, with faults
        truth_b = Truth()
        spec_b = WorkloadSpec(events=plan.events, period=period, run_id=f"{run_id}b", duplicate_rate=0.03,
                              malformed_rate=0.01, unratable_rate=0.001, late_period=closed_period, late_rate=0.005,
                              extra_tenants=extra, keep_events=True, seed=plan.seed + 1)  # fmt: skip
        records = list(generate(spec_b, truth_b))
        seconds = plan.seconds or max(30.0, plan.events / 6_000)
        faults = (["kill-processor"] * plan.processor_kills + ["kill-sink"] * plan.sink_kills
                  + ["restart-broker"] * (plan.broker_restarts if not settings.kafka_bootstrap else 0)
                  + ["kill-broker"] * (plan.broker_kills if cluster and not settings.kafka_bootstrap else 0)
                  + ["add-instance"] * plan.instance_joins + ["kill-on-move"] * plan.kills_on_move
                  + ["clickhouse-down"])  # fmt: skip
        rng.shuffle(faults)
        points = sorted(rng.uniform(0.05, 0.85) for _ in faults)
        produced_done = threading.Event()
        producer = threading.Thread(target=_produce_paced, args=(run, records, seconds, produced_done), daemon=True)
        say(f"phase B: {len(records)} events for {period} over ~{seconds:.0f}s; faults: {', '.join(faults)}")
        t0 = time.monotonic()
        producer.start()
        done: Counter[str] = Counter()
        for point, fault in zip(points, faults, strict=True):
            while time.monotonic() - t0 < point * seconds:
                pipeline.check_alive()  # the supervisor: a stage its watchdog ended is started again
                time.sleep(0.2)
            _inject(fault, pipeline, settings, fault_file, plan, rng)
            done[fault] += 1
            say(f"  t={time.monotonic() - t0:5.1f}s {fault}")
        producer.join()
        if not produced_done.is_set():
            raise RuntimeError("the producer failed (see its error above)")
        wait_drained(run, pipeline, app_id(run), truth_a.produced + truth_b.produced, timeout=3600)
        for name in pipeline.processors():
            pipeline.stop(name)
        pipeline.stop("sink")
        if group:
            say(f"processor instances at the end: {', '.join(pipeline.started_processors)}; "
                f"partitions restored from the changelog: {_restores(pipeline.logs)}")  # fmt: skip
        say(f"drained {time.monotonic() - t0:.1f}s after the first produce; closing {period}")
        if pipeline.restarts:
            say("watchdog restarts: " + ", ".join(f"{k} x{v}" for k, v in sorted(pipeline.restarts.items())))
        _cli(env, "close", "--period", period, "--out", str(out / "invoices"), "--no-publish")
        probe = LagProbe(run)
        usage_messages = probe.count(run.topic("usage-events"))
        probe.close()
        return _verdict(run, catalog, truth_a, truth_b, period, closed_period, usage_messages, done,
                        time.monotonic() - t_start, as_json=as_json)  # fmt: skip
    finally:
        fault_file.unlink(missing_ok=True)
        pipeline.stop_all()


def _inject(fault: str, pipeline: Pipeline, settings: Settings, fault_file: Path, plan: ChaosPlan,
            rng: random.Random) -> None:  # fmt: skip
    from meterstream.deploy import kafka_local

    if fault == "kill-processor":  # one instance (of those running), started again on its own home
        name = rng.choice(sorted(pipeline.processors()))
        pipeline.stop(name, sig=signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 2.0))
        pipeline.start(name)
    elif fault == "kill-sink":
        pipeline.stop("sink", sig=signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 2.0))
        pipeline.start("sink")
    elif fault == "add-instance":
        say(f"  starting {_next_instance(pipeline)}")
    elif fault == "kill-on-move":  # the newcomer's join moves partitions: an older instance dies meanwhile
        victim = rng.choice(sorted(pipeline.processors()))
        newcomer = _next_instance(pipeline)
        time.sleep(rng.uniform(0.5, 3.0))
        pipeline.stop(victim, sig=signal.SIGKILL)
        shutil.rmtree(pipeline.instance_home(victim), ignore_errors=True)  # its disk is gone with it
        say(f"  started {newcomer}, killed {victim} and deleted its local stores")
    elif fault == "kill-broker":
        node = rng.randint(1, settings.kafka_brokers)
        kafka_local.stop(settings, kill=True, node=node)
        time.sleep(rng.uniform(2.0, 6.0))
        kafka_local.start(settings, node=node)
        say(f"  node {node} killed and started again")
    elif fault == "restart-broker":
        kafka_local.stop(settings)
        time.sleep(rng.uniform(1.0, 3.0))
        kafka_local.start(settings)
    elif fault == "clickhouse-down":  # in the background: the faults after it land at their points meanwhile
        fault_file.touch()
        back = threading.Timer(plan.clickhouse_outage_s, fault_file.unlink, kwargs={"missing_ok": True})
        back.daemon = True
        back.start()


def _next_instance(pipeline: Pipeline) -> str:
    n = 1 + max((int(name.split("-")[1]) if "-" in name else 1 for name in pipeline.started_processors), default=0)
    pipeline.start_processor(n)
    return "processor" if n == 1 else f"processor-{n}"


def _restores(logs: Path) -> int:
    return sum(f.read_text(errors="replace").count("state entries") for f in logs.glob("processor*.log"))


def _verdict(run: Settings, catalog, truth_a, truth_b, period: str, closed: str, usage_messages: int,
             faults: Counter, elapsed: float, as_json: bool = False) -> int:  # fmt: skip
    import orjson

    from meterstream.aggregation.client import connect
    from meterstream.deploy.chaos_expect import expected_totals
    from meterstream.processor.changelog import changelog_counts
    from meterstream.processor.runner import committed_counts

    db = run.clickhouse_database
    client = connect(run)
    stored = {
        (p, t, c, m): (q, n)
        for p, t, c, m, q, n in client.query(
            f"SELECT period, tenant, customer, meter, sum(quantity), count() FROM {db}.rated_usage FINAL GROUP BY ALL"
        ).result_rows
    }
    truth_q = Counter()
    truth_n = Counter()
    for truth in (truth_a, truth_b):
        for key, q in truth.by_period.items():
            truth_q[key] += q
        truth_n.update(truth.events_by_period)
    lost = duplicated = 0
    mismatched_quantities = 0
    for key in set(truth_n) | set(stored):
        n_stored = stored.get(key, (Decimal(0), 0))[1]
        lost += max(truth_n.get(key, 0) - n_stored, 0)
        duplicated += max(n_stored - truth_n.get(key, 0), 0)
        if stored.get(key, (Decimal(0), 0))[0] != truth_q.get(key, Decimal(0)):
            mismatched_quantities += 1
    dead = client.query(f"SELECT raw, reason FROM {db}.dead_letters FINAL").result_rows
    dead_raw = {r.encode() for r, reason in dead if reason}
    refused = truth_a.refused + truth_b.refused
    found = sum(1 for value in refused if value.decode(errors="replace").encode() in dead_raw)
    actual = {
        (d["tenant"], d["customer"]): Decimal(d["total"])
        for d in (orjson.loads(r[0]) for r in client.query(
            f"SELECT document FROM {db}.invoices FINAL WHERE period = {{p:String}}", parameters={"p": period}
        ).result_rows)
    }  # fmt: skip
    expected = expected_totals(catalog, period, closed, truth_a.accepted_events, truth_b.accepted_events)
    mismatched = sum(1 for key in set(actual) | set(expected) if actual.get(key) != expected.get(key))
    if run.processor_engine == "faust":
        counts = committed_counts(run)
    else:  # the changelog is the durable state: what any instance would restore
        from meterstream.ingest.lag import LagProbe

        probe = LagProbe(run)
        partitions = len(probe.end_offsets(run.topic("usage-events")))
        probe.close()
        counts = changelog_counts(run, partitions, run.home.resolve() / f"chaos-counts-{run.topic_prefix}")
    accepted = truth_a.accepted + truth_b.accepted
    dup_truth = truth_a.duplicates + truth_b.duplicates
    counters_ok = (
        counts["rated"] == accepted
        and counts["duplicate"] == dup_truth
        and counts["dead_letter"] == len(refused)
        and sum(counts.values()) == usage_messages
    )
    from meterstream.deploy.chaos_balances import changelog_entries, check_balances

    entries = None if run.processor_engine == "faust" else changelog_entries(
        run, partitions, run.home.resolve() / f"chaos-balances-{run.topic_prefix}")  # fmt: skip
    balances = check_balances(run, client, entries=entries)  # every wallet = top-ups - rated usage, to the unit
    ok = lost == 0 and duplicated == 0 and mismatched == 0 and mismatched_quantities == 0 and balances.ok
    ok = ok and found == len(refused) and counters_ok
    if as_json:
        print(json.dumps({
            "ok": ok, "events": truth_a.produced + truth_b.produced, "seconds": round(elapsed),
            "faults": dict(sorted(faults.items())), "lost": lost, "duplicated": duplicated,
            "counters": {"in": usage_messages, **{k: counts[k] for k in ("rated", "duplicate", "dead_letter",
                                                                          "replayed")}, "add_up": counters_ok},
            "expected": {"accepted": accepted, "duplicates": dup_truth, "refused": len(refused)},
            "quantity_keys": len(truth_n), "quantities_differ": mismatched_quantities,
            "invoices_period": period, "invoices_written": len(actual), "invoices_differ": mismatched,
            "dead_letters_found": found, "dead_letters_expected": len(refused),
            "balances": {"wallets": balances.wallets, "customers": balances.customers,
                         "mismatched": balances.mismatched, "processor_mismatched": balances.processor_mismatched,
                         "ok": balances.ok, "differences": balances.lines[:10]},
        }, indent=2))  # fmt: skip
        return 0 if ok else 1
    print("─" * 72)
    print(f" chaos run: {truth_a.produced + truth_b.produced:,} events, {elapsed:.0f}s, faults: "
          + ", ".join(f"{k} x{v}" for k, v in sorted(faults.items())))  # fmt: skip
    print(
        f" processor counters (durable): in={usage_messages:,} rated={counts['rated']:,} "
        f"duplicates={counts['duplicate']:,} dead_letters={counts['dead_letter']:,} "
        f"replayed={counts['replayed']:,}  -> {'add up' if counters_ok else 'DO NOT ADD UP'}"
    )
    print(f" expected: accepted={accepted:,} duplicates={dup_truth:,} refused={len(refused):,}")
    print(f" quantities per period/customer/meter: {len(truth_n):,} keys, {mismatched_quantities} differ")
    print(f" invoices {period} (incl. late {closed} adjustments): {len(actual)} written, {mismatched} differ")
    print(f" {balances.verdict()} -> {'reconciled' if balances.ok else 'NOT RECONCILED'}")
    for line in balances.lines[:10]:
        print("   " + line)
    print("─" * 72)
    print(f"lost={lost} duplicated={duplicated} mismatched_invoices={mismatched} dlq={found}/{len(refused)}")
    return 0 if ok else 1
