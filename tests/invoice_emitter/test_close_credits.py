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


def test_whole_credits_in_order_then_a_part_of_the_next_one_that_leaves_the_discount_whole() -> None:
    doc, seen = {"lines": [usage("10.00")], "currency": "EUR"}, []
    late = [credit("2026-08", "-3.00"), credit("2026-09", "-2.00", quantity="0"), credit("2026-09", "-30.00"),
            credit("2026-10", "-1.00")]  # fmt: skip
    draft = with_credits_that_fit(doc, late, issuer(doc, seen))
    # -2.00 has no quantity: a later close would not offer it again, so it is always taken (10 - 2 = 8);
    # then whole: -3.00 (5), not -30.00, -1.00 (4); of -30.00 at most 4.00 keeps the total >= 0, but from 3.00 on
    # the total is 0 already (4 - 3 = 1, all taken by the 1.00 discount): the part is 3.00, the discount stays whole
    assert [line["amount"] for line in draft.late] == ["-3.00", "-2.00", "-3.00", "-1.00"]
    assert draft.total == Decimal("0.00")
    part = draft.late[2]
    assert (part["quantity"], part["precise_amount"], part["streamed_amount"]) == ("0", "-3.00", "0")
    assert late[2]["amount"] == "-30.00"  # the caller's lines are not changed


def test_a_whole_credit_that_would_eat_the_discount_is_taken_in_part() -> None:
    doc = {"lines": [usage("10.00")], "currency": "EUR"}
    late = [credit("2026-09", "-9.50"), credit("2026-10", "-20.00")]
    draft = with_credits_that_fit(doc, late, issuer(doc, []))
    # -9.50 fits whole (0.50 - 1 < 0: total 0.00) but 9.00 of it already brings the total to 0: -9.00 now,
    # the discount's 1.00 kept; -20.00 waits
    assert [line["amount"] for line in draft.late] == ["-9.00"]
    assert draft.total == Decimal("0.00")


def test_only_credits_make_no_document_and_a_credit_without_quantity_is_never_left_out() -> None:
    doc, seen = {"lines": [], "currency": "EUR"}, []
    assert with_credits_that_fit(doc, [credit("2026-09", "-4.95")], issuer(doc, seen)) is None
    doc = {"lines": [usage("3.00")], "currency": "EUR"}
    late = [credit("2026-09", "-9.00", quantity="0")]
    draft = with_credits_that_fit(doc, late, issuer(doc, []))
    assert draft.late == late and draft.total == Decimal("-6.00")  # refused by the store, as before: not lost
    late = [credit("2026-09", "-9.00", quantity="0") | {"line_key": "@sub/2026-09-01/usage/calls/p"}]
    draft = with_credits_that_fit(doc, late, issuer(doc, []))  # a subscription line is recomputed at every close
    assert [line["amount"] for line in draft.late] == ["-2.00"] and draft.total == Decimal("0.00")


def test_a_negative_total_for_another_reason_is_left_to_the_store() -> None:
    doc = {"lines": [usage("-5.00")], "currency": "EUR"}
    draft = with_credits_that_fit(doc, [credit("2026-09", "-1.00")], issuer(doc, []))
    assert draft.total == Decimal("-6.00")  # negative without the credit too: the whole draft, refused as before
