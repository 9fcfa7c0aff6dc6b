"""Late usage: what a closed period's invoice would say now, minus what was billed for it. Pure.

Rule: a closed period's invoice never changes. Usage that reaches ClickHouse after its period was
closed is billed on the next close as adjustment lines, one per line key whose quantity or amount
moved, priced as the difference between the period's total now and what was billed — so tiers,
bundles and minimums of that period apply exactly as if the usage had been on time.

The same difference gives the adjustment its per-subject quantities (what each subject used on the line now
minus the quantities of its shares billed before), which the issued invoice shares the adjustment's amount by,
on a telecom line its billed units (now minus billed), and its `streamed_amount`: what the stream rated for the
line now minus what the billed lines of the key said it had rated, i.e. the late events' own streamed amounts (for
reconciliation, as on any usage line; left out when a side does not say).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from meterstream.documents.labels import FEE_BILLED_LATE, FEE_CORRECTED, LATE_USAGE
from meterstream.invoice_emitter.document import decimal_text
from meterstream.rating.money import EXACT

_ZERO = Decimal(0)
BILLED_UNITS_STEP = "billed units (after billing increments)"  # a telecom line's one pricing step (telecom_lines.py)
# the kinds of a subscription's charge lines (billing/lines.py, subscription_invoice.py): fees, not usage
FEE_KINDS = frozenset({"fixed", "fixed_credit", "one_time", "installment", "minimum", "minimum_true_up"})


class Billed(NamedTuple):
    """What the stored invoices billed for one line key of a closed period (`ledger.billed_lines`)."""

    meter: str
    quantity: Decimal
    amount: Decimal
    streamed_amount: Decimal | None = None  # the lines' streamed amounts added up; None: a billed line had none


class BilledDetail(NamedTuple):
    """What the stored invoices billed for one line key of a closed period, beyond quantity and amount."""

    subjects: dict[str, Decimal]  # subject ("" : none) -> the quantity of its shares
    billed_units: Decimal | None  # telecom: the billed units; None: a billed line of the key did not say


def adjustment_lines(
    now_lines: list[dict[str, Any]],
    billed: Mapping[str, Billed | tuple[str, Decimal, Decimal]],
    applies_to: str,
    currency: str,
    details: Mapping[str, BilledDetail] | None = None,
) -> list[dict[str, Any]]:
    """Lines for the difference between `now_lines` (the period recomputed) and `billed` (by line key).

    `amount` is the line's amount now minus the amount billed (both rounded, so the period's invoices add up to
    its rounded amount now); `precise_amount` is the line's unrounded amount now minus the amount billed.
    `details` (by line key: `BilledDetail`): with it, a line now carrying `subject_quantities` gives the
    adjustment its own (`late_subjects`), and one carrying `billed_units` (telecom) its billed units and their
    pricing step (`breakdown`), when what was billed is known."""
    from meterstream.rating import round_money

    details = details or {}
    current = {line.get("line_key", line["meter"]): line for line in now_lines}
    out = []
    for key in sorted(set(current) | set(billed)):
        line = current.get(key)
        was = billed.get(key)
        meter, billed_q, billed_a, billed_s = (
            Billed(*was) if was is not None else Billed(line["meter"] if line else key, _ZERO, _ZERO, _ZERO)
        )
        quantity = EXACT.subtract(Decimal(line["quantity"]), billed_q) if line else EXACT.minus(billed_q)
        amount = EXACT.subtract(Decimal(line["amount"]), billed_a) if line else EXACT.minus(billed_a)
        now_precise = (line.get("precise_amount") or line["amount"]) if line else None
        precise = EXACT.subtract(Decimal(now_precise), billed_a) if line else EXACT.minus(billed_a)
        if quantity == 0 and amount == 0:
            continue
        adjustment = {
            "kind": "adjustment",
            "applies_to": applies_to,
            "meter": meter,
            "line_key": key,
            "description": adjustment_description(key, line, meter, applies_to, amount),
            "quantity": decimal_text(quantity),
            "amount": format(round_money(amount, currency), "f"),
            "precise_amount": decimal_text(precise),
        }
        streamed = _late_streamed(line, billed_s)
        if streamed is not None:
            adjustment["streamed_amount"] = decimal_text(streamed)
        detail = details.get(key)
        if key in billed and detail is None:  # billed, but not what it billed per subject or in units
            detail = BilledDetail({}, None)
        subjects = late_subjects(line, detail, quantity)
        if subjects is not None:
            adjustment["subject_quantities"] = {s: decimal_text(q) for s, q in sorted(subjects.items())}
        units = _late_units(line, detail)
        if units is not None:
            adjustment["billed_units"] = decimal_text(units)
            adjustment["breakdown"] = [{"description": BILLED_UNITS_STEP, "kind": "billed_units",
                                        "quantity": decimal_text(units), "amount": decimal_text(precise)}]  # fmt: skip
        out.append(adjustment)
    return out


def adjustment_description(key: str, line: dict[str, Any] | None, meter: str, applies_to: str, amount: Decimal) -> str:
    """What an adjustment says it is. Usage: `late usage for 2026-09: <the line's description>`. A fee (a charge
    line of a subscription: a recurring fee, its credit, a one-time charge, ...) is worded as a fee,
    `<fee name>, 2026-09 (billed late)`, or `(corrected)` when the difference goes against the fee (billed, and now
    owed less or no more): a fee caught up on a later invoice read "late usage". The English is the document's
    data; the renderer prints it in the document's language (documents/labels.py)."""
    fee = fee_name(key, line, meter)
    if fee is None:
        what = line["description"] if line else meter.replace("_", " ")
        return LATE_USAGE.format(a=applies_to, b=what)
    owed_now = Decimal(line["amount"]) if line else _ZERO
    caught_up = line is not None and (amount > 0) == (owed_now > 0) and amount != 0
    return (FEE_BILLED_LATE if caught_up else FEE_CORRECTED).format(a=fee, b=applies_to)


