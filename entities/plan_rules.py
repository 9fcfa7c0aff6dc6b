"""What a valid plan version is (pure): `validate_plan(doc)` raises `Invalid(field path, reason)`.

Usage prices are parsed with the pricing engine's own parser (rating.parse_price), telecom sections
with the telecom parser, so the store accepts exactly what the stream can rate. On top of that, the
store's precision rule (docs/entities.md):

- usage prices (unit, tier, block, package, flat, fixed and min/max amounts, free units, tier bounds):
  at most `PRICE_DECIMALS` (12) digits after the decimal point and `PRICE_INTEGER_DIGITS` (20) before
  it: the scale of rated quantities (Decimal(38, 12)) and the integer part of rated amounts;
- amounts invoiced as written (fixed fees, one-time charges, installment totals, minimum commitments,
  fixed-fee overrides): no more decimals than the currency has minor units (USD 2, JPY 0, KWD 3).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterstream.billing.tax_rates import ISO_COUNTRIES
from meterstream.entities.common import Invalid
from meterstream.rating.money import CURRENCY_MINOR_UNITS
from meterstream.schemas.entities import (
    KEY_SEP,
    CustomerDoc,
    FixedCharge,
    InstallmentCharge,
    OneTimeCharge,
    PlanVersionDoc,
)

PRICE_DECIMALS = 12
PRICE_INTEGER_DIGITS = 20
MAX_INSTALLMENTS = 120
MAX_GRACE_DAYS = 365

INTERVALS = ("weekly", "monthly", "quarterly", "yearly")
TIMINGS = ("advance", "arrears")

CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # no `@` (rating id code@version), no separators
METER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,127}")  # the usage event's meter (schemas/event.py)
TENANT_RE = re.compile(r"[^/\x00-\x1f]{1,128}")  # the usage event's tenant
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")

# fields of a canonical price (rating/price.py) holding amounts or quantities: checked for precision
_PRICE_NUMBERS = frozenset(
    "unit_amount flat_amount block_amount block_size package_amount package_size amount fixed_amount "
    "min_amount max_amount minimum maximum free_units up_to divide_by multiply_by".split()
)


def check_text(field: str, value: Any, *, max_len: int = 256, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise Invalid(field, "required, a non-empty string")
    if len(value) > max_len:
        raise Invalid(field, f"at most {max_len} characters (got {len(value)})")
    if KEY_SEP in value:
        raise Invalid(field, "must not contain control character U+001F")


def check_tenant(value: Any) -> None:
    if not isinstance(value, str) or not TENANT_RE.fullmatch(value):
        raise Invalid("tenant", "required: 1-128 characters, no '/' or control characters")


def check_currency(field: str, value: Any) -> None:
    if not isinstance(value, str) or value not in CURRENCY_MINOR_UNITS:
        raise Invalid(field, f"unknown currency {value!r} (expected an active ISO 4217 code such as USD)")


def _decimal_digits(value: Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it) of the value as written without trailing zeros."""
    _sign, digits, exponent = value.as_tuple()
    digits_t = tuple(digits)
    assert isinstance(exponent, int)
    while exponent < 0 and len(digits_t) > 1 and digits_t[-1] == 0:  # 1.50 -> 1.5
        digits_t, exponent = digits_t[:-1], exponent + 1
    if exponent >= 0:
        integer = len(digits_t) + exponent if any(digits_t) else 1
        return integer, 0
    return max(len(digits_t) + exponent, 1), -exponent


