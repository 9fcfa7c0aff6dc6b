"""A native processor loads what its first Arrow conversion needs at start-up, not inside its first batch.

pyarrow's first conversion of Python values imports ~375 modules (pandas among them when installed, ~0.4 s of
CPU here); inside the first batch that time adds to its latency and to the drain `bench/e2e.py` measures. Each
check runs in a fresh interpreter, where nothing is loaded yet."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROW = (
    "acme", "e-1", "c-1", "", "api_calls", "2026-11-05T10:00:00.000Z", "2026-11", "3", "0.03", "3", "EUR",
    "starter@1", "api_calls", {"region": "eu"}, "", 0, 7,
)  # fmt: skip


def _fresh(body: str) -> dict:
    """Run `body` in a new interpreter after the setup below; it sets `result`, printed as JSON."""
    script = (
        textwrap.dedent(
            f"""
        import json, sys
        from meterstream.schemas import rated
        row = {ROW!r}
        result = {{}}
        """
        )
        + textwrap.dedent(body)
        + "\nprint(json.dumps(result))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_after_warm_the_first_packing_imports_nothing() -> None:
    result = _fresh(
        """
        cold = set(sys.modules)
        rated.warm()
        result["warm_loaded"] = len(set(sys.modules) - cold)
        before = set(sys.modules)
        values = rated.pack_rows([row])
        result["loaded_by_first_batch"] = sorted(set(sys.modules) - before)
        result["arrow"] = rated.is_arrow(values[0])
        """
    )
    assert result["warm_loaded"] > 0  # a fresh interpreter had not loaded pyarrow yet
    assert result["loaded_by_first_batch"] == []
    assert result["arrow"] is True


def test_without_warm_the_first_packing_loads_pyarrow() -> None:
    """The other side of the test above: what `warm` moves out of the first batch is there to move."""
    result = _fresh(
        """
        before = set(sys.modules)
        rated.pack_rows([row])
        result["loaded"] = sorted(set(sys.modules) - before)
        """
    )
    assert "pyarrow" in result["loaded"]


def test_a_native_processor_is_warm_once_built(tmp_path: Path) -> None:
    """Built with an unreachable broker (building it connects to nothing yet): packing its first rows then
    imports nothing."""
    result = _fresh(
        f"""
        from pathlib import Path
        from meterstream.processor import runner
        from meterstream.rating.catalog import load_catalog
        from meterstream.schemas.settings import Settings
        settings = Settings(home=Path({str(tmp_path)!r}), kafka_bootstrap="127.0.0.1:1")
        processor = runner.NativeProcessor(settings, load_catalog(settings.catalog))
        before = set(sys.modules)
        processor.columnar.pack([row])
        result["loaded_by_first_batch"] = sorted(set(sys.modules) - before)
        """
    )
    assert result["loaded_by_first_batch"] == []
