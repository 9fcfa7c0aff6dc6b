"""The pipeline's processes: `meterstream kafka|init|process|sink|up|demo|chaos`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from meterstream.deploy.cli_common import call

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def _kafka(args: Any, settings: Settings) -> int:
    from meterstream.deploy import kafka_local

    if args.brokers is not None:  # a local cluster of N KRaft nodes (deploy/kafka_cluster.py)
        settings = settings.model_copy(update={"kafka_brokers": args.brokers})
    if args.action == "install":
        print(kafka_local.ensure_jars(settings))
        return 0
    if args.action == "start":
        st = kafka_local.start(settings, node=args.node)
    elif args.action == "stop":
        stopped = kafka_local.stop(settings, kill=args.kill, node=args.node)
        print("stopped" if stopped else "no local broker was running")
        return 0
    else:
        st = kafka_local.status(settings)
    if args.as_json:
        print(json.dumps(broker_json(st), indent=2))
        return 0 if st.answering else 1
    for n in st.nodes:
        print(f"node={n.node} bootstrap={n.bootstrap} pid={n.pid} answering={n.answering}")
    print(f"bootstrap={st.bootstrap} managed={st.managed} pid={st.pid} answering={st.answering}")
    return 0 if st.answering else 1


def broker_json(st: Any) -> dict[str, Any]:
    """`kafka start|status --json`: the broker (kafka_local.BrokerStatus) and a local cluster's nodes, as printed."""
    nodes = [{"node": n.node, "bootstrap": n.bootstrap, "pid": n.pid, "answering": n.answering} for n in st.nodes]
    return {"bootstrap": st.bootstrap, "managed": st.managed, "pid": st.pid, "answering": st.answering, "nodes": nodes}


def _init(args: Any, settings: Settings) -> int:
    from meterstream.aggregation.client import open_store
    from meterstream.aggregation.ddl import create_schema
    from meterstream.deploy import kafka_local
    from meterstream.entities.db import database_url, migrate
    from meterstream.ingest.topics import ensure_topics

    if not kafka_local.start(settings).answering:  # a broker named by METERSTREAM_KAFKA_BOOTSTRAP that does not
        # answer: one line (it printed librdkafka's connection log and then a KafkaException worded as a bug)
        raise RuntimeError(f"the Kafka broker at {settings.bootstrap} cannot be reached: init creates the topics "
                           "there; start it or set METERSTREAM_KAFKA_BOOTSTRAP")  # fmt: skip
    created = ensure_topics(settings)
    print(f"topics: created {created or 'none (all present)'}")
    migrate(settings)
    print(f"database: migrated {database_url(settings).split('@')[-1]}")
    # embedded store held by the sink: through its front, as its writer (or one line saying why not)
    n = create_schema(open_store(settings, writer=True), settings.clickhouse_database, settings.clickhouse_cluster)
    print(f"clickhouse: {n} statements applied to {settings.clickhouse_database} at {settings.clickhouse_dsn}")
    return 0


def _process(args: Any, settings: Settings) -> int:
    if settings.processor_engine == "faust":
        from meterstream.processor.faust_engine import run_worker

        run_worker(settings)
    else:
        from meterstream.processor.runner import run_native

        run_native(settings, args.worker, args.workers)
    return 0


def _sink(args: Any, settings: Settings) -> int:
    from meterstream.aggregation.sink_main import run_sink

    return run_sink(settings)


def _up(args: Any, settings: Settings) -> int:
    from meterstream.deploy.up import run_up

    return run_up(settings, api_port=args.port, as_json=args.as_json)


def _demo(args: Any, settings: Settings) -> int:
    from meterstream.deploy.demo import run_demo

    return run_demo(settings, events=args.events, out=Path(args.out), period=args.period, as_json=args.as_json)


