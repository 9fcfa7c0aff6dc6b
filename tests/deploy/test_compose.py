"""docker-compose.yml (no Docker engine here): its structure, and the two Kafka faults of issue #18.

1. The Kafka volume is mounted at /var/lib/kafka/data; the apache/kafka image keeps its log (the data) in
   `log.dirs`, /tmp/kraft-combined-logs by default, so without KAFKA_LOG_DIRS pointing at the volume every
   message was lost with the container.
2. Clients get the advertised address of the listener they connected to: with only `kafka:9092`, a client on the
   host bootstraps, is told `kafka:9092`, and cannot resolve it. An EXTERNAL listener advertised as
   localhost:<published port> serves the host; containers keep kafka:9092.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _listeners(value: str) -> dict[str, str]:
    """'PLAINTEXT://kafka:9092,EXTERNAL://localhost:29092' -> {'PLAINTEXT': 'kafka:9092', ...}"""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        out[name] = address
    return out


def test_compose_structure_has_what_docker_compose_needs(compose: dict) -> None:
    assert set(compose) <= {"x-meterstream", "services", "volumes", "networks", "configs", "secrets", "name"}
    services = compose["services"]
    for name in ("kafka", "clickhouse", "processor", "sink", "api", "prometheus", "grafana"):
        assert name in services, name
    named_volumes = set(compose["volumes"])
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports", []):
            host, _, container = str(port).rpartition(":")
            assert host.isdigit() and container.isdigit(), f"{name}: port {port!r}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("./deploy"):  # configuration of the repository (./meterstream-out is made by docker)
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            elif source.startswith("."):
                continue
            else:
                assert source in named_volumes, f"{name}: volume {source} not declared"
    published = [str(p).split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"a host port published twice: {published}"


def test_kafka_keeps_its_log_on_the_volume(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    for d in log_dirs.split(","):
        assert any(d == m or d.startswith(m.rstrip("/") + "/") for m in mounts), f"{d} is not on a volume {mounts}"
    assert mounts["/var/lib/kafka/data"] == "kafka-data"


def test_kafka_has_a_listener_host_clients_can_resolve(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092"  # the containers' address stays
    hosts = {name: addr for name, addr in advertised.items() if addr.split(":")[0] in ("localhost", "127.0.0.1")}
    assert hosts, f"no listener advertised on localhost: {advertised}"
    published = {str(p).split(":")[0]: str(p).split(":")[1] for p in kafka["ports"]}
    for name, addr in hosts.items():
        port = addr.rsplit(":", 1)[1]
        assert name in listeners and listeners[name].endswith(f":{published[port]}"), (name, listeners, published)
        assert name in protocol_map, f"{name} has no security protocol"
    # the broker talks to itself on the containers' listener, and a published port never advertises an
    # address the host cannot resolve
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    for host_port, container_port in published.items():
        names = [n for n, a in listeners.items() if a.endswith(f":{container_port}")]
        assert names and all(advertised[n].startswith(("localhost:", "127.0.0.1:")) for n in names), host_port


def test_the_services_point_at_the_containers_listener(compose: dict) -> None:
    env = compose["x-meterstream"]["environment"]
    assert env["METERSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_prometheus_and_grafana_mount_the_repository_configs(compose: dict) -> None:
    services = compose["services"]
    prom = services["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    targets = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    scraped = {t for job in targets["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    processor_port = services["processor"]["environment"]["METERSTREAM_PROCESSOR_METRICS_PORT"]
    sink_port = services["sink"]["environment"]["METERSTREAM_SINK_METRICS_PORT"]
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert scraped == {f"processor:{processor_port}", f"sink:{sink_port}", f"api:{api_port}"}
    grafana = services["grafana"]
    assert grafana["environment"]["GF_PLUGINS_PREINSTALL_SYNC"] == "grafana-clickhouse-datasource"
    dash = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/meterstream.yml").read_text())
    path = dash["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker here")
def test_docker_compose_config_accepts_it() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker has no compose plugin here")
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
