"""A single-node Apache Kafka (KRaft) on 127.0.0.1, from Maven Central jars: no Docker, only Java 17 + Maven.

METERSTREAM_KAFKA_BROKERS > 1: a cluster of that many nodes instead (deploy/kafka_cluster.py).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meterstream.schemas.settings import Settings

_HERE = Path(__file__).resolve().parent / "kafka"


@dataclass(frozen=True)
class BrokerStatus:
    bootstrap: str
    managed: bool  # started by us (False: METERSTREAM_KAFKA_BOOTSTRAP names an external broker)
    pid: int | None
    answering: bool
    nodes: tuple = ()  # a cluster's nodes (kafka_cluster.NodeStatus); () for the single node


def _say(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def broker_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "kafka"


def ensure_jars(settings: Settings) -> Path:
    """Fetch the broker's jars once into the cache (reused across runs and checkouts)."""
    target = settings.cache_dir.expanduser().resolve() / f"kafka-{settings.kafka_version}"
    libs = target / "libs"
    if (target / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker jars; install it (apt-get install maven)")
    if shutil.which("java") is None:
        raise RuntimeError("Java 17+ is needed to run the Kafka broker (apt-get install openjdk-17-jre-headless)")
    target.mkdir(parents=True, exist_ok=True)
    pom = (_HERE / "pom.xml.template").read_text().replace("@KAFKA_VERSION@", settings.kafka_version)
    (target / "pom.xml").write_text(pom)
    _say(f"fetching Apache Kafka {settings.kafka_version} jars from Maven Central into {libs} (once)")
    if libs.exists():
        shutil.rmtree(libs)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(target / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mvn failed to fetch Kafka jars:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (target / ".complete").write_text(settings.kafka_version)
    _say(f"fetched {len(list(libs.glob('*.jar')))} jars")
    return libs


def _server_properties(settings: Settings, data: Path) -> str:
    port = settings.kafka_port
    return kraft_properties(node=1, quorum=f"controller.quorum.bootstrap.servers=127.0.0.1:{port + 1}", port=port,
                            data=data, partitions=settings.partitions)  # fmt: skip


def kraft_properties(*, node: int, quorum: str, port: int, data: Path, partitions: int, rf: int = 1, isr: int = 1,
                     extra: Sequence[str] = ()) -> str:  # fmt: skip
    """server.properties of one of our KRaft nodes (broker and controller in one process, plaintext on 127.0.0.1,
    the controller on `port` + 1): `quorum` is the controller line (one node's bootstrap server, a cluster's static
    voters); `rf` and `isr` the replication of every topic, internal ones included (1 and 1, Kafka's defaults, for a
    single node); `extra` lines follow. The single node (`_server_properties`) and each node of a local cluster
    (kafka_cluster.node_properties) are written by it."""
    ctl = port + 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node}",
            quorum,
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={partitions}",
            # every topic, our own (ingest/topics.py sets the same explicitly), auto-created and internal ones
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "unclean.leader.election.enable=false",
            *extra,
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.retention.hours=-1",
            "",
        ]
    )


