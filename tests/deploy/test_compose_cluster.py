"""deploy/docker-compose.cluster.yml and deploy/clickhouse-cluster/ (no Docker engine here): the YAML is loaded and
checked for what the cluster needs — three KRaft brokers that agree on their voters, listeners every client can
reach, replication settings, two ClickHouse replicas whose remote_servers / macros / Keeper config match the DDL's
cluster (aggregation/cluster_ddl.py) and each other, and Meterstream services whose settings name all of it."""

from __future__ import annotations

import base64
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from meterstream.aggregation import cluster_ddl
from meterstream.schemas.settings import Settings, settings_from_env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.cluster.yml"
KAFKA = ("kafka-1", "kafka-2", "kafka-3")
CLICKHOUSE = ("clickhouse-1", "clickhouse-2")
MS = ("init", "processor-1", "processor-2", "sink", "api", "keys", "close")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path (relative to deploy/) of a service's volumes."""
    out = {}
    for v in service.get("volumes", []):
        host, target, *_ = v.split(":")
        out[target] = host
    return out


def test_the_services_are_there(services: dict) -> None:
    assert set(services) == {*KAFKA, "keeper", *CLICKHOUSE, "postgres", *MS}


def test_three_kraft_brokers_agree_and_replicate_three_times(services: dict) -> None:
    envs = [services[k]["environment"] for k in KAFKA]
    assert [e["KAFKA_NODE_ID"] for e in envs] == [1, 2, 3]
    assert {e["CLUSTER_ID"] for e in envs} == {"4L6g3nShT-eMCtK--X86sw"}  # one cluster
    cid = envs[0]["CLUSTER_ID"]  # a Kafka Uuid: 16 bytes in URL-safe base64 without padding, not starting with '-'
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16 and not cid.startswith("-")
    for name, env in zip(KAFKA, envs, strict=True):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        listeners, advertised = _listeners(env["KAFKA_LISTENERS"]), _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(listeners) == set(protocols) == {"PLAINTEXT", "CONTROLLER", "EXTERNAL"}
        assert listeners["CONTROLLER"] == ":9093" and env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        # containers reach the broker by its service name; host clients by localhost on the published port
        assert advertised["PLAINTEXT"] == f"{name}:9092" and services[name]["hostname"] == name
        external = int(advertised["EXTERNAL"].removeprefix("localhost:"))
        assert listeners["EXTERNAL"] == f":{external}" and f"{external}:{external}" in services[name]["ports"]
        # the log is on the volume (the image's default log dir is elsewhere)
        assert _mounts(services[name])[env["KAFKA_LOG_DIRS"]] == f"{name}-data"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
    assert len({services[k]["ports"][0] for k in KAFKA}) == 3


def _xml(path: str) -> ET.Element:
    return ET.parse(DEPLOY / path).getroot()


def test_clickhouse_config_matches_the_ddl_and_the_compose_file(services: dict) -> None:
    names = {services[s]["environment"]["METERSTREAM_CLICKHOUSE_CLUSTER"] for s in MS}
    assert names == {"meterstream_cluster"}
    cluster = names.pop()
    for ch in CLICKHOUSE:
        mounts = {target: host for target, host in _mounts(services[ch]).items() if host.startswith("./")}
        assert all((DEPLOY / host).is_file() for host in mounts.values()), mounts
        config = _xml(mounts["/etc/clickhouse-server/config.d/cluster.xml"])
        macros = _xml(mounts["/etc/clickhouse-server/config.d/macros.xml"]).find("macros")
        remote = config.find(f"remote_servers/{cluster}")
        assert remote is not None, f"remote_servers has no {cluster}"
        shards = remote.findall("shard")
        assert len(shards) == 1 and shards[0].findtext("internal_replication") == "true"
        replicas = [(r.findtext("host"), r.findtext("port")) for r in shards[0].findall("replica")]
        assert replicas == [("clickhouse-1", "9000"), ("clickhouse-2", "9000")]
        # this server's macros: the {shard} / {replica} of the DDL's replica path, its own name as the replica
        assert "{shard}" in cluster_ddl.REPLICA_PATH and cluster_ddl.REPLICA_NAME == "{replica}"
        assert macros.findtext("shard") == "01" and macros.findtext("replica") == ch == services[ch]["hostname"]
        assert macros.findtext("cluster") == cluster
        # Keeper: the service and port its own config listens on
        node = config.find("zookeeper/node")
        keeper = _xml(_mounts(services["keeper"])["/etc/clickhouse-keeper/keeper_config.xml"].removeprefix("./"))
        assert (node.findtext("host"), node.findtext("port")) == ("keeper", keeper.findtext("keeper_server/tcp_port"))
        assert keeper.findtext("keeper_server/raft_configuration/server/hostname") == "keeper"
        assert config.findtext("distributed_ddl/path")
        # the sink's inserts into the Distributed tables are synchronous (cluster_ddl.INSERT_PROFILE)
        profile = _xml(mounts["/etc/clickhouse-server/users.d/meterstream.xml"]).find("profiles/default")
        assert {k: profile.findtext(k) for k in cluster_ddl.INSERT_PROFILE} == cluster_ddl.INSERT_PROFILE
    assert _mounts(services["clickhouse-1"])["/etc/clickhouse-server/config.d/macros.xml"] != \
        _mounts(services["clickhouse-2"])["/etc/clickhouse-server/config.d/macros.xml"]  # fmt: skip
    # the DDL the init and the sink run for that cluster names it in every statement
    stmts = cluster_ddl.statements("meterstream", cluster)
    assert all(f"ON CLUSTER {cluster}" in s for s in stmts)
    assert sum(f"Distributed({cluster}, meterstream," in s for s in stmts) == len(cluster_ddl.SHARDING) == 6


