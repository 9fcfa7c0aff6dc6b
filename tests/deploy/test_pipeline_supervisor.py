"""`Pipeline.check_alive`, the supervisor of `up`, the demo and the chaos run: a process its watchdog ended
(status 75) is started again; any other exit is an error with the end of its log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterstream.deploy.pipeline import Pipeline
from meterstream.health import STALLED_EXIT_CODE


class ScriptedPipeline(Pipeline):
    """Runs `python -c <script>` for a name instead of the real command; one script per start, in order."""

    def __init__(self, logs: Path, scripts: dict[str, list[str]]) -> None:
        super().__init__({}, logs)
        self.scripts = scripts
        self.starts: list[str] = []

    def start(self, name: str) -> subprocess.Popen:
        script = self.scripts[name].pop(0)
        self.starts.append(name)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc


def _exited(proc: subprocess.Popen) -> None:
    proc.wait(30)


def test_a_stalled_exit_is_restarted_and_any_other_exit_raises(tmp_path: Path) -> None:
    stalled = f"import sys; print('stuck'); sys.exit({STALLED_EXIT_CODE})"
    pipeline = ScriptedPipeline(tmp_path, {"processor": [stalled, "import time; time.sleep(60)"],
                                           "sink": ["import sys; print('boom'); sys.exit(1)"]})  # fmt: skip
    try:
        _exited(pipeline.start("processor"))
        pipeline.check_alive()  # status 75: started again
        assert pipeline.starts == ["processor", "processor"]
        assert pipeline.restarts == {"processor": 1}
        assert pipeline.procs["processor"].poll() is None
        _exited(pipeline.start("sink"))
        time.sleep(0.1)
        with pytest.raises(RuntimeError, match=r"sink exited with 1:\nboom"):
            pipeline.check_alive()
        assert pipeline.restarts == {"processor": 1}
    finally:
        pipeline.stop_all()
