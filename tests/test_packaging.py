"""The distribution installs one import name, `meterstream`, and every package folder is part of it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_meterstream() -> None:
    config = _config()
    dirs = {name: ROOT / path for name, path in config["package-dir"].items()}
    expected = set()
    for name, base in dirs.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            expected.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert set(config["packages"]) == expected
    assert all(p == "meterstream" or p.startswith("meterstream.") for p in config["packages"])


def test_no_top_level_folder_with_code_is_left_out() -> None:
    mapped = {Path(p).parts[0] for p in _config()["package-dir"].values()}
    with_code = {
        d.name
        for d in ROOT.iterdir()
        if d.is_dir() and (d / "__init__.py").exists() and d.name not in {"tests", "bench"}
    }
    assert with_code <= mapped, with_code - mapped


def test_runtime_code_never_imports_from_deploy() -> None:
    """deploy/ is the outermost layer (the CLI, process orchestration): the API, the processor, the store and the
    documents never import it (the API's finance routes did: the dunning run lived in deploy/ until it moved to
    invoice_emitter/)."""
    import ast

    offenders = []
    for name, path in _config()["package-dir"].items():
        base = ROOT / path
        if name == "meterstream.deploy" or not base.is_dir():
            continue
        for source in base.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
                if any(n == "meterstream.deploy" or n.startswith("meterstream.deploy.") for n in names):
                    offenders.append(f"{source.relative_to(ROOT)}:{node.lineno}")
    assert len(_config()["package-dir"]) > 5 and not offenders, offenders
