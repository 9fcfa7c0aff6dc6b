"""Finance commands over the invoice store (the same SQL store as the API; docs/api.md has the HTTP twins):

  meterstream invoices list|show|render|void|mark-overdue     the invoice records, documents and files
                                                 (render --format html|pdf|png|xml; xml: UBL 2.1 / EN 16931)
  meterstream payments record|list               payments received, reconciled against invoices
  meterstream credit-notes create|list|render|refund    corrections of finalized invoices
                                                 (render --format html|pdf|xml; xml: the UBL 2.1 CreditNote)
  meterstream export --month YYYY-MM --format csv|json --out DIR    a month for the ERP

Every command takes `--tenant`. A user error (an unknown invoice, an overpayment, a status that does not allow
the change, a bad date) prints one line, `meterstream <command>: error: <field>: <reason>`, and exits 1.
Commands that print a table print JSON instead with `--json`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from meterstream.deploy.cli_common import call, one_of, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings

FORMATS = ("html", "pdf", "png")  # the default of `invoices render`
CHOICES = (*FORMATS, "xml")  # xml: the UBL 2.1 / EN 16931 e-invoice (documents/ubl.py)


class UserError(Exception):
    """A mistake in the command's input or a refusal of the store: one line, exit 1."""


def _sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory

    engine = make_engine(settings)
    migrate(settings, engine)
    return session_factory(engine)


REACTIVATE_KAFKA_TIMEOUT = 3.0  # seconds for each Kafka step of the reactivation at once (topics, then flush)


def _reactivate(settings: Settings, sf, command: str, tenant: str, customer: str,  # type: ignore[no-untyped-def]
                as_json: bool) -> None:  # fmt: skip
    """After a payment, a void or a credit note: the customer's reactivation at once if this settled what dunning
    suspended it for (invoice_emitter/dunning_run.OnSettled, as the API's twins do). Never fails the command (the
    money is recorded): Kafka or the store failing is a warning on stderr and the next collections run reactivates.
    Kafka unreachable costs the command at most a few seconds (`REACTIVATE_KAFKA_TIMEOUT` per step), not the
    API's 30 s per step.
    The reactivation is said on stdout, or on stderr with `--json` (stdout keeps the one JSON object)."""
    from meterstream.invoice_emitter.dunning_run import OnSettled

    result = OnSettled(settings, sf, timeout=REACTIVATE_KAFKA_TIMEOUT)(tenant, customer)
    if result is None:
        print(f"meterstream {command}: warning: {tenant}/{customer} not reactivated now (Kafka or the store "
              "failed, logged above); the next collections run (`meterstream billing dunning`) does it",
              file=sys.stderr)  # fmt: skip
        return
    for step in result.steps:
        print(f"reactivated {step['tenant']}/{step['customer']} (suspended for {step['invoice']}, now settled)",
              file=sys.stderr if as_json else sys.stdout)  # fmt: skip


