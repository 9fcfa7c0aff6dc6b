"""`close.with_credits_that_fit` on its own: which late-usage credits, and how much of one, an invoice takes.

`issue` here is a stand-in for the draft's totals (`issue.issue_draft`): 20 % tax on the subtotal, rounded to the
cent, after a fixed discount of 1.00 that never makes the subtotal negative. Expected figures by hand.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

from meterstream.invoice_emitter.close import with_credits_that_fit


def usage(amount: str) -> dict:
    return {"meter": "calls", "quantity": "5", "amount": amount}


def credit(period: str, amount: str, quantity: str = "1") -> dict:
    return {"kind": "adjustment", "applies_to": period, "meter": "calls", "line_key": "calls", "quantity": quantity,
            "amount": amount, "precise_amount": amount, "streamed_amount": amount}  # fmt: skip


def issuer(doc: dict, seen: list):
    def issue(late: list[dict]) -> SimpleNamespace:
        seen.append(late)
        subtotal = sum((Decimal(line["amount"]) for line in [*doc["lines"], *late]), Decimal(0))
        taxed = subtotal if subtotal < 0 else max(subtotal - 1, Decimal(0)) * Decimal("1.2")
        return SimpleNamespace(total=taxed.quantize(Decimal("0.01"), ROUND_HALF_UP), late=late)

    return issue


def test_a_draft_that_is_not_negative_is_the_one_issued_as_it_was() -> None:
    doc, seen = {"lines": [usage("10.00")], "currency": "EUR"}, []
    late = [credit("2026-09", "-4.00")]
    draft = with_credits_that_fit(doc, late, issuer(doc, seen))
    assert draft.late == late and draft.total == Decimal("6.00")  # (10 - 4 - 1) * 1.2
    assert len(seen) == 1


def test_whole_credits_in_order_then_the_most_of_the_next_one_with_a_quantity() -> None:
    doc, seen = {"lines": [usage("10.00")], "currency": "EUR"}, []
    late = [credit("2026-08", "-3.00"), credit("2026-09", "-2.00", quantity="0"), credit("2026-09", "-30.00"),
            credit("2026-10", "-1.00")]  # fmt: skip
    draft = with_credits_that_fit(doc, late, issuer(doc, seen))
    # whole: -3.00 (10 - 3 = 7), -2.00 (5), not -30.00, -1.00 (4); then of -30.00 the most that keeps the total >= 0:
    # the discount of 1.00 floors the subtotal at 0 from 4 - x <= 1, so x = 4.00 is the most with total 0.00
    assert [line["amount"] for line in draft.late] == ["-3.00", "-2.00", "-4.00", "-1.00"]
    assert draft.total == Decimal("0.00")
    part = draft.late[2]
    assert (part["quantity"], part["precise_amount"], part["streamed_amount"]) == ("0", "-4.00", "0")
    assert late[2]["amount"] == "-30.00"  # the caller's lines are not changed


def test_only_credits_make_no_document_and_a_credit_without_quantity_is_not_split() -> None:
    doc, seen = {"lines": [], "currency": "EUR"}, []
    assert with_credits_that_fit(doc, [credit("2026-09", "-4.95")], issuer(doc, seen)) is None
    doc = {"lines": [usage("3.00")], "currency": "EUR"}
    draft = with_credits_that_fit(doc, [credit("2026-09", "-9.00", quantity="0")], issuer(doc, []))
    assert draft.late == [] and draft.total == Decimal("2.40")  # (3 - 1) * 1.2: a part would never be offered again


def test_a_negative_total_for_another_reason_is_left_to_the_store() -> None:
    doc = {"lines": [usage("-5.00")], "currency": "EUR"}
    draft = with_credits_that_fit(doc, [credit("2026-09", "-1.00")], issuer(doc, []))
    assert draft.total == Decimal("-5.00")  # without the credit, still negative: the store refuses it as before
