"""Every setting is documented in the README's Configuration table (the Settings object is the source)."""

from __future__ import annotations

import re
from pathlib import Path

from meterstream.schemas.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented() -> set[str]:
    text = README.read_text()
    table = text[text.index("## Configuration") :]
    table = table[: table.index("\n## ", 1)]
    names: set[str] = set()
    for row in table.splitlines():
        if not row.startswith("| `METERSTREAM_"):
            continue
        cell = row.split("|")[1]
        full = re.findall(r"`METERSTREAM_([A-Z0-9_]+)`", cell)
        names.update(full)
        stem = full[0].rsplit("_", 1)[0] if full else ""
        for short in re.findall(r"`_([A-Z0-9_]+)`", cell):  # `METERSTREAM_API_HOST` / `_PORT`
            names.add(f"{stem}_{short}" if stem else short)
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    missing = {name.upper() for name in Settings.model_fields} - _documented()
    assert not missing, f"add to README Configuration: {sorted('METERSTREAM_' + m for m in missing)}"
