"""The local broker's KRaft cluster id (what `StorageTool format -t <id>` accepts) and its server.properties."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

from meterstream.deploy.kafka_local import _cluster_id, _server_properties
from meterstream.schemas.settings import Settings

_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}")


def _valid(text: str) -> bool:
    if not _ID.fullmatch(text):
        return False
    raw = base64.urlsafe_b64decode(text + "==")
    return len(raw) == 16 and base64.urlsafe_b64encode(raw).decode().rstrip("=") == text


def test_thousands_of_generated_ids_are_22_char_base64_of_16_bytes_never_starting_with_dash() -> None:
    ids = [_cluster_id() for _ in range(20_000)]
    assert all(_valid(i) for i in ids), [i for i in ids if not _valid(i)][:5]
    assert len(set(ids)) == len(ids)
    # the first character covers the whole alphabet but '-': 63 symbols, each about 1/63 of 20,000 (~317)
    firsts = {i[0] for i in ids}
    assert "-" not in firsts and len(firsts) == 63


def _feed(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks


def test_bytes_that_would_start_with_dash_are_drawn_again() -> None:
    # 0xF8 = 0b111110_00: the first base64 sextet is 62, which URL-safe base64 writes as '-'
    dash = b"\xf8" + bytes(range(1, 16))
    assert base64.urlsafe_b64encode(dash).decode().startswith("-")
    good = b"\x00" + bytes(range(1, 16))
    source = _feed(dash, dash, good)
    assert _cluster_id(lambda: next(source)) == "AAECAwQFBgcICQoLDA0ODw"


def test_kafkas_reserved_ids_are_never_used() -> None:
    good = bytes(range(16))
    source = _feed(bytes(16), bytes(15) + b"\x01", good)
    assert _cluster_id(lambda: next(source)) == base64.urlsafe_b64encode(good).decode().rstrip("=")


def test_the_single_node_is_its_own_quorum_with_one_copy_of_every_topic(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_port=40100, partitions=6)
    text = _server_properties(settings, tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    assert len(props) == len([line for line in text.splitlines() if line])  # no key twice
    assert props["node.id"] == "1" and props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:40101"  # the controller: the port + 1
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40100,CONTROLLER://127.0.0.1:40101"
    assert (props["log.dirs"], props["num.partitions"]) == (str(tmp_path / "data"), "6")
    # one node: every topic, the internal ones too, has one copy and needs one in sync
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert "controller.quorum.voters" not in props and "broker.session.timeout.ms" not in props
