"""Commands other modules expose as plain functions `main_xxx(settings, ...) -> int`, wired here by name so that
their modules stay free of the command line (none yet: this group is where they go)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to add yet."""
