"""`meterstream billing run|drafts|close`: billing runs behind the close guards (deploy/billing_run.py does the
work; this module is its command line)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from meterstream.deploy.cli_common import call


def _handler(name: str) -> Any:
    from meterstream.deploy import billing_run

    return getattr(billing_run, name)


Out = Annotated[str | None, typer.Option(help="directory for the JSON documents (METERSTREAM_INVOICES_DIR)")]
NoPublish = Annotated[bool, typer.Option("--no-publish", help="do not send documents to the invoices topic")]
Json = Annotated[bool, typer.Option("--json", help="print the result as one JSON object")]


def register(app: typer.Typer) -> None:
    billing = typer.Typer(no_args_is_help=True, help="billing runs: close every ended period behind the close guards")
    app.add_typer(billing, name="billing")

    @billing.command("run", help="close every period that has ended and is not closed (idempotent)")
    def run(
        out: Out = None,
        wait: Annotated[float | None, typer.Option(min=0, help="seconds to wait for the pipeline's backlog "
                                                        "(METERSTREAM_BILLING_WAIT_SECONDS, 600)")] = None,
        no_publish: NoPublish = False,
        json: Json = False,
    ) -> int:  # fmt: skip
        return call(_handler("_run"), locals())

    @billing.command("drafts", help="bring the draft invoices of every open period up to date")
    def drafts(
        all: Annotated[bool, typer.Option("--all", help="every customer (default: those with new usage, unless "
                                          "something else changed)")] = False,
        json: Json = False,
    ) -> int:  # fmt: skip
        return call(_handler("_drafts"), locals())

    @billing.command("close", help="close one period, answered in JSON (what POST /v1/billing/close runs)")
    def close(
        period: Annotated[str, typer.Option(help="YYYY-MM")],
        customer: Annotated[str | None, typer.Option(help="close only this customer (external id)")] = None,
        tenant: Annotated[str | None, typer.Option(help="the customer's tenant (needed when the id exists in "
                                                        "several)")] = None,
        force: Annotated[bool, typer.Option("--force", help="close even if a guard refuses")] = False,
        out: Out = None,
        no_publish: NoPublish = False,
    ) -> int:  # fmt: skip
        return call(_handler("_close"), locals())

    @billing.command("dunning", help="one collections run, today in UTC: the due reminders, late fees, suspensions "
                     "and reactivations (docs/dunning.md)")  # fmt: skip
    def dunning(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="say what is due, send and store nothing")] = False,
        json: Json = False,
        no_publish: Annotated[bool, typer.Option("--no-publish", help="send nothing to Kafka (notifications, "
                                                 "provisioning commands)")] = False,
    ) -> int:  # fmt: skip
        from meterstream.deploy.cli_common import settings
        from meterstream.deploy.dunning_run import main_dunning

        return main_dunning(settings(), dry_run=dry_run, as_json=json, publish=not no_publish)