def _java_cmd(libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        # C1 only: on a 2-core machine the C2 compiler's warm-up cost the broker more CPU than its faster
        # code saved (broker CPU while draining 200k events: 8.5-12 s with C2, 4-6 s without; bench/e2e.py)
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_HERE / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def _pid(settings: Settings) -> int | None:
    pidfile = broker_dir(settings) / "broker.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet_logger()})
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:
        return False


def _quiet_logger():  # librdkafka logs connection refusals loudly while the broker boots
    import logging

    log = logging.getLogger("meterstream.kafka.probe")
    log.setLevel(logging.CRITICAL)
    return log


def _cluster(settings: Settings, node: int | None = None, running: bool = False) -> Settings | None:
    """The settings of the local multi-node cluster to act on (deploy/kafka_cluster.py), or None for the
    single node: METERSTREAM_KAFKA_BROKERS > 1, or a node named, or (`running`: stop and status) a cluster
    started from this home that still runs."""
    from meterstream.deploy import kafka_cluster

    if settings.kafka_bootstrap:
        return None
    if settings.kafka_brokers > 1:
        return settings
    layout = kafka_cluster.running_layout(settings) if running else None
    if node is not None and layout is None:
        layout = kafka_cluster.read_layout(settings)
        if layout is None:
            raise ValueError(f"--node {node}: no cluster was started from {broker_dir(settings)} (--brokers 3)")
    if layout is None:
        return None
    return settings.model_copy(update={"kafka_brokers": layout.brokers, "kafka_port": layout.kafka_port})


def _cluster_status(settings: Settings, nodes: list) -> BrokerStatus:
    pids = [n.pid for n in nodes if n.pid is not None]
    return BrokerStatus(settings.bootstrap, True, pids[0] if pids else None,
                        bool(nodes) and all(n.answering for n in nodes), tuple(nodes))  # fmt: skip


def start(settings: Settings, wait_seconds: float = 90.0, node: int | None = None) -> BrokerStatus:
    """Start the local broker unless one is named or already running; return once it answers. With
    METERSTREAM_KAFKA_BROKERS > 1 (or `node`), the local cluster's nodes (deploy/kafka_cluster.py)."""
    if settings.kafka_bootstrap:
        return BrokerStatus(settings.bootstrap, False, None, answers(settings.bootstrap))
    cluster = _cluster(settings, node)
    if cluster is not None:
        from meterstream.deploy import kafka_cluster

        return _cluster_status(cluster, kafka_cluster.start(cluster, node=node, wait_seconds=wait_seconds))
    from meterstream.deploy.kafka_cluster import running_layout

    layout = running_layout(settings)
    if layout is not None:
        raise RuntimeError(
            f"a {layout.brokers}-node cluster runs from {broker_dir(settings)}: set METERSTREAM_KAFKA_BROKERS="
            f"{layout.brokers} (and METERSTREAM_KAFKA_PORT={layout.kafka_port}) to use it, or `kafka stop` it"
        )
    pid = _pid(settings)
    if pid is not None and answers(settings.bootstrap):
        return BrokerStatus(settings.bootstrap, True, pid, True)
    if pid is None and answers(settings.bootstrap, timeout=1.0):
        raise RuntimeError(
            f"{settings.bootstrap} is served by a broker not started from {broker_dir(settings)}: set "
            "METERSTREAM_KAFKA_BOOTSTRAP to use it, or METERSTREAM_KAFKA_PORT for another port"
        )
    libs = ensure_jars(settings)
    base = broker_dir(settings)
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    props.write_text(_server_properties(settings, data))
    if not (data / "meta.properties").exists():
        cluster_id = _cluster_id()
        _say(f"formatting storage in {data} (cluster id {cluster_id})")
        subprocess.run(
            _java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
            check=True,
            capture_output=True,
            text=True,
        )
    log = open(base / "broker.log", "ab")
    proc = subprocess.Popen(
        _java_cmd(libs, "kafka.Kafka", str(props), heap=settings.kafka_heap),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (base / "broker.pid").write_text(str(proc.pid))
    _say(f"starting broker pid {proc.pid} on {settings.bootstrap} (log: {base / 'broker.log'})")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (base / "broker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka broker exited with {proc.returncode}:\n{tail}")
        if answers(settings.bootstrap, timeout=1.0):
            _say("broker is up")
            return BrokerStatus(settings.bootstrap, True, proc.pid, True)
        time.sleep(0.5)
    raise RuntimeError(f"Kafka broker did not answer on {settings.bootstrap} within {wait_seconds:.0f}s")


def _cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id as Kafka's `Uuid.randomUuid()` makes one: 16 random bytes in URL-safe base64
    without padding (22 characters), drawn again while the text starts with '-' (1 in 64 would: the tools'
    argument parser then reads the id as an option, `StorageTool format -t -xyz` fails) or the bytes are
    Kafka's reserved zero / metadata-topic ids."""
    while True:
        raw = random_bytes()
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-") and raw not in _RESERVED_UUIDS:
            return text


_RESERVED_UUIDS = (bytes(16), bytes(15) + b"\x01")  # Uuid.ZERO_UUID, Uuid.METADATA_TOPIC_ID


def stop(settings: Settings, wait_seconds: float = 30.0, kill: bool = False, node: int | None = None) -> bool:
    """Stop the local broker (SIGTERM, then SIGKILL after `wait_seconds`); False if none ran. A local
    cluster: all its nodes, or only `node`."""
    if settings.kafka_bootstrap:
        return False
    cluster = _cluster(settings, node, running=True)
    if cluster is not None:
        from meterstream.deploy import kafka_cluster

        return bool(kafka_cluster.stop(cluster, node=node, kill=kill, wait_seconds=wait_seconds))
    pid = _pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    _reap(pid)
    (broker_dir(settings) / "broker.pid").unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(settings: Settings) -> BrokerStatus:
    if settings.kafka_bootstrap:
        return BrokerStatus(settings.bootstrap, False, None, answers(settings.bootstrap))
    cluster = _cluster(settings, running=True)
    if cluster is not None:
        from meterstream.deploy import kafka_cluster

        return _cluster_status(cluster, kafka_cluster.status(cluster))
    pid = _pid(settings)
    return BrokerStatus(settings.bootstrap, True, pid, pid is not None and answers(settings.bootstrap))
