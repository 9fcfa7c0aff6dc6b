"""Every public pricing vector (tests/data/pricing_public.yaml, copied from ../shared with its sources)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterstream.rating import delta, parse_price, quote

VECTORS = Path(__file__).resolve().parents[1] / "data" / "pricing_public.yaml"
_CASE_KEYS = {"quantity", "total", "price"}


def _cases() -> list[Any]:
    """Flatten groups into (id, price dict, quantity, total); keys on a case (model, rounding...) override
    the group's price, and a case may carry its own whole price."""
    out = []
    for group in yaml.safe_load(VECTORS.read_text()):
        for index, case in enumerate(group["cases"]):
            price = dict(case.get("price") or group["price"])
            price.update({k: v for k, v in case.items() if k not in _CASE_KEYS})
            case_id = f"{group['id']}[{index}]-{price.get('model')}-q{case['quantity']}"
            out.append(pytest.param(price, case["quantity"], case["total"], id=case_id))
    return out


CASES = _cases()


def test_all_63_vectors_are_loaded() -> None:
    assert len(CASES) == 63


@pytest.mark.parametrize(("price", "quantity", "total"), CASES)
def test_public_vector(price: dict[str, Any], quantity: str, total: str) -> None:
    result = quote(price, quantity)
    assert result.total == Decimal(total)
    assert str(result.total) == total  # right number of minor-unit digits too
    assert sum((line.amount for line in result.lines), Decimal(0)) == result.precise_total
    # the streaming path agrees with the quote
    assert delta(parse_price(price), None, Decimal(quantity)) == result.precise_total