def fee_name(key: str, line: dict[str, Any] | None, meter: str) -> str | None:
    """The fee's name when the line (now, or as billed: only its key is left) is a fee, else None. A fee line has
    no meter and its key is `@<subscription>/<start>/<kind>/<code>/<plan>` (subscription_invoice.py)."""
    if line is not None:
        if line.get("kind") not in FEE_KINDS:
            return None
        return str(line.get("description") or line.get("code") or key)
    parts = key.rsplit("/", 3)
    if meter or not key.startswith("@") or len(parts) != 4 or parts[1] not in FEE_KINDS:
        return None
    return parts[2]


def _late_streamed(line: dict[str, Any] | None, billed: Decimal | None) -> Decimal | None:
    """The line's streamed amount now (0 without a line: nothing of the key is streamed now) minus the billed
    lines' own; None when either is not known."""
    now = line.get("streamed_amount") if line is not None else "0"
    if now is None or billed is None:
        return None
    return EXACT.subtract(Decimal(now), billed)


def late_subjects(
    line: dict[str, Any] | None, detail: BilledDetail | None, quantity: Decimal
) -> dict[str, Decimal] | None:
    """The adjustment's quantity per subject: each subject's quantity on the line now (`subject_quantities`)
    minus the quantity of its shares billed before (`detail.subjects`); subjects whose quantity did not move are
    left out. None when that is not known exactly: the line now has no subject quantities (and nothing of the
    key was shared before), a subject would be negative, or the differences do not add up to the adjustment's
    `quantity` (a billed line of the key had no per-user section, so its subjects are not known). An adjustment
    of no quantity (its amount moved: a bundle taken by other usage) keeps the line's subjects now, at 0 each,
    which the issued invoice shares equally (`billing.allocation.split`)."""
    now = {s: Decimal(q) for s, q in (line or {}).get("subject_quantities", {}).items()}
    before = detail.subjects if detail is not None else {}
    if not now and not before:
        return None
    diff: dict[str, Decimal] = {}
    total = Decimal(0)
    for subject in sorted(set(now) | set(before)):
        d = EXACT.subtract(now.get(subject, Decimal(0)), before.get(subject, Decimal(0)))
        if d < 0:
            return None
        if d:
            diff[subject] = d
            total = EXACT.add(total, d)
    if total != quantity:
        return None
    if not diff:
        return {s: Decimal(0) for s in now} or None
    return diff


def _late_units(line: dict[str, Any] | None, detail: BilledDetail | None) -> Decimal | None:
    """A telecom adjustment's billed units: the line's billed units now minus those billed (None: not a telecom
    line, or what was billed did not say)."""
    now = (line or {}).get("billed_units")
    if now is None and (detail is None or detail.billed_units is None or line is not None):
        return None
    before = Decimal(0) if detail is None else detail.billed_units
    if before is None:
        return None
    return EXACT.subtract(Decimal(now) if now is not None else Decimal(0), before)
