"""`meterstream`: one CLI for the broker, the pipeline processes, period close, rating and the demo.

A typer app made of command groups, one module each (`deploy/cli_*.py`, each with `register(app)`); they import
only typer at the top, so `meterstream --help` stays fast. `main()` is the error boundary (deploy/cli_errors.py):
a user error is one line on stderr naming the reason and exits non-zero, never a traceback; a mistake on the
command line (an unknown option, a missing argument, a value out of its choices) is one line and exit 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from meterstream.deploy.cli_close import _close, _query  # noqa: F401 - the handlers tests call directly

if TYPE_CHECKING:
    import typer

    from meterstream.schemas.settings import Settings

# the command groups (deploy/cli_<group>.py), in the order `meterstream --help` lists them, with the top-level
# names each registers: a command builds only its own group (typer reads every signature it registers)
GROUPS = {
    "pipeline": ("kafka", "init", "process", "sink", "up", "demo", "chaos"),
    "close": ("close", "query"),
    "entities": ("catalog", "customers", "plans", "subscriptions"),
    "clickhouse": ("clickhouse",),
    "revenue": ("revenue",),
    "billing": ("billing",),
    "dlq": ("dlq",),
    "webhooks": ("webhooks",),
    "invoices": ("invoices", "payments", "credit-notes", "export"),
    "api": ("serve", "keys"),
    "rate": ("rate",),
    "provisioning": ("provisioning",),
}


def build_app(command: str | None = None) -> typer.Typer:
    """The app with every group, or only the group that registers `command` (when one does)."""
    import typer

    app = typer.Typer(name="meterstream", help=__doc__.split("\n")[0], no_args_is_help=True, add_completion=False,
                      rich_markup_mode=None, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})  # fmt: skip
    app.callback()(_root_with(typer))  # a group even when one command is registered (typer would run a lone one)
    only = [g for g, names in GROUPS.items() if command in names]
    for group in only or GROUPS:
        import_module(f"meterstream.deploy.cli_{group}").register(app)
    return app


def _root_with(typer: Any) -> Callable[..., None]:
    """The app's own callback, with its one option `--version` (typer is imported only when a command runs)."""

    def show_version(value: bool) -> None:
        if value:
            from meterstream import __version__

            print(f"meterstream {__version__}")
            raise typer.Exit()

    def _root(
        version: bool = typer.Option(
            False, "--version", help="Print the version and exit.", is_eager=True, callback=show_version
        ),
    ) -> None:
        """`meterstream`: one CLI for the broker, the pipeline processes, period close, rating and the demo."""

    return _root


def commands(app: typer.Typer | None = None) -> list[tuple[tuple[str, ...], object]]:
    """Every command as (its words, its click command), e.g. (("dlq", "list"), <Command>): what tests walk."""
    import typer

    out: list[tuple[tuple[str, ...], object]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if not subs:
            out.append((path, command))
            return
        for name, child in subs.items():
            walk(child, (*path, name))

    walk(typer.main.get_command(app or build_app()), ())
    return out


def command_name(argv: list[str]) -> str:
    """The command as error lines name it: `meterstream <command>: error: ...`."""
    return next((a for a in argv if not a.startswith("-")), "meterstream")


def _invoke(argv: list[str], name: str) -> int:
    import typer

    command = typer.main.get_command(build_app(name))
    try:
        with command.make_context("meterstream", list(argv)) as ctx:
            return int(command.invoke(ctx) or 0)
    except typer.Exit as exc:  # --help, or a command that ends early
        return int(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except typer.Abort:
        return 1
    except typer.TyperException as exc:  # the command line itself is wrong: one line, as argparse exited 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `meterstream` (or a group) alone: its help
            print(message, file=sys.stderr)
        else:
            where = " ".join(exc.ctx.command_path.split()[1:]) if getattr(exc, "ctx", None) else name
            hint = f" (see meterstream {where} --help)".replace("  ", " ")
            message = " ".join(message.replace("Value error, ", "").split())  # typer's coercion prefixes pydantic's
            print(f"meterstream {where or name}: error: {message}{hint}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """Run one command; its exit status. `settings` replaces the environment's (tests)."""
    from meterstream.deploy.cli_common import settings_override
    from meterstream.deploy.cli_errors import run_guarded  # user errors: one line, exit 2; never a traceback

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    name = command_name(argv)
    with settings_override(settings):
        return run_guarded(name, lambda: _invoke(argv, name))


if __name__ == "__main__":
    sys.exit(main())
