"""A recurring fee of an earlier, closed period billed on a later invoice is worded as a fee, not as late usage
(session 17, the audit's item 3): a subscription back-dated into September after September's close billed its
September platform fee on October's invoice as "late usage for 2026-09: Platform fee". Amounts are unchanged."""

from __future__ import annotations

from decimal import Decimal

from meterstream.invoice_emitter.adjustments import adjustment_lines

# a subscription's fee line as subscription_invoice.py builds it (its key: @<sub>/<start>/<kind>/<code>/<plan>)
FEE_KEY = "@sub-1/2026-09-01T00:00:00Z/fixed/platform/pro@1"
FEE = {"kind": "fixed", "plan": "pro@1", "subscription": "sub-1", "meter": "", "code": "platform",
       "description": "Platform fee", "quantity": "30", "unit_price": "99.00", "amount": "99.00",
       "start": "2026-09-01T00:00:00Z", "end": "2026-10-01T00:00:00Z", "line_key": FEE_KEY}  # fmt: skip
USAGE = {"kind": "usage", "meter": "api_calls", "description": "API calls", "quantity": "110", "amount": "47.50",
         "line_key": "@sub-1/2026-09-01T00:00:00Z/pro@1/api_calls"}  # fmt: skip


def test_a_fee_never_billed_is_caught_up_as_the_fee_billed_late() -> None:
    [adj] = adjustment_lines([FEE], {}, "2026-09", "EUR")
    assert adj["description"] == "Platform fee, 2026-09 (billed late)"
    assert (adj["kind"], adj["applies_to"], adj["line_key"]) == ("adjustment", "2026-09", FEE_KEY)
    assert (adj["quantity"], adj["amount"]) == ("30", "99.00")  # the whole fee: nothing of it was billed


def test_a_fee_billed_in_part_is_caught_up_for_the_rest() -> None:
    # 10 of September's 30 days were billed (33.00); the fee now covers all 30 (99.00): 66.00 for 20 days
    billed = {FEE_KEY: ("", Decimal(10), Decimal("33.00"))}
    [adj] = adjustment_lines([FEE], billed, "2026-09", "EUR")
    assert (adj["description"], adj["quantity"], adj["amount"]) == ("Platform fee, 2026-09 (billed late)", "20",
                                                                     "66.00")  # fmt: skip


def test_a_fee_billed_and_no_longer_owed_is_a_correction_named_by_its_code() -> None:
    # September's fee was billed (99.00); the subscription was cancelled back to August: no fee line now
    [adj] = adjustment_lines([], {FEE_KEY: ("", Decimal(30), Decimal("99.00"))}, "2026-09", "EUR")
    assert (adj["description"], adj["quantity"], adj["amount"]) == ("platform, 2026-09 (corrected)", "-30", "-99.00")
    # owed less now than billed: a correction too (30 days billed, 15 owed: -49.50)
    half = {**FEE, "quantity": "15", "amount": "49.50"}
    [less] = adjustment_lines([half], {FEE_KEY: ("", Decimal(30), Decimal("99.00"))}, "2026-09", "EUR")
    assert (less["description"], less["amount"]) == ("Platform fee, 2026-09 (corrected)", "-49.50")


def test_other_charges_are_fees_too_and_usage_stays_late_usage() -> None:
    one_time = {**FEE, "kind": "one_time", "code": "setup", "description": "Setup", "quantity": "1",
                "amount": "250.00", "line_key": "@sub-1/2026-09-15T00:00:00Z/one_time/setup/pro@1"}  # fmt: skip
    lines = adjustment_lines([one_time, USAGE], {USAGE["line_key"]: ("api_calls", Decimal(50), Decimal("20.00"))},
                             "2026-09", "EUR")  # fmt: skip
    assert {a["description"]: a["amount"] for a in lines} == {
        "Setup, 2026-09 (billed late)": "250.00",
        "late usage for 2026-09: API calls": "27.50",  # 47.50 now - 20.00 billed
    }
    # a usage key billed and gone keeps its meter's words (the file path's keys are the meter)
    [gone] = adjustment_lines([], {"sms": ("sms", Decimal(3), Decimal("0.27"))}, "2026-09", "USD")
    assert gone["description"] == "late usage for 2026-09: sms"