def _day(field: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{field}: a date YYYY-MM-DD (got {text!r})") from None


def _period_label(text: str) -> str:
    """`text` if the close can have written it: invoice records carry the close's label, `YYYY-MM` (month 01-12;
    invoice_emitter/close.py PERIOD_RE), whatever the billing intervals; else one line naming --period."""
    from meterstream.invoice_emitter.close import PERIOD_RE

    if not PERIOD_RE.fullmatch(text):
        raise UserError(f"--period: a close's label YYYY-MM with a month 01 to 12 (got {text!r})")
    return text


def _table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal; tab-separated lines (header first) when piped, so no column is cut."""
    table(title, headers, rows)


def _json_out(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a reader never sees half a file


# --- invoices ------------------------------------------------------------------------------------------


def _invoices(args: Any, settings: Settings) -> int:
    from meterstream.api.invoices_models import invoice_body
    from meterstream.entities import invoices

    if args.invoices_action == "render" and args.file is not None:
        return _render_file(args)
    if args.invoices_action == "list" and args.period is not None:
        _period_label(args.period)
    sf = _sessions(settings)
    if args.invoices_action == "list":
        found = [inv for inv in invoices.list_invoices(sf, args.tenant, args.customer, args.status)
                 if args.period is None or inv.period == args.period]  # fmt: skip
        if args.json:
            _json_out([invoice_body(inv) for inv in found])
            return 0
        rows = [[inv.number or "(draft)", inv.invoice_id, inv.status, inv.customer, inv.period,
                 inv.issue_date.isoformat(), inv.due_date.isoformat(), inv.currency, str(inv.total),
                 str(inv.amount_due)] for inv in found]  # fmt: skip
        _table(f"invoices of {args.tenant}", ["number", "invoice_id", "status", "customer", "period", "issued", "due",
                                              "currency", "total", "amount_due"], rows)  # fmt: skip
        return 0
    if args.invoices_action == "show":
        from meterstream.documents.stored import document_json

        inv = invoices.get(sf, args.tenant, args.invoice_id)
        if args.record:
            _json_out(invoice_body(inv))
        else:
            sys.stdout.write(json.dumps(json.loads(document_json(inv.document)), ensure_ascii=False, indent=2) + "\n")
        return 0
    if args.invoices_action == "mark-overdue":
        today = _day("today", args.today) if args.today else datetime.now(UTC).date()
        changed = invoices.mark_overdue(sf, today, args.tenant)
        for inv in changed:
            print(f"overdue {inv.number} ({inv.invoice_id}): {inv.amount_due} {inv.currency} due since {inv.due_date}")
        print(f"{len(changed)} invoices of {args.tenant} marked overdue as of {today}")
        return 0
    if args.invoices_action == "void":
        inv = invoices.void(sf, args.tenant, args.invoice_id, args.reason)
        print(f"voided {inv.number} ({inv.invoice_id}): {inv.void_reason}")
        _reactivate(settings, sf, args.command, args.tenant, inv.customer, False)
        return 0
    if args.invoice_id is None:
        raise UserError("invoice_id: name the invoice, or render a JSON file with --file")
    from meterstream.documents.stored import render_stored

    inv = invoices.get(sf, args.tenant, args.invoice_id)
    stem = inv.number or inv.invoice_id
    files = render_stored(inv.document, stem, args.format or FORMATS, args.locale, inv.status)
    for fmt, data in files.items():
        target = Path(args.out) / f"{stem}.{fmt}"
        _write(target, data)
        print(target)
    return 0


def _render_file(args: Any) -> int:
    from meterstream.documents.render import render_invoice

    if args.invoice_id is not None:
        raise UserError("invoice_id: give an invoice id or --file, not both")
    if not Path(args.file).is_file():
        raise UserError(f"file: {args.file} does not exist")
    for path in render_invoice(args.file, args.out, args.format or FORMATS, args.locale).values():
        print(path)
    return 0


# --- payments ------------------------------------------------------------------------------------------


def _payments(args: Any, settings: Settings) -> int:
    from meterstream.api.invoices_models import payment_body
    from meterstream.entities import payments

    sf = _sessions(settings)
    if args.payments_action == "record":
        paid = payments.record_payment(sf, args.tenant, amount=args.amount, currency=args.currency,
                                       paid_on=_day("paid_at", args.paid_at), reference=args.reference,
                                       invoice_id=args.invoice, customer=args.customer)  # fmt: skip
        if args.json:
            _json_out(payment_body(paid))
        else:
            parts = ", ".join(f"{a['number']} {a['amount']}" for a in payment_body(paid)["allocations"])
            print(f"payment {paid.reference}: {paid.amount} {paid.currency} on {paid.paid_on} -> {parts}")
        _reactivate(settings, sf, args.command, args.tenant, paid.customer, args.json)
        return 0
    found = payments.list_payments(sf, args.tenant, args.customer)
    if args.json:
        _json_out([payment_body(p) for p in found])
        return 0
    rows = []
    for p in found:
        allocated = ", ".join(f"{b['number']}: {b['amount']}" for b in payment_body(p)["allocations"])
        rows.append([p.reference, p.paid_on.isoformat(), p.customer, p.currency, str(p.amount), allocated])
    _table(f"payments of {args.tenant}", ["reference", "paid_on", "customer", "currency", "amount", "allocated"], rows)
    return 0


# --- credit notes --------------------------------------------------------------------------------------


def _credit_notes(args: Any, settings: Settings) -> int:
    from meterstream.api.invoices_models import credit_note_body
    from meterstream.entities import credit_notes, invoices

    sf = _sessions(settings)
    if args.credit_notes_action == "create":
        lines = [{"description": d, "amount": a} for d, a in args.line] if args.line else None
        note = credit_notes.create_credit_note(
            sf, args.tenant, args.invoice, args.reason, lines, credit_note_id=args.id,
            issue_date=_day("issue_date", args.issue_date) if args.issue_date else None,
        )  # fmt: skip
        if args.json:
            _json_out(credit_note_body(note))
        else:
            print(f"credit note {note.number} on {note.invoice_number}: {note.total} {note.currency} "
                  f"(credit {note.credit}, refund {note.refund}, {note.status})")  # fmt: skip
        _reactivate(settings, sf, args.command, args.tenant, note.customer, args.json)
        return 0
    if args.credit_notes_action == "refund":
        note = credit_notes.mark_refunded(sf, args.tenant, args.credit_note_id,
                                          _day("on", args.on) if args.on else None, args.reference)  # fmt: skip
        if args.json:
            _json_out(credit_note_body(note))
        else:
            print(f"credit note {note.number}: {note.refund} {note.currency} refunded on {note.refunded_on}"
                  + (f" ({note.refund_reference})" if note.refund_reference else ""))  # fmt: skip
        return 0
    if args.credit_notes_action == "render":
        from meterstream.documents.stored import render_stored_credit_note

        note = credit_notes.get_credit_note(sf, args.tenant, args.credit_note_id)
        inv = invoices.get(sf, args.tenant, note.invoice_id)
        files = render_stored_credit_note(inv.document, note, args.format or ("html", "pdf"), args.locale)
        for fmt, data in files.items():
            target = Path(args.out) / f"{note.number}.{fmt}"
            _write(target, data)
            print(target)
        return 0
    found = credit_notes.list_credit_notes(sf, args.tenant, args.invoice, args.customer)
    if args.json:
        _json_out([credit_note_body(cn) for cn in found])
        return 0
    rows = [[cn.number, cn.invoice_number, cn.customer, cn.issue_date.isoformat(), cn.currency, str(cn.total),
             str(cn.credit), str(cn.refund), cn.status, cn.reason] for cn in found]  # fmt: skip
    _table(f"credit notes of {args.tenant}", ["number", "invoice", "customer", "issued", "currency", "total", "credit",
                                              "refund", "status", "reason"], rows)  # fmt: skip
    return 0


# --- export --------------------------------------------------------------------------------------------


def _export(args: Any, settings: Settings) -> int:
    from meterstream.deploy.cli_revenue import LAST_MONTH, month_bounds
    from meterstream.entities import exports

    last = "{:04d}-{:02d}".format(*LAST_MONTH)
    if len(args.month) == len(last) and args.month > last:  # 9999-12 is YYYY-MM, but its end is no date (exports
        try:  # answered "year 10000 is out of range"); other months are the store's to refuse, as before
            month_bounds(args.month)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    data = exports.read_month(_sessions(settings), args.tenant, args.month)
    out = Path(args.out)
    if args.format == "json":
        files = {f"{args.tenant}-{args.month}.json": exports.to_json(data) + "\n"}
    else:
        files = {f"{args.tenant}-{args.month}-{name}": text for name, text in exports.to_csv(data).items()}
    for name, text in files.items():
        _write(out / name, text.encode())
        print(out / name)
    print(f"{len(data.invoices)} invoices, {len(data.credit_notes)} credit notes, {len(data.payments)} payments "
          f"of {args.tenant} in {args.month}")  # fmt: skip
    return 0


# --- wiring --------------------------------------------------------------------------------------------


def _guarded(func):  # type: ignore[no-untyped-def]
    """The store's refusals and input mistakes as one line on stderr and exit code 1 (never a traceback)."""

    def run(args: Any, settings: Settings) -> int:
        from meterstream.documents.stored import StoredDocumentError
        from meterstream.entities.common import Conflict, Invalid, NotFound

        try:
            return func(args, settings)
        except Conflict as exc:  # its message does not carry the field: named here like Invalid's
            message = f"{exc.field}: {exc}"
        except (UserError, Invalid, NotFound, StoredDocumentError) as exc:
            message = str(exc)
        except ValueError as exc:  # render: an unknown format or locale, a file that is not an invoice
            message = str(exc)
        print(f"meterstream {args.command}: error: {message}", file=sys.stderr)
        return 1

    return run


Tenant = Annotated[str, typer.Option()]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
Status = Literal["draft", "finalized", "partially_paid", "paid", "overdue", "voided"]


def _lines(extra: list[str]) -> list[tuple[str, str]] | None:
    """`--line DESCRIPTION AMOUNT`, repeatable (two values each: typer's options take one, so read them here)."""
    lines, rest = [], list(extra)
    while rest:
        flag = rest.pop(0)
        if flag != "--line":
            raise typer.BadParameter(f"unexpected {flag!r}", param_hint="--line DESCRIPTION AMOUNT")
        if len(rest) < 2:
            raise typer.BadParameter("needs two values, DESCRIPTION AMOUNT", param_hint="--line")
        lines.append((rest.pop(0), rest.pop(0)))
    return lines or None


def register(app: typer.Typer) -> None:
    """Add `invoices`, `payments`, `credit-notes` and `export`."""

    def run(command: str, fn: Any, params: dict[str, Any], **extra: Any) -> int:
        return call(_guarded(fn), params, command=command, **extra)

    invoices = typer.Typer(no_args_is_help=True, help="invoice records, documents (JSON, HTML, PDF, PNG) and voiding")
    app.add_typer(invoices, name="invoices")

    def inv(action: str, params: dict[str, Any]) -> int:
        base = {"invoice_id": None, "file": None, "period": None, "customer": None, "status": None}
        return run("invoices", _invoices_checked, {**base, **params}, invoices_action=action)

    @invoices.command("list", help="list invoices (by issue date, number; drafts last)")
    def invoices_list(tenant: Tenant, customer: Annotated[str | None, typer.Option()] = None,
                      status: Annotated[Status | None, typer.Option()] = None,
                      period: Annotated[str | None, typer.Option(help="the close's label, e.g. 2026-11")] = None,
                      json: Json = False) -> int:  # fmt: skip
        return inv("list", locals())

    @invoices.command("show", help="print an invoice's document (JSON, version 2), or its record with --record")
    def invoices_show(tenant: Tenant, invoice_id: Annotated[str, typer.Argument()],
                      record: Annotated[bool, typer.Option("--record", help="the record (status, paid, credited, "
                                                           "amount due) instead")] = False) -> int:  # fmt: skip
        return inv("show", locals())

    @invoices.command("render", help="write an invoice as HTML, PDF, PNG or UBL XML (a stored one, or a JSON file)")
    def invoices_render(
        invoice_id: Annotated[str | None, typer.Argument()] = None,
        tenant: Annotated[str | None, typer.Option(help="required with an invoice id")] = None,
        file: Annotated[str | None, typer.Option(help="an invoice JSON file (as `meterstream close` writes) "
                                                      "instead")] = None,
        format: Annotated[list[str] | None, typer.Option(
            callback=one_of(*CHOICES), help="repeatable; default: html, pdf and png; xml: the UBL 2.1 / EN 16931 "
            "e-invoice")] = None,
        locale: Annotated[str | None, typer.Option(help="e.g. de_DE (default: the buyer's)")] = None,
        out: Annotated[str, typer.Option(help="directory for the files (default: here)")] = ".",
    ) -> int:  # fmt: skip
        return inv("render", locals())

    @invoices.command("void", help="void a finalized invoice nothing was paid or credited on")
    def invoices_void(tenant: Tenant, invoice_id: Annotated[str, typer.Argument()],
                      reason: Annotated[str, typer.Option()]) -> int:  # fmt: skip
        return inv("void", locals())

    @invoices.command("mark-overdue", help="invoices past their due date with something due become overdue")
    def invoices_mark_overdue(tenant: Tenant, today: Annotated[str | None, typer.Option(
            help="YYYY-MM-DD (default: today, UTC)")] = None) -> int:  # fmt: skip
        return inv("mark-overdue", locals())

    payments = typer.Typer(no_args_is_help=True, help="payments received, reconciled against finalized invoices")
    app.add_typer(payments, name="payments")

    @payments.command("record", help="record a payment for an invoice (--invoice) or a customer's open invoices "
                      "(--customer): one of the two")  # fmt: skip
    def payments_record(
        tenant: Tenant,
        amount: Annotated[str, typer.Option(help="decimal, e.g. 324.07")],
        currency: Annotated[str, typer.Option()],
        paid_at: Annotated[str, typer.Option(help="YYYY-MM-DD, the day the money was received")],
        reference: Annotated[str, typer.Option(help="bank transfer id, PSP charge id: recorded once")],
        invoice: Annotated[str | None, typer.Option(help="the invoice id paid")] = None,
        customer: Annotated[str | None, typer.Option(help="the customer who paid (oldest due first)")] = None,
        json: Json = False,
    ) -> int:
        if (invoice is None) == (customer is None):
            raise typer.BadParameter("give exactly one of --invoice and --customer", param_hint="--invoice/--customer")
        return run("payments", _payments, locals(), payments_action="record")

    @payments.command("list", help="list payments (by date paid)")
    def payments_list(tenant: Tenant, customer: Annotated[str | None, typer.Option()] = None,
                      json: Json = False) -> int:  # fmt: skip
        return run("payments", _payments, locals(), payments_action="list")

    credit_notes = typer.Typer(no_args_is_help=True, help="credit notes: corrections of finalized invoices")
    app.add_typer(credit_notes, name="credit-notes")

    @credit_notes.command("create", help="issue a credit note (without --line: a full credit of what is left); "
                          "--line DESCRIPTION AMOUNT, repeatable", context_settings={
                              "allow_extra_args": True, "ignore_unknown_options": True})  # fmt: skip
    def credit_notes_create(
        ctx: typer.Context,
        tenant: Tenant,
        invoice: Annotated[str, typer.Option(help="the invoice id credited")],
        reason: Annotated[str, typer.Option()],
        id: Annotated[str | None, typer.Option(help="idempotency key: the same id again returns the stored note")]
        = None,
        issue_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today, UTC)")] = None,
        json: Json = False,
    ) -> int:  # fmt: skip
        params = {k: v for k, v in locals().items() if k != "ctx"}
        return run("credit-notes", _credit_notes, {**params, "line": _lines(ctx.args)}, credit_notes_action="create")

    @credit_notes.command("refund", help="record that a credit note's refund was paid back (status refunded)")
    def credit_notes_refund(
        tenant: Tenant,
        credit_note_id: Annotated[str, typer.Argument()],
        on: Annotated[str | None, typer.Option(help="YYYY-MM-DD the refund was paid (default: today, UTC)")] = None,
        reference: Annotated[str | None, typer.Option(help="the bank transfer or PSP refund")] = None,
        json: Json = False,
    ) -> int:  # fmt: skip
        return run("credit-notes", _credit_notes, locals(), credit_notes_action="refund")

    @credit_notes.command("list", help="list credit notes (in the order issued)")
    def credit_notes_list(tenant: Tenant, invoice: Annotated[str | None, typer.Option()] = None,
                          customer: Annotated[str | None, typer.Option()] = None,
                          json: Json = False) -> int:  # fmt: skip
        return run("credit-notes", _credit_notes, locals(), credit_notes_action="list")

    @credit_notes.command("render", help="write a credit note as HTML and PDF (the page its customer receives) or UBL "
                          "XML")  # fmt: skip
    def credit_notes_render(
        tenant: Tenant,
        credit_note_id: Annotated[str, typer.Argument()],
        format: Annotated[list[str] | None, typer.Option(
            callback=one_of("html", "pdf", "xml"), help="repeatable; default: html and pdf; xml: the UBL 2.1 / "
            "EN 16931 CreditNote")] = None,
        locale: Annotated[str | None, typer.Option(help="e.g. de_DE (default: the buyer's)")] = None,
        out: Annotated[str, typer.Option(help="directory for the files (default: here)")] = ".",
    ) -> int:  # fmt: skip
        return run("credit-notes", _credit_notes, locals(), credit_notes_action="render")

    @app.command("export", help="a month's finalized invoices, credit notes and payments for an ERP")
    def export(
        tenant: Tenant,
        month: Annotated[str, typer.Option(help="YYYY-MM (invoices and credit notes by issue date, payments by date "
                                                "paid)")],
        format: Annotated[Literal["csv", "json"], typer.Option()],
        out: Annotated[str, typer.Option(help="directory: <tenant>-<month>.json or <tenant>-<month>-<kind>.csv")],
    ) -> int:  # fmt: skip
        return run("export", _export, locals())


def _invoices_checked(args: Any, settings: Settings) -> int:
    if args.invoices_action == "render" and args.file is None and args.tenant is None:
        raise UserError("tenant: --tenant is required to render a stored invoice")
    return _invoices(args, settings)


__all__ = ["register"]
