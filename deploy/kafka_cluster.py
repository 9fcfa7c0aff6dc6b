"""A local Apache Kafka cluster of N KRaft nodes on 127.0.0.1 (`meterstream kafka start --brokers 3`).

Each node is a combined broker + controller (`process.roles=broker,controller`) and the three are the
controller quorum's voters (static `controller.quorum.voters`). Why combined rather than 3 controllers + 3
brokers: half the JVMs (3 x 256 MB heap instead of 6 on a 2-core machine), and a 3-voter quorum still
survives one node's loss (2 of 3 is a majority), which is the failure the chaos mode injects: killing one
node takes away one broker and one voter, and both the metadata quorum and every partition (RF 3,
`min.insync.replicas=2`) stay writable. Kafka advises dedicated controllers for large production clusters;
this one is for tests, the demo and a developer's machine.

Node i (1-based) listens on `kafka_port + 2(i-1)` (clients) and the port after it (controller), keeps its
data, properties, pid and log in `<home>/kafka/node-<i>/`, and the layout (size, ports, cluster id) is written
to `<home>/kafka/cluster.json` so that `kafka stop` / `status` find every node. The single node of
`--brokers 1` is `deploy.kafka_local`'s, unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from meterstream.schemas.settings import Settings

CLUSTER_HEAP = "256m"  # per node, unless METERSTREAM_KAFKA_HEAP is set


def replication_factor(brokers: int) -> int:
    """Replicas of every topic on a cluster of `brokers` nodes: 3 when it can, fewer on a smaller cluster."""
    return max(1, min(3, brokers))


def min_insync(replicas: int) -> int:
    """`min.insync.replicas` for a topic of `replicas` replicas: 2 of 3 (an acks=all write survives one
    node's loss and is on two nodes), 1 below (a 2-replica topic must stay writable with one node down)."""
    return 2 if replicas >= 3 else 1


@dataclass(frozen=True)
class NodeStatus:
    node: int
    bootstrap: str
    pid: int | None
    answering: bool


@dataclass(frozen=True)
class Layout:
    brokers: int
    kafka_port: int
    cluster_id: str

    def ports(self, node: int) -> tuple[int, int]:
        port = self.kafka_port + 2 * (node - 1)
        return port, port + 1

    def bootstrap(self, node: int) -> str:
        return f"127.0.0.1:{self.ports(node)[0]}"

    def voters(self) -> str:
        return ",".join(f"{n}@127.0.0.1:{self.ports(n)[1]}" for n in range(1, self.brokers + 1))


def _say(msg: str) -> None:
    from meterstream.deploy.kafka_local import _say as say

    say(msg)


def base_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "kafka"


def node_dir(settings: Settings, node: int) -> Path:
    return base_dir(settings) / f"node-{node}"


def layout_file(settings: Settings) -> Path:
    return base_dir(settings) / "cluster.json"


def read_layout(settings: Settings) -> Layout | None:
    try:
        raw = json.loads(layout_file(settings).read_text())
        return Layout(int(raw["brokers"]), int(raw["kafka_port"]), str(raw["cluster_id"]))
    except (FileNotFoundError, ValueError, KeyError):
        return None


def running_layout(settings: Settings) -> Layout | None:
    """The recorded cluster when one of its nodes still runs (what `stop` / `status` act on)."""
    layout = read_layout(settings)
    if layout and any(node_pid(settings, n) for n in range(1, layout.brokers + 1)):
        return layout
    return None


def node_properties(settings: Settings, layout: Layout, node: int) -> str:
    from meterstream.deploy.kafka_local import kraft_properties

    rf = replication_factor(layout.brokers)
    return kraft_properties(
        node=node, quorum=f"controller.quorum.voters={layout.voters()}", port=layout.ports(node)[0],
        data=node_dir(settings, node) / "data", partitions=settings.partitions, rf=rf, isr=min_insync(rf),
        # a killed node is fenced (its leaderships move, it leaves the ISR) after 6 s without a heartbeat
        extra=["broker.heartbeat.interval.ms=1000", "broker.session.timeout.ms=6000"],
    )  # fmt: skip


def free_port_block(count: int, attempts: int = 100) -> int:
    """A port p with p .. p + count - 1 all free on 127.0.0.1 (a cluster of count / 2 nodes)."""
    from meterstream.deploy.ports import free_port

    for _ in range(attempts):
        first = free_port()
        if first + count > 65535:
            continue
        ok = True
        for port in range(first + 1, first + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def node_pid(settings: Settings, node: int) -> int | None:
    try:
        pid = int((node_dir(settings, node) / "broker.pid").read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    try:  # a killed child of this process stays a zombie until reaped: it does not run
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return None
    except ChildProcessError:
        pass
    return pid


def _heap(settings: Settings) -> str:
    return settings.kafka_heap if "kafka_heap" in settings.model_fields_set else CLUSTER_HEAP


def _layout_for(settings: Settings) -> Layout:
    """The cluster to start: the recorded one when it matches the settings (same size and ports: its
    storage is formatted with its cluster id), else a new one (a new cluster id; nodes are formatted anew)."""
    old = read_layout(settings)
    if old and old.brokers == settings.kafka_brokers and old.kafka_port == settings.kafka_port:
        return old
    from meterstream.deploy.kafka_local import _cluster_id

    if old:
        for n in range(1, old.brokers + 1):
            if node_pid(settings, n):
                raise RuntimeError(
                    f"a {old.brokers}-node cluster from {base_dir(settings)} still runs on port {old.kafka_port}: "
                    "`meterstream kafka stop` it first"
                )
        import shutil

        for n in range(1, max(old.brokers, settings.kafka_brokers) + 1):
            shutil.rmtree(node_dir(settings, n), ignore_errors=True)
    layout = Layout(settings.kafka_brokers, settings.kafka_port, _cluster_id())
    base_dir(settings).mkdir(parents=True, exist_ok=True)
    layout_file(settings).write_text(json.dumps(layout.__dict__))
    return layout


def start(settings: Settings, node: int | None = None, wait_seconds: float = 90.0) -> list[NodeStatus]:
    """Start every node of the cluster (or only `node`) that does not run; return once each started node
    answers and the cluster's metadata lists it as a live broker."""
    from meterstream.deploy.kafka_local import _java_cmd, ensure_jars

    layout = _layout_for(settings)
    nodes = list(range(1, layout.brokers + 1)) if node is None else [node]
    if node is not None and not 1 <= node <= layout.brokers:
        raise ValueError(f"--node {node}: the cluster has nodes 1..{layout.brokers}")
    libs = ensure_jars(settings)
    formats = []
    for n in nodes:
        d = node_dir(settings, n)
        d.mkdir(parents=True, exist_ok=True)
        (d / "server.properties").write_text(node_properties(settings, layout, n))
        if not (d / "data" / "meta.properties").exists():
            cmd = _java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", layout.cluster_id, "-c",
                            str(d / "server.properties"))  # fmt: skip
            formats.append((n, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for n, proc in formats:  # formatted in parallel: a JVM start each
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"formatting node {n}'s storage failed:\n{out[-3000:]}")
    if formats:
        _say(f"formatted nodes {[n for n, _ in formats]} (cluster id {layout.cluster_id})")
    procs: dict[int, subprocess.Popen] = {}
    for n in nodes:
        if node_pid(settings, n) is not None:
            continue
        d = node_dir(settings, n)
        log = open(d / "broker.log", "ab")
        procs[n] = subprocess.Popen(
            _java_cmd(libs, "kafka.Kafka", str(d / "server.properties"), heap=_heap(settings)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        (d / "broker.pid").write_text(str(procs[n].pid))
        _say(f"starting node {n} pid {procs[n].pid} on {layout.bootstrap(n)} (log: {d / 'broker.log'})")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        for n, proc in procs.items():
            if proc.poll() is not None:
                tail = (node_dir(settings, n) / "broker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kafka node {n} exited with {proc.returncode}:\n{tail}")
        live = live_brokers(layout, nodes)
        if set(nodes) <= live and all(_answers(layout.bootstrap(n)) for n in nodes):
            _say(f"nodes {nodes} are up ({len(live)} of {layout.brokers} live)")
            return status(settings, layout)
        time.sleep(0.5)
    raise RuntimeError(f"Kafka nodes {nodes} did not come up within {wait_seconds:.0f}s (logs in {base_dir(settings)})")


def _answers(bootstrap: str) -> bool:
    from meterstream.deploy.kafka_local import answers

    return answers(bootstrap, timeout=1.0)


def live_brokers(layout: Layout, ask: list[int] | None = None, timeout: float = 1.0) -> set[int]:
    """Node ids the cluster's metadata lists as live brokers (asked of the given nodes in turn)."""
    from confluent_kafka.admin import AdminClient

    from meterstream.deploy.kafka_local import _quiet_logger

    for n in ask or range(1, layout.brokers + 1):
        try:
            admin = AdminClient({"bootstrap.servers": layout.bootstrap(n), "log_level": 0, "logger": _quiet_logger()})
            md = admin.list_topics(timeout=timeout)
            if md.brokers:
                return set(md.brokers)
        except Exception:
            continue
    return set()


def stop(settings: Settings, node: int | None = None, kill: bool = False, wait_seconds: float = 30.0) -> list[int]:
    """Stop every node (or only `node`): SIGTERM (a controlled shutdown; SIGKILL with `kill`), then SIGKILL
    after `wait_seconds`. All nodes are signalled at once: the last ones cannot shut down cleanly on their
    own once the quorum is gone. Returns the nodes stopped."""
    layout = read_layout(settings)
    if layout is None:
        return []
    if node is not None and not 1 <= node <= layout.brokers:
        raise ValueError(f"--node {node}: the cluster has nodes 1..{layout.brokers}")
    pids = {n: node_pid(settings, n) for n in ([node] if node else range(1, layout.brokers + 1))}
    pids = {n: p for n, p in pids.items() if p is not None}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    for n, pid in pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        (node_dir(settings, n) / "broker.pid").unlink(missing_ok=True)
    return sorted(pids)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def status(settings: Settings, layout: Layout | None = None) -> list[NodeStatus]:
    layout = layout or read_layout(settings)
    if layout is None:
        return []
    out = []
    for n in range(1, layout.brokers + 1):
        pid = node_pid(settings, n)
        out.append(NodeStatus(n, layout.bootstrap(n), pid, pid is not None and _answers(layout.bootstrap(n))))
    return out
