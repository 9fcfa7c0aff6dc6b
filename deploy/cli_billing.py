"""`meterstream billing run|drafts|close`: billing runs behind the close guards (deploy/billing_run.py does the
work; this module is its command line)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from meterstream.deploy.cli_common import call


def _handler(name: str) -> Any:
    from meterstream.deploy import billing_run

    return getattr(billing_run, name)


def refused_period(period: str) -> int:
    """0 for a period that can be billed; else `billing close`'s refusal (a JSON answer, as billing_run answers a
    period that is not YYYY-MM, and the line for a person at the terminal), exit 2. 0000-01 and 9999-12 matched
    YYYY-MM and then failed inside the close ("year 0 is out of range")."""
    import json
    import sys

    from meterstream.deploy.cli_common import billable_period

    try:
        billable_period(period)
    except ValueError as exc:
        print(json.dumps({"error": "invalid", "field": "period", "message": str(exc)}))
        print(f"meterstream billing close: error: {exc}", file=sys.stderr)
        return 2
    return 0


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
        customer: Annotated[str | None, typer.Option(help="only this customer's drafts, now (external id)")] = None,
        tenant: Annotated[str | None, typer.Option(help="the customer's tenant (needed when the id exists in "
                                                        "several)")] = None,
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
        end_grace: Annotated[bool, typer.Option("--end-grace", help="end the customers' grace periods now "
                                                "(finalize early); the other guards stay")] = False,
        out: Out = None,
        no_publish: NoPublish = False,
    ) -> int:  # fmt: skip
        close = _handler("_close")  # the settings first (one that does not parse is named), then the period
        return call(lambda args, settings: refused_period(args.period) or close(args, settings), locals())

    @billing.command("dunning", help="one collections run, today in UTC: the due reminders, late fees, suspensions "
                     "and reactivations (docs/dunning.md)")  # fmt: skip
    def dunning(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="say what is due, send and store nothing")] = False,
        json: Json = False,
        no_publish: Annotated[bool, typer.Option("--no-publish", help="send nothing to Kafka (notifications, "
                                                 "provisioning commands)")] = False,
    ) -> int:  # fmt: skip
        from meterstream.deploy.cli_common import settings
        from meterstream.invoice_emitter.dunning_run import main_dunning

        return main_dunning(settings(), dry_run=dry_run, as_json=json, publish=not no_publish)