def _chaos(args: Any, settings: Settings) -> int:
    from meterstream.deploy import chaos

    if args.cluster:  # 3 brokers, 2 processor instances, a broker and an instance killed, one joining
        return chaos.run_cluster_chaos(settings, Path(args.out), events=args.events or 200_000, seconds=args.seconds,
                                       as_json=args.as_json)  # fmt: skip
    plan = chaos.ChaosPlan(events=args.events or 500_000, seconds=args.seconds, processor_kills=args.kills,
                           sink_kills=args.kills, clickhouse_outage_s=args.outage, seed=args.seed)  # fmt: skip
    return chaos.run_chaos(settings, plan, Path(args.out), as_json=args.as_json)


def register(app: typer.Typer) -> None:
    @app.command("kafka", help="run a local Kafka (KRaft: one node, or --brokers N) from Maven Central jars")
    def kafka(
        action: Annotated[Literal["install", "start", "stop", "status"], typer.Argument()],
        brokers: Annotated[int | None, typer.Option(min=1, max=9, metavar="N", help="nodes of a local KRaft "
                                                    "cluster (default METERSTREAM_KAFKA_BROKERS, 1)")] = None,
        node: Annotated[int | None, typer.Option(help="start or stop only this node of a local cluster (1..N)")]
        = None,
        kill: Annotated[bool, typer.Option("--kill", help="stop with SIGKILL instead of a controlled shutdown")]
        = False,
        as_json: Annotated[bool, typer.Option("--json", help="start, status: one JSON object")]
        = False,
    ) -> int:  # fmt: skip
        return call(_kafka, locals())

    @app.command("init", help="create topics and ClickHouse tables (safe to run again)")
    def init() -> int:
        return call(_init, {})

    @app.command("process", help="run the stream processor (dedup + rate) until stopped")
    def process(
        worker: Annotated[
            int,
            typer.Option(
                min=0,
                help="this instance's index: its ops port is "
                "METERSTREAM_PROCESSOR_METRICS_PORT + index (native engine)",
            ),
        ] = 0,
        workers: Annotated[
            int, typer.Option(min=1, help="ignored: the consumer group assigns the partitions (kept for one release)")
        ] = 1,
    ) -> int:
        return call(_process, locals())

    @app.command("sink", help="run the ClickHouse sink until stopped")
    def sink() -> int:
        return call(_sink, {})

    @app.command("up", help="broker, processor, sink and API in the foreground; Ctrl-C stops them all")
    def up(port: Annotated[int | None, typer.Option(min=1, max=65535, help="API port (default: "
                                                    "METERSTREAM_API_PORT, 8080)")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="the status as one JSON line instead of the table")]
           = False) -> int:  # fmt: skip
        return call(_up, locals())

    @app.command("demo", help="the whole pipeline on a generated workload, end to end")
    def demo(
        events: Annotated[int, typer.Option(min=1)] = 100_000,
        out: Annotated[str, typer.Option()] = "meterstream-out",
        period: Annotated[str | None, typer.Option(help="YYYY-MM (default: last month)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="the summary as one JSON object")] = False,
    ) -> int:
        return call(_demo, locals())

    @app.command("chaos", help="fault-injection run: kills, broker restart, ClickHouse outage, then a verdict")
    def chaos(
        events: Annotated[int | None, typer.Option(min=1, help="events produced (default 500,000; --cluster: "
                                                   "200,000)")] = None,
        seconds: Annotated[float | None, typer.Option(help="spread production over this long")] = None,
        kills: Annotated[int, typer.Option(min=0, help="SIGKILLs of the processor and of the sink, each")] = 3,
        outage: Annotated[float, typer.Option(help="seconds ClickHouse is unavailable")] = 22.0,
        seed: Annotated[int, typer.Option()] = 11,
        out: Annotated[str, typer.Option()] = "meterstream-chaos",
        cluster: Annotated[bool, typer.Option("--cluster", help="the cluster mode: 3 brokers, 2 processor instances, "
                                              "a broker and an instance killed, one joining (--kills, --outage and "
                                              "--seed are the plan's)")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="the verdict as one JSON object")] = False,
    ) -> int:  # fmt: skip
        return call(_chaos, locals())
