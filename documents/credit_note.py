"""A credit note (entities/credit_notes.py) as the page a customer receives: HTML and PDF. Pure.

The page is drawn from the finalized invoice it credits (issuer, buyer, period, currency, locale, legal mentions)
and the note's own facts (number, issue date, reason, lines, and how it was settled: `credit` taken off the
invoice's amount due, `refund` owed back to the customer). Our credit notes credit what the invoice billed, tax
included; the page shows the tax in them the way the e-invoice does (`documents.ubl.split_credit`: each line at
the invoice's one VAT category and rate, net rounded half up to the minor unit, tax = amount - net), so the PDF and
the UBL CreditNote of one note show the same figures. An invoice with several VAT groups (a line of ours does not
say which one it credits) or without tax prints the amounts as invoiced, tax included, and says so.

Words in the document's language (`labels.py`), figures in its locale (`formatting.py`), as the invoice's page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from meterstream.documents.formatting import formatter_for
from meterstream.documents.html import _env, _mention
from meterstream.documents.labels import translator
from meterstream.documents.pdf import html_to_pdf
from meterstream.documents.ubl import CreditSplit, split_credit
from meterstream.rating.money import EXACT, ZERO, round_money
from meterstream.schemas.invoice import InvoiceDoc, validate

__all__ = ["render_credit_note_html", "render_credit_note_pdf"]

_STATUS = {"applied": "Applied", "refund_due": "Refund due", "refunded": "Refunded"}


def _split(invoice: InvoiceDoc, lines: Sequence[tuple[str, Decimal]]) -> CreditSplit | None:
    """The tax split of the lines, None where the page prints them as invoiced (no tax, several VAT groups)."""
    if not invoice.taxes:
        return None
    try:
        return split_credit(invoice, lines)
    except ValueError:  # the lines are checked already (`_check`): the invoice's VAT groups cannot be told apart
        return None


def _check(invoice: InvoiceDoc, lines: Sequence[tuple[str, Decimal]], credit: Decimal, refund: Decimal) -> None:
    validate(invoice)
    if invoice.status == "draft" or not invoice.number or invoice.issue_date is None:
        raise ValueError("invoice: a credit note is issued against a finalized invoice with a number and issue date")
    if not lines:
        raise ValueError("lines: a credit note has at least one line")
    total = ZERO
    for i, (_description, amount) in enumerate(lines):
        if amount <= 0 or round_money(amount, invoice.currency) != amount:
            raise ValueError(f"lines[{i}].amount: {amount} is not a positive amount in {invoice.currency}")
        total = EXACT.add(total, amount)
    if credit < 0 or refund < 0 or EXACT.add(credit, refund) != total:
        raise ValueError(f"credit: the credit ({credit}) and the refund ({refund}) must add up to the lines' {total}")


def render_credit_note_html(
    invoice: InvoiceDoc,
    *,
    number: str,
    issue_date: date,
    reason: str,
    lines: Sequence[tuple[str, Decimal]],
    credit: Decimal,
    refund: Decimal,
    status: str,
    locale: str | None = None,
) -> str:
    """The credit note as one self-contained HTML page, in `locale` (default: the buyer's, else `en`).

    ValueError naming the field: the invoice is not a finalized, valid invoice; a line is not a positive amount of
    its currency; `credit + refund` is not the lines' total; an unknown locale or `status`."""
    _check(invoice, lines, credit, refund)
    if status not in _STATUS:
        raise ValueError(f"status: {status!r} is not one of {', '.join(_STATUS)}")
    f = formatter_for(invoice, locale)
    t = translator(f.locale)
    split = _split(invoice, lines)
    rows: list[dict[str, Any]] = []
    for i, (description, amount) in enumerate(lines):
        net = split.lines[i][2] if split is not None else None
        rows.append({"no": i + 1, "description": description, "amount": f.money(amount),
                     "net": "" if net is None else f.money(net)})  # fmt: skip
    total = EXACT.add(credit, refund)
    if split is None:
        tax_label = None
    elif split.category == "AE":
        tax_label = t("VAT reverse charge")
    else:
        tax_label = f"{t('Tax')} {f.percent(split.rate)}"
    said = dict.fromkeys([x.mention for x in invoice.taxes if x.mention] + list(invoice.legal_mentions))
    page = t("Page {a} of {b}", a='" counter(page) "', b='" counter(pages) "')
    return _env.get_template("credit_note.html.j2").render(
        doc=invoice, f=f, t=t, page_counter=Markup(f'"{page}"'), number=number, issue_date=f.date(issue_date),
        invoice_date=f.date(invoice.issue_date), period=f.span(invoice.period_start, invoice.period_end),
        reason=reason, rows=rows, split=split, tax_label=tax_label,
        net_total=None if split is None else f.money(split.net),
        tax_total=None if split is None else f.money(split.tax),
        total=f.money(total), credit=f.money(credit) if credit else None, refund=f.money(refund) if refund else None,
        status=status, status_name=t(_STATUS[status]), as_invoiced=bool(invoice.taxes) and split is None,
        mentions=[_mention(m, t) for m in said],
    )  # fmt: skip


def render_credit_note_pdf(invoice: InvoiceDoc, **facts: Any) -> bytes:
    """The credit note as PDF (A4); arguments and errors as `render_credit_note_html`."""
    return html_to_pdf(render_credit_note_html(invoice, **facts))
