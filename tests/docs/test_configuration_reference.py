"""docs/reference/configuration.md names every `METERSTREAM_*` variable and its settings table is current.

Two sources of variables: the `Settings` fields (each one is `METERSTREAM_<FIELD>`), and every
`METERSTREAM_*` name written anywhere in the code and deployment files (os.environ / getenv reads, compose
files, Grafana provisioning, the CI script). A name ending in `_` is a family (`METERSTREAM_ISSUER_*`): the
page must name at least one variable of it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from by_path import load

from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "configuration.md"
NAME = re.compile(r"METERSTREAM_[A-Z0-9_]+")
# where code and deployment files live; tests/ and docs/ only mention variables, they do not read them
SKIP_DIRS = {".git", "tests", "docs", "node_modules", "__pycache__", ".meterstream", "meterstream-out", "build"}
SUFFIXES = {".py", ".yml", ".yaml", ".toml", ".sh", ".cfg", ".ini", ".j2", ".json", ""}


def _generator():
    return load("docs/reference/gen_configuration.py")


def _rows(page: str) -> set[str]:
    """The variables a table row of `page` is about (named in its first cell); prose mentions do not count."""
    return {name for line in page.splitlines() if line.startswith("| `") for name in NAME.findall(line.split(" | ")[0])}


def _documented() -> set[str]:
    return _rows(PAGE.read_text(encoding="utf-8"))


def _read_in_code() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and (d == ".ci" or d[0] != ".") and "egg-info" not in d]
        for file in files:
            path = Path(folder) / file
            if path.suffix not in SUFFIXES and not file.startswith(("Dockerfile", "docker-compose")):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for name in NAME.findall(text):
                found.setdefault(name, path.relative_to(ROOT))
    return found


def test_every_settings_field_has_its_row() -> None:
    documented = _documented()
    missing = [name for name in (f"METERSTREAM_{f.upper()}" for f in Settings.model_fields) if name not in documented]
    assert not missing, f"not in {PAGE.name}: {missing} (run python docs/reference/gen_configuration.py)"


def test_every_variable_the_code_names_is_documented() -> None:
    documented = _documented()
    found = _read_in_code()
    assert "METERSTREAM_DEBUG" in found and "METERSTREAM_CLICKHOUSE_HTTP_PASSWORD" in found  # the scan finds names
    missing = {
        name: str(where)
        for name, where in found.items()
        if (not any(d.startswith(name) for d in documented) if name.endswith("_") else name not in documented)
    }
    assert not missing, f"named in the code but not in {PAGE.name}: {missing}"


def test_the_generated_table_is_current() -> None:
    gen = _generator()
    page = PAGE.read_text(encoding="utf-8")
    assert page == gen.render(page), "run python docs/reference/gen_configuration.py"
    # and the table is what the fields say: a default and a description seen by hand
    assert "| `METERSTREAM_DEDUP_WINDOW_DAYS` | integer | `35` | ≥ 1 | How long an event id is remembered. |" in page


def test_a_field_missing_from_the_page_is_caught() -> None:
    """The check can fail: a page without one row is not current and lacks that variable."""
    gen = _generator()
    page = PAGE.read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if line.startswith("| `METERSTREAM_PARTITIONS`"))
    stale = page.replace(row + "\n", "")
    assert stale != page and gen.render(stale) != stale
    assert "METERSTREAM_PARTITIONS" in _rows(page) and "METERSTREAM_PARTITIONS" not in _rows(stale)
