"""Frozen copy of the two decimal contexts of ``rating.money`` the telecom rater used (2026-12-01)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from decimal import Context, DivisionByZero, Inexact, InvalidOperation, Overflow, setcontext
from typing import Any

PRECISION = 60
EXACT = Context(prec=PRECISION, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
ROUNDING = Context(prec=PRECISION, traps=[InvalidOperation, DivisionByZero, Overflow])

_runners = threading.local()


def rounding_runner() -> Callable[..., Any]:
    """``run(fn, *args)`` calling fn under ROUNDING (one prepared contextvars.Context per thread)."""
    try:
        return _runners.run_rounding
    except AttributeError:
        context = contextvars.Context()
        context.run(setcontext, ROUNDING)
        _runners.run_rounding = context.run
        return _runners.run_rounding
