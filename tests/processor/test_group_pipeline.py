"""deploy/pipeline.py starts processor instances of one group: each its own ops port, optionally its own home."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest

from meterstream.deploy import pipeline as pipeline_module
from meterstream.deploy.pipeline import Pipeline


class FakePopen:
    started: ClassVar[list[tuple[list[str], dict[str, str]]]] = []

    def __init__(self, args, env, **kwargs) -> None:
        FakePopen.started.append((args, env))
        self.returncode = None

    def poll(self):
        return self.returncode


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> type[FakePopen]:
    FakePopen.started = []
    monkeypatch.setattr(pipeline_module.subprocess, "Popen", FakePopen)
    return FakePopen


def test_instances_get_consecutive_ops_ports_and_their_own_homes(popen, tmp_path: Path) -> None:
    env = {"METERSTREAM_PROCESSOR_METRICS_PORT": "9400", "METERSTREAM_HOME": "/shared"}
    p = Pipeline(env, tmp_path / "logs", instance_homes=tmp_path / "instances")
    p.start_processor(1)
    p.start_processor(3)
    p.start("sink")
    (args1, env1), (args3, env3), (sink_args, sink_env) = popen.started
    assert args1[-1] == args3[-1] == "process" and sink_args[-1] == "sink"  # no partition options
    assert env1["METERSTREAM_PROCESSOR_METRICS_PORT"] == "9400" and env3["METERSTREAM_PROCESSOR_METRICS_PORT"] == "9402"
    assert env1["METERSTREAM_HOME"] == str(tmp_path / "instances" / "processor")
    assert env3["METERSTREAM_HOME"] == str(tmp_path / "instances" / "processor-3")
    assert sink_env["METERSTREAM_HOME"] == "/shared"  # only processors move house
    assert p.processors() == ["processor", "processor-3"]
    p.procs.pop("processor-3")  # stopped
    assert p.processors() == ["processor"] and p.started_processors == ["processor", "processor-3"]


def test_without_instance_homes_every_instance_shares_the_home(popen, tmp_path: Path) -> None:
    p = Pipeline({"METERSTREAM_PROCESSOR_METRICS_PORT": "9400", "METERSTREAM_HOME": "/shared"}, tmp_path)
    p.start("processor")
    p.start_processor(2)
    assert [e["METERSTREAM_HOME"] for _, e in popen.started] == ["/shared", "/shared"]
    assert [e["METERSTREAM_PROCESSOR_METRICS_PORT"] for _, e in popen.started] == ["9400", "9401"]


def test_a_store_still_locked_by_its_previous_owner_is_waited_for(tmp_path: Path) -> None:
    """Instances sharing a home: the partition's new owner opens the directory the previous one may still hold."""
    import threading
    import time
    from types import SimpleNamespace

    from meterstream.processor.runner import NativeProcessor
    from meterstream.processor.store import PartitionStore

    held = PartitionStore(tmp_path / "p0")
    held.commit({"c|x": ["1", 0]}, 1, Counter({"rated": 1}))
    threading.Timer(1.0, held.close).start()  # the previous owner lets go a second later
    owner = SimpleNamespace(base=tmp_path)
    t0 = time.monotonic()
    store = NativeProcessor._open(owner, 0, wait_s=30)
    assert time.monotonic() - t0 >= 0.9 and store.next_offset() == 1
    store.close()
    held = PartitionStore(tmp_path / "p0")
    with pytest.raises(Exception, match=r"(?i)lock"):
        NativeProcessor._open(owner, 0, wait_s=0.5)  # not for ever
    held.close()
