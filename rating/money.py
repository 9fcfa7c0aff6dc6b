"""Money primitives: ISO 4217 minor units, the one rounding rule, and the Decimal gate.

Every amount in the engine is a `Decimal`. Floats are refused at the door (`to_decimal`) because a
binary float cannot hold most decimal prices exactly (0.1 + 0.2 != 0.3), and a billing error of one
minor unit per line is still a billing error.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    setcontext,
)
from typing import Any

__all__ = [
    "CURRENCY_MINOR_UNITS",
    "EXACT",
    "PRECISION",
    "ROUNDING",
    "ZERO",
    "exact_runner",
    "minor_units",
    "round_money",
    "rounding_runner",
    "to_decimal",
]

ZERO = Decimal(0)

# The one decimal precision of money and quantities: 60 significant digits, far more than the 38 digits
# of the stored columns (Decimal(38, n)), so a sum or product of stored values is never rounded. Python's
# default context (28 digits) is never relied on: every Decimal operation in rating/, processor/rate.py
# and invoice_emitter/ runs in one of these two contexts, which differ only in the Inexact trap (fees.py
# cuts non-terminating proration fractions to 34 digits first, so their products stay exact in EXACT).
PRECISION = 60
# Arithmetic context of the engine: wide enough for any realistic price x quantity, and it *raises*
# (Inexact) rather than silently rounding, so an unrounded amount is exact or an error, never a guess.
EXACT = Context(prec=PRECISION, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
# quantize() must be allowed to round (that is its job), so it gets the same context minus the Inexact trap;
# so do computations whose rules divide (telecom prices per 60 seconds), rounded once at the end.
ROUNDING = Context(prec=PRECISION, traps=[InvalidOperation, DivisionByZero, Overflow])

_runners = threading.local()


def exact_runner() -> Callable[..., Any]:
    """`run(fn, *args)` calling fn under EXACT: this thread's `contextvars.Context.run`, where the decimal
    context variable is EXACT. Entering a prepared Context costs far less per call than localcontext()
    or a getcontext/setcontext pair (each creates a new context mapping), which matters on the hot path.
    One per thread, since a contextvars.Context cannot be entered by two threads at once.
    """
    try:
        return _runners.run
    except AttributeError:
        _runners.run = _runner(EXACT)
        return _runners.run


def rounding_runner() -> Callable[..., Any]:
    """`run(fn, *args, **kwargs)` calling fn under ROUNDING (see `exact_runner`)."""
    try:
        return _runners.run_rounding
    except AttributeError:
        _runners.run_rounding = _runner(ROUNDING)
        return _runners.run_rounding


def _runner(decimal_context: Context) -> Callable[..., Any]:
    context = contextvars.Context()
    context.run(setcontext, decimal_context)
    return context.run


# ISO 4217 list one (active codes) -> number of digits after the decimal point.
# Codes whose minor unit is "N.A." (XAU, XDR, XTS, XXX...) are not money one can invoice in and are left out.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        # no minor unit
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(),
        0,
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
    **dict.fromkeys(
        (
            "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
            "CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL "
            "GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
            "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN "
            "PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL "
            "THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
        ).split(),
        2,
    ),
}

# One quantum per currency, built once: quantize() is the rounding hot spot at invoice time.
_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-exp) for code, exp in CURRENCY_MINOR_UNITS.items()}


def minor_units(currency: str) -> int:
    """Digits after the decimal point of `currency` (USD 2, JPY 0, KWD 3, CLF 4)."""
    try:
        return CURRENCY_MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"unknown currency {currency!r} (not an active ISO 4217 code)") from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round once to the currency's minor unit, half away from zero (ROUND_HALF_UP in `decimal`)."""
    quantum = _QUANTUM.get(currency)
    if quantum is None:
        minor_units(currency)  # raises the explanatory error
    return to_decimal(amount).quantize(quantum, rounding=ROUND_HALF_UP, context=ROUNDING)


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Convert an amount or quantity to a finite Decimal; floats and bools are refused (TypeError).

    Strings are the safe wire format for decimals ("0.1" is exactly one tenth); a float has already
    lost that information by the time it gets here.
    """
    if type(value) is Decimal:
        result = value
    elif isinstance(value, float):
        raise TypeError(
            f"float {value!r} refused: floats cannot represent decimal money exactly; pass a str or Decimal"
        )
    elif isinstance(value, bool):
        raise TypeError(f"bool {value!r} is not a quantity or amount")
    elif isinstance(value, (Decimal, int)):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"{type(value).__name__} {value!r} is not a decimal amount; pass a str, int or Decimal")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result
