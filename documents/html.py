"""An invoice document (`schemas.invoice.InvoiceDoc`) as HTML: Jinja2 templates, autoescape on. Pure.

The page is self-contained (its CSS inline), so the same HTML opens in a browser and is what `pdf.py` prints.
Amounts, quantities, rates and dates are written in the buyer's locale (`formatting.choose_locale`) or the
one asked for; the words in that locale's language when `labels.py` has it (German, French), else English.
The document is validated first (`schemas.invoice.validate`): a document whose figures do not add up is
refused, never rendered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from meterstream.documents.formatting import Formatter, formatter_for
from meterstream.documents.labels import FEE_BILLED_LATE, FEE_CORRECTED, LATE_USAGE, MENTIONS, translator
from meterstream.schemas.invoice import InvoiceDoc, InvoiceLine, TierRow, validate

__all__ = ["TEMPLATES", "render_html"]

TEMPLATES = Path(__file__).with_name("templates")

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,  # every value is escaped: a customer named <script> is text, not markup
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# How a pricing step is named; the engine's kinds (rating.lines.QuoteLine) not listed show its description.
_STEP_NAMES = {
    "unit": "Unit price",
    "package": "Packages",
    "tier_block": "Blocks",
    "free_units": "Free units",
    "billed_units": "Billed units",  # telecom lines: units after billing increments
    "minimum_true_up": "Minimum commitment: true-up",
    "maximum_cap": "Maximum: cap",
    "percentage": "Percentage",
    "flat": "Flat fee",
    "fixed_fee": "Fixed fee",
    "event_minimum": "Minimum per event",
    "event_maximum": "Maximum per event",
}

_KIND_NAMES = {
    "usage": "Usage",
    "fixed": "Fee",
    "fixed_credit": "Credit for unused days",
    "one_time": "One-time charge",
    "installment": "Installment",
    "minimum": "Minimum commitment",
    "adjustment": "Adjustment",
    "discount": "Discount",
}

_STATUS_NAMES = {
    "draft": "Draft",
    "finalized": "Issued",
    "paid": "Paid",
    "partially_paid": "Partially paid",
    "overdue": "Overdue",
    "voided": "Void",
}


def _pattern(key: str, period: str) -> re.Pattern[str]:
    """A label with {a} and {b} as a pattern reading them back from the English text; `period` ("a" or "b") is
    the closed period's label, YYYY-MM, so a fee's name or a meter's description with ", " or ": " reads whole."""
    other = "b" if period == "a" else "a"
    text = re.escape(key).replace(f"\\{{{period}\\}}", f"(?P<{period}>\\d{{4}}-\\d{{2}})")
    return re.compile("^" + text.replace(f"\\{{{other}\\}}", f"(?P<{other}>.+)") + "$", re.DOTALL)


# an adjustment's description is written in English (invoice_emitter/adjustments.py); printed in the document's
# language: the fee's name, the period and the meter's description stay as they are
_ADJUSTMENT_WORDS = [(FEE_BILLED_LATE, _pattern(FEE_BILLED_LATE, "b")), (FEE_CORRECTED, _pattern(FEE_CORRECTED, "b")),
                     (LATE_USAGE, _pattern(LATE_USAGE, "a"))]  # fmt: skip


def _mention(text: str, t: Callable[..., str]) -> str:
    """A legal mention in the document's language when it is one of billing/taxes.py's (the document holds its
    English); a tenant's own wording (an exemption reason, payment terms) as written."""
    return t(text) if text in MENTIONS else text


def _description(line: InvoiceLine, t: Callable[..., str]) -> str:
    """The line's description, an adjustment's in the document's language (others are the tenant's own words)."""
    if line.kind == "adjustment":
        for key, pattern in _ADJUSTMENT_WORDS:
            m = pattern.match(line.description)
            if m:
                return t(key, a=m["a"], b=m["b"])
    return line.description


@dataclass(frozen=True)
class StepView:
    label: str
    quantity: str
    unit_price: str
    flat: str
    amount: str


def _step(row: TierRow, f: Formatter, t: Callable[..., str]) -> StepView:
    if row.kind in ("tier", "tier_block") and row.tier is not None:
        start = f.number(row.from_ or Decimal(0))
        if row.to is None:
            label = t("Tier {n}: above {a}", n=str(row.tier), a=start)
        else:
            label = t("Tier {n}: {a} – {b}", n=str(row.tier), a=start, b=f.number(row.to))
    elif row.kind in _STEP_NAMES:
        label = t(_STEP_NAMES[row.kind])
    else:
        label = row.description or row.kind
    return StepView(
        label=label,
        quantity="" if row.quantity is None else f.number(row.quantity),
        unit_price="" if row.unit_price is None else f.money(row.unit_price),
        flat="" if row.flat is None else f.money(row.flat),
        amount=f.money(row.amount),
    )


def _shows_steps(line: InvoiceLine) -> bool:
    """A line's pricing steps are shown unless they only repeat its unit price."""
    if not line.tiers:
        return False
    return not (len(line.tiers) == 1 and line.tiers[0].kind == "unit" and line.unit_price is not None)


def _context(doc: InvoiceDoc, f: Formatter) -> dict[str, Any]:
    t = translator(f.locale)
    lines = [
        {
            "line": line,
            "description": _description(line, t),
            "kind": t(_KIND_NAMES[line.kind]),
            "covers": f.span(line.start, line.end),
            "steps": [_step(row, f, t) for row in line.tiers] if _shows_steps(line) else [],
        }
        for line in doc.lines
    ]
    said = dict.fromkeys([x.mention for x in doc.taxes if x.mention] + list(doc.legal_mentions))  # each once
    # CSS text of the page counter, from the label table only (no document data): marked safe for <style>
    page = t("Page {a} of {b}", a='" counter(page) "', b='" counter(pages) "')
    return {
        "doc": doc,
        "f": f,
        "t": t,
        "page_counter": Markup(f'"{page}"'),
        "lines": lines,
        "status_name": t(_STATUS_NAMES[doc.status]),
        "watermark": {"draft": t("DRAFT"), "voided": t("VOID")}.get(doc.status),
        "with_tax": bool(doc.taxes),
        "period": f.span(doc.period_start, doc.period_end),
        "subject_lines": [x for x in lines if x["line"].subjects],
        # each sentence once: the close puts a tax group's mention (reverse charge, out of scope) in the legal
        # mentions too, and the page printed it twice
        "mentions": [_mention(m, t) for m in said],
    }


def render_html(doc: InvoiceDoc, locale: str | None = None) -> str:
    """The invoice as one self-contained HTML page, in `locale` (default: the buyer's, else `en`).

    ValueError (naming the field) when the document's figures do not add up (`validate`), or for an unknown
    locale."""
    validate(doc)
    f = formatter_for(doc, locale)
    return _env.get_template("invoice.html.j2").render(**_context(doc, f))