def check_money(field: str, value: Any, currency: str) -> Decimal:
    """An amount invoiced as written: a finite, non-negative Decimal with at most the currency's decimals."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise Invalid(field, f'must be a decimal amount (a string such as "10.00"), got {type(value).__name__}')
    amount = Decimal(value)
    if not amount.is_finite():
        raise Invalid(field, "must be a finite amount")
    if amount < 0:
        raise Invalid(field, f"must not be negative (got {amount})")
    integer, decimals = _decimal_digits(amount)
    allowed = CURRENCY_MINOR_UNITS[currency]
    if decimals > allowed:
        raise Invalid(field, f"{currency} amounts have at most {allowed} decimals (got {amount})")
    if integer > PRICE_INTEGER_DIGITS:
        raise Invalid(field, f"at most {PRICE_INTEGER_DIGITS} digits before the decimal point (got {integer})")
    return amount


def _numbers(spec: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            sub = f"{path}.{key}"
            if key in _PRICE_NUMBERS and value is not None and not isinstance(value, Mapping | list):
                yield sub, value
            else:
                yield from _numbers(value, sub)
    elif isinstance(spec, list | tuple):
        for i, value in enumerate(spec):
            yield from _numbers(value, f"{path}[{i}]")


def check_price(field: str, spec: Any, currency: str) -> Any:
    """A usage price in the canonical shape, parsed by the rating engine; returns the parsed price."""
    from meterstream.rating import PriceError, parse_price

    try:
        price = parse_price(spec, currency=currency)
    except PriceError as exc:
        path, reason = exc.problems[0]
        raise Invalid(f"{field}.{path}" if path else field, reason) from None
    for path, raw in _numbers(spec, field):
        value = Decimal(str(raw)) if isinstance(raw, int | str) and not isinstance(raw, bool) else raw
        if not isinstance(value, Decimal) or not value.is_finite():
            continue  # parse_price accepted it, so it is not a number this rule concerns
        integer, decimals = _decimal_digits(value)
        if decimals > PRICE_DECIMALS:
            raise Invalid(path, f"prices have at most {PRICE_DECIMALS} decimals (got {raw})")
        if integer > PRICE_INTEGER_DIGITS:
            raise Invalid(path, f"at most {PRICE_INTEGER_DIGITS} digits before the decimal point (got {raw})")
    return price


def check_telecom(field: str, spec: Any, currency: str) -> Any:
    from meterstream.rating.telecom import TelecomCatalogError, parse_telecom_plan

    if isinstance(spec, Mapping) and ({"csv", "file"} & set(spec)):
        raise Invalid(field, "an inline telecom plan is required (csv/file references are read by catalog apply)")
    try:
        return parse_telecom_plan(dict(spec) if isinstance(spec, Mapping) else spec, currency=currency)
    except TelecomCatalogError as exc:
        path, reason = exc.problems[0]
        path = path.removeprefix("telecom")
        raise Invalid(f"{field}{path}", reason) from None


def validate_plan(doc: PlanVersionDoc) -> None:
    """Raise `Invalid` naming the first bad field of a plan version; returns None when it is valid."""
    if not isinstance(doc, PlanVersionDoc):
        raise Invalid("", f"expected a PlanVersionDoc, got {type(doc).__name__}")
    check_tenant(doc.tenant)
    if not isinstance(doc.code, str) or not CODE_RE.fullmatch(doc.code):
        raise Invalid("code", "required: 1-128 letters, digits, '_', '.', '-' (starting with a letter or digit)")
    check_text("name", doc.name)
    check_currency("currency", doc.currency)
    if doc.interval not in INTERVALS:
        raise Invalid("interval", f"one of {', '.join(INTERVALS)} (got {doc.interval!r})")
    currency = doc.currency
    if not isinstance(doc.usage, Mapping):
        raise Invalid("usage", "must map meter names to prices")
    for meter, spec in doc.usage.items():
        if not isinstance(meter, str) or not METER_RE.fullmatch(meter):
            raise Invalid(f"usage.{meter}", "a meter name: lowercase letter, then up to 127 of a-z 0-9 _ . -")
        check_price(f"usage.{meter}", spec, currency)
    if doc.telecom is not None:
        telecom = check_telecom("telecom", doc.telecom, currency)
        clash = set(telecom.meters) & set(doc.usage)
        if clash:
            raise Invalid(f"usage.{sorted(clash)[0]}", "also rated by the telecom section")
    codes: dict[str, str] = {}

    def _code(field: str, code: Any) -> None:
        if not isinstance(code, str) or not CODE_RE.fullmatch(code):
            raise Invalid(field, "required: 1-128 letters, digits, '_', '.', '-'")
        if code in codes:
            raise Invalid(field, f"duplicate charge code {code!r} (also {codes[code]})")
        codes[code] = field

    for name, kind in (("fixed", FixedCharge), ("one_time", OneTimeCharge), ("installments", InstallmentCharge)):
        charges = getattr(doc, name)
        if not isinstance(charges, list):
            raise Invalid(name, "must be a list of charges")
        for i, charge in enumerate(charges):
            if not isinstance(charge, kind):
                raise Invalid(f"{name}[{i}]", f"must be a {kind.__name__} (got {type(charge).__name__})")
    for i, fee in enumerate(doc.fixed):
        where = f"fixed[{i}]"
        _code(f"{where}.code", fee.code)
        check_text(f"{where}.name", fee.name)
        check_money(f"{where}.amount", fee.amount, currency)
        if fee.interval not in INTERVALS:
            raise Invalid(f"{where}.interval", f"one of {', '.join(INTERVALS)} (got {fee.interval!r})")
        if fee.timing not in TIMINGS:
            raise Invalid(f"{where}.timing", f"one of {', '.join(TIMINGS)} (got {fee.timing!r})")
        if not isinstance(fee.prorate, bool):
            raise Invalid(f"{where}.prorate", "true or false")
    for i, charge in enumerate(doc.one_time):
        where = f"one_time[{i}]"
        _code(f"{where}.code", charge.code)
        check_text(f"{where}.name", charge.name)
        check_money(f"{where}.amount", charge.amount, currency)
    for i, inst in enumerate(doc.installments):
        where = f"installments[{i}]"
        _code(f"{where}.code", inst.code)
        check_text(f"{where}.name", inst.name)
        check_money(f"{where}.total", inst.total, currency)
        if isinstance(inst.count, bool) or not isinstance(inst.count, int) or not 1 <= inst.count <= MAX_INSTALLMENTS:
            raise Invalid(
                f"{where}.count", f"a whole number of payments from 1 to {MAX_INSTALLMENTS} (got {inst.count!r})"
            )
    if doc.minimum_commitment is not None:
        check_money("minimum_commitment", doc.minimum_commitment, currency)
    if not isinstance(doc.addon, bool):
        raise Invalid("addon", "true or false")
    if not (doc.usage or doc.telecom or doc.fixed or doc.one_time or doc.installments):
        raise Invalid("usage", "a plan needs at least one charge (usage, telecom, fixed, one_time or installments)")


def check_country(name: str, country: object) -> None:
    """None, or an assigned ISO 3166-1 alpha-2 code (billing/tax_rates.py `ISO_COUNTRIES`, what invoicing accepts
    for a buyer): a made-up code such as XX would be stored and then stop every invoice of the customer."""
    if country is not None and (not isinstance(country, str) or country not in ISO_COUNTRIES):
        raise Invalid(name, f"an ISO 3166-1 alpha-2 country code such as DE (got {country!r})")


def validate_customer(doc: CustomerDoc) -> None:
    """Raise `Invalid` naming the first bad field of a customer document."""
    if not isinstance(doc, CustomerDoc):
        raise Invalid("", f"expected a CustomerDoc, got {type(doc).__name__}")
    check_tenant(doc.tenant)
    check_text("external_id", doc.external_id)
    if doc.external_id == "*":
        raise Invalid("external_id", "'*' is reserved (a tenant's default subscription)")
    check_text("name", doc.name)
    check_text("legal_name", doc.legal_name, required=False)
    check_text("tax_id", doc.tax_id, max_len=64, required=False)
    if doc.email is not None and (not isinstance(doc.email, str) or len(doc.email) > 256
                                  or not EMAIL_RE.fullmatch(doc.email)):  # fmt: skip
        raise Invalid("email", f"an email address such as billing@example.com (got {doc.email!r})")
    check_country("country", doc.country)
    if doc.address is not None:
        for name in ("line1", "line2", "city", "postal_code", "state"):
            check_text(f"address.{name}", getattr(doc.address, name), required=False)
        check_country("address.country", doc.address.country)
    if doc.currency is not None:
        check_currency("currency", doc.currency)
    try:
        if not isinstance(doc.timezone, str) or not doc.timezone:
            raise ValueError
        ZoneInfo(doc.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("timezone", f"an IANA time zone such as Europe/Berlin (got {doc.timezone!r})") from None
    for name in ("invoice_grace_days", "payment_terms_days"):
        days = getattr(doc, name)
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_GRACE_DAYS:
            raise Invalid(name, f"whole days from 0 to {MAX_GRACE_DAYS} (got {days!r})")
    if not isinstance(doc.metadata, Mapping):
        raise Invalid("metadata", "must map strings to strings")
    for key, value in doc.metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise Invalid(f"metadata.{key}", "keys and values are strings")
