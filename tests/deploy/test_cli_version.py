"""`meterstream --version`: the version a user reports with a bug, from the one place it is written
(meterstream/__init__.py, which pyproject.toml reads as the distribution's version)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import meterstream

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_one_line_and_exits_0() -> None:
    out = subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", "--version"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"meterstream {meterstream.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meterstream.__version__)
    assert out.stderr == ""


def test_the_distribution_has_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # not written a second time
    assert importlib.metadata.version("meterstream") == meterstream.__version__
