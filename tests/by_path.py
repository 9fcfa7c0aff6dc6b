"""A repository file that is not in an installed package (bench/*.py, docs/reference/*.py) imported by its path,
as the tests that check those scripts need it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load(relative: str) -> ModuleType:
    """The module of `ROOT / relative` (e.g. "bench/authorize_setup.py"), executed once and kept in sys.modules
    under its path's name ("bench_authorize_setup"), so that every test importing it shares one module."""
    name = relative.removesuffix(".py").replace("/", "_").replace(".", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None, relative
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
