"""`meterstream provisioning consume`: the reference consumer of the provisioning topic
(deploy/provisioning_consumer.py; docs/provisioning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    provisioning = typer.Typer(no_args_is_help=True, help="the provisioning topic: suspend, limit and reactivate "
                               "commands for customers")  # fmt: skip
    app.add_typer(provisioning, name="provisioning")

    @provisioning.command("consume", help="apply each provisioning command once and print each customer's effective "
                          "state (until stopped, or --once)")  # fmt: skip
    def consume(
        state: Annotated[Path | None, typer.Option(help="SQLite file of the active reasons per customer (default: "
                                                        "METERSTREAM_HOME/provisioning.sqlite)")] = None,
        once: Annotated[bool, typer.Option("--once", help="read what is there, then exit")] = False,
        group: Annotated[str | None, typer.Option(help="the consumer group (default: "
                                                       "<prefix>meterstream-provisioning-consumer)")] = None,
        idle_exit: Annotated[float, typer.Option(min=0, help="with --once: seconds without a message before "
                                                             "exiting")] = 5.0,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines: one object per command applied")] = False,
    ) -> int:  # fmt: skip
        from meterstream.deploy.cli_common import settings
        from meterstream.deploy.provisioning_consumer import main_provisioning

        return main_provisioning(settings(), state, once=once, group=group, idle_exit_s=idle_exit, as_json=as_json)
