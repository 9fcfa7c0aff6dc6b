"""One explicit decimal context (money.EXACT / money.ROUNDING, 60 digits) wherever money and quantities are
computed: values of 38 significant digits (the stored Decimal(38, n) columns) must never be rounded by
Python's default 28-digit context, nor depend on the caller's context."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext

from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.close import CloseResult
from meterstream.invoice_emitter.document import empty_invoice, with_lines
from meterstream.rating.telecom import parse_telecom_plan, rate_cdr

D = Decimal
PLAN = parse_telecom_plan(
    {
        "timezone": "UTC",
        "rounding": {"decimals": 4, "method": "half_up"},
        "time_bands": {"default": "all", "periods": []},
        "destinations": {},
        "rates": {"R_SMS": {"groups": [{"price": "0.09", "per": 1}]}},
        "meters": {"sms": {"kind": "sms", "rates": [{"destination": "*any", "group": "sms", "rate": "R_SMS"}]}},
    },
    currency="EUR",
)
TUESDAY_NOON = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def _sms(quantity: str):
    return rate_cdr(
        PLAN, meter="sms", quantity=D(quantity), start=TUESDAY_NOON, dimensions={"destination": "+4930"}, bundle_used={}
    )


def test_telecom_cost_of_a_26_digit_quantity_is_exact() -> None:
    # 12345678901234567890123456 SMS at 0.09: x 9 = 123456789012345678901234560 - 12345678901234567890123456
    # = 111111110111111111011111104, / 100 -> 1111111101111111110111111.04; 4 decimals -> 29 digits, which
    # the default context cannot even quantize to (InvalidOperation).
    rated = _sms("12345678901234567890123456")
    assert str(rated.cost) == "1111111101111111110111111.0400"
    assert rated.lines == (("sms/sms/all", D("1111111101111111110111111.0400")),)


def test_telecom_rating_ignores_the_callers_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 6
        assert str(_sms("12345678901234567890123456").cost) == "1111111101111111110111111.0400"
        assert str(_sms("3").cost) == "0.2700"


def test_adjustment_of_a_38_digit_quantity_is_exact() -> None:
    # now 10^25 + 2e-12, billed 1e-12: the difference 10^25 + 1e-12 has 38 significant digits
    now = [{"meter": "m", "quantity": "10000000000000000000000000.000000000002", "amount": "7", "description": "m"}]
    billed = {"m": ("m", D("0.000000000001"), D("5"))}
    (line,) = adjustment_lines(now, billed, "2026-10", "USD")
    assert line["quantity"] == "10000000000000000000000000.000000000001"
    assert line["amount"] == "2.00"
    gone = adjustment_lines([], {"m": ("m", D("10000000000000000000000000.000000000001"), D("1"))}, "2026-10", "USD")
    assert gone[0]["quantity"] == "-10000000000000000000000000.000000000001"


def test_invoice_subtotal_sums_38_digit_amounts_before_the_one_rounding() -> None:
    # 12345678901234567890.004999999999999999 is below the half cent: 12345678901234567890.00 (USD).
    # Cut to 28 digits first it would be ...890.00500000 and round up to .01.
    doc = empty_invoice("t", "c", "2026-10", "p", "USD")
    out = with_lines(doc, [{"meter": "m", "amount": "12345678901234567890.004999999999999999"}])
    assert out["total"] == out["subtotal"] == "12345678901234567890.00"


def test_close_totals_by_currency_are_exact() -> None:
    result = CloseResult(
        "2026-10",
        invoices=[
            {"currency": "USD", "total": "10000000000000000000000000.01"},
            {"currency": "USD", "total": "0.000000000001"},
            {"currency": "EUR", "total": "1.5"},
        ],
    )
    assert result.totals_by_currency == {"USD": D("10000000000000000000000000.010000000001"), "EUR": D("1.5")}