def test_meterstream_services_reach_every_broker_replica_and_postgres(services: dict) -> None:
    for name in MS:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = settings_from_env(env)  # every METERSTREAM_* name is a setting, every value valid
        assert set(k.removeprefix("METERSTREAM_").lower() for k in env) <= set(Settings.model_fields)
        assert settings.bootstrap == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert settings.clickhouse_cluster == "meterstream_cluster"
        assert settings.clickhouse_dsn.split("@")[1] in {"clickhouse-1:8123", "clickhouse-2:8123"}
        assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
        assert settings.database_url.split("@")[1].startswith("postgres:5432/")
        assert set(services[name]["depends_on"]) >= {*KAFKA, *CLICKHOUSE, "postgres"}
    # one consumer group assigns the partitions: no --workers (ignored), no --worker (in its own container each
    # serves the ops port its environment names)
    for name in ("processor-1", "processor-2"):
        assert services[name]["command"] == ["process"], name
        assert services[name]["environment"]["METERSTREAM_PROCESSOR_METRICS_PORT"] == "9464"
    # each processor keeps its own partitions' state
    assert _mounts(services["processor-1"])["/data"] != _mounts(services["processor-2"])["/data"]
    dockerfile = (DEPLOY.parent / services["api"]["build"]["dockerfile"]).read_text()
    assert "psycopg" in dockerfile  # the image can reach PostgreSQL


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose here")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("compose", [COMPOSE, DEPLOY.parent / "docker-compose.yml"], ids=["cluster", "single"])
def test_every_meterstream_command_parses_and_passes_no_ignored_option(compose: Path) -> None:
    """Each service built from the Meterstream image runs a command the CLI accepts, with no option the CLI
    ignores (as `--workers` has been since the consumer group assigns the partitions)."""
    from meterstream.deploy.cli import commands

    by_path = dict(commands())
    ours = {name: s for name, s in yaml.safe_load(compose.read_text())["services"].items() if "build" in s}
    assert {"processor-1", "processor-2"} <= set(ours) or "processor" in ours
    for name, service in ours.items():
        entrypoint = service.get("entrypoint") or ["meterstream"]
        assert entrypoint[0] == "meterstream", name
        argv = [*entrypoint[1:], *service.get("command", [])]
        if "command" not in service:  # a tool service (`docker compose run keys create ...`): the user gives the rest
            assert any(p[: len(argv)] == tuple(argv) for p in by_path), name
            continue
        path = next(p for p in by_path if tuple(argv[: len(p)]) == p)
        command = by_path[path]
        ctx = command.make_context("meterstream " + " ".join(path), argv[len(path) :])  # raises on a bad option
        given = [p for p in command.params if ctx.get_parameter_source(p.name).name == "COMMANDLINE"]
        assert [p.name for p in given if "ignored" in (p.help or "")] == [], name
    # the check sees an ignored option when one is given
    process = by_path[("process",)]
    ctx = process.make_context("meterstream process", ["--workers", "2"])
    assert any("ignored" in (p.help or "") for p in process.params if ctx.get_parameter_source(p.name).name
               == "COMMANDLINE")  # fmt: skip
