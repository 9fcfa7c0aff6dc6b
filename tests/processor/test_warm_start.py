"""A native processor's first batch loads no module: the packing of rated rows (JSON rows, orjson) needs nothing
that start-up has not loaded. (When the rows went as Arrow, pyarrow's first conversion imported ~375 modules, ~0.4 s
of CPU, inside the first batch unless warmed at start-up.) Each check runs in a fresh interpreter."""

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


def test_a_native_processor_packs_its_first_rows_without_loading_anything(tmp_path: Path) -> None:
    """Built with an unreachable broker (building it connects to nothing yet): packing its first rows then
    imports nothing, and gives the JSON rows message of that row."""
    result = _fresh(
        f"""
        from pathlib import Path
        from meterstream.processor import runner
        from meterstream.rating.catalog import load_catalog
        from meterstream.schemas.settings import Settings
        settings = Settings(home=Path({str(tmp_path)!r}), kafka_bootstrap="127.0.0.1:1")
        processor = runner.NativeProcessor(settings, load_catalog(settings.catalog))
        before = set(sys.modules)
        packer = processor.columnar.pack()
        packer.add([row])
        result["values"] = [v.decode() for v in packer.values()]
        result["loaded_by_first_batch"] = sorted(set(sys.modules) - before)
        """
    )
    assert result["loaded_by_first_batch"] == []
    assert result["values"] == [
        '1\n["acme","e-1","c-1","","api_calls","2026-11-05T10:00:00.000Z","2026-11","3","0.03","3","EUR",'
        '"starter@1","api_calls",{"region":"eu"},"",0,7]'
    ]
