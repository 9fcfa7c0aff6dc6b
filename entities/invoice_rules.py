"""The pure rules of invoice records (no I/O): statuses, money in minor units, what is due, input checks.

Used by entities/invoices.py, credit_notes.py, payments.py and exports.py; docs/invoice-lifecycle.md.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

from meterstream.entities.common import Invalid
from meterstream.rating.money import EXACT, minor_units, to_decimal

DRAFT = "draft"
FINALIZED = "finalized"
PARTIALLY_PAID = "partially_paid"
PAID = "paid"
OVERDUE = "overdue"
VOIDED = "voided"
STATUSES = (DRAFT, FINALIZED, PARTIALLY_PAID, PAID, OVERDUE, VOIDED)
OPEN = (FINALIZED, PARTIALLY_PAID, OVERDUE)  # finalized and something may still be due
ISSUED = (FINALIZED, PARTIALLY_PAID, PAID, OVERDUE)  # finalized, not voided
MAX_MINOR = 10**18  # BIGINT holds 9.2e18; far beyond any invoice


def from_minor(minor: int, currency: str) -> Decimal:
    """Minor units as a Decimal amount with the currency's digits: 12000 EUR -> Decimal('120.00')."""
    return Decimal(minor).scaleb(-minor_units(currency))


def to_minor(field: str, value: object, currency: str, allow_negative: bool = False) -> int:
    """An amount (Decimal, int or decimal string; never float) as integer minor units, exactly.

    Refused (Invalid naming `field`): floats, non-numbers, more decimals than the currency has, negative
    amounts (unless allowed), more than 10^18 minor units."""
    try:
        amount = to_decimal(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise Invalid(field, str(exc)) from None
    digits = minor_units(currency)
    try:
        scaled = amount.scaleb(digits, context=EXACT)
    except ArithmeticError:
        raise Invalid(field, f"out of range (got {value})") from None
    if scaled != scaled.to_integral_value(context=EXACT):
        raise Invalid(field, f"{currency} amounts have at most {digits} decimals (got {value})")
    minor = int(scaled)
    if minor < 0 and not allow_negative:
        raise Invalid(field, f"never negative (got {value})")
    if abs(minor) > MAX_MINOR:
        raise Invalid(field, f"out of range (got {value})")
    return minor


def amount_due(billed: int, credited: int, paid: int) -> int:
    """What is left to collect, in minor units (never below 0: credit beyond it is owed back, see credit notes)."""
    return max(0, billed - credited - paid)


def settled_status(status: str, billed: int, credited: int, paid: int) -> str:
    """The status of a finalized invoice after its money changed (pure; the rule in the module docstring)."""
    if amount_due(billed, credited, paid) == 0:
        return PAID
    if status == OVERDUE:
        return OVERDUE
    return PARTIALLY_PAID if paid > 0 else FINALIZED


def text(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Invalid(field, f"a non-empty string of at most {limit} characters (got {value!r})")
    return value


def check_currency(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("currency", f"an ISO 4217 code (got {value!r})")
    try:
        minor_units(value)
    except ValueError as exc:
        raise Invalid("currency", str(exc)) from None
    return value


def check_day(field: str, value: object) -> date:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise Invalid(field, f"a date (got {value!r})")
    return value


def check_document(value: object) -> str:
    raw = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value
    if not isinstance(raw, str):
        raise Invalid("document", f"JSON bytes or text (got {type(value).__name__})")
    try:
        json.loads(raw)
    except ValueError as exc:
        raise Invalid("document", f"not JSON: {exc}") from None
    return raw


__all__ = [
    "DRAFT",
    "FINALIZED",
    "ISSUED",
    "MAX_MINOR",
    "OPEN",
    "OVERDUE",
    "PAID",
    "PARTIALLY_PAID",
    "STATUSES",
    "VOIDED",
    "amount_due",
    "check_currency",
    "check_day",
    "check_document",
    "from_minor",
    "settled_status",
    "text",
    "to_minor",
]
