"""docs/pricing.md examples validate against schemas/price.v1.json, and their worked totals hold.
The public vectors' prices validate too, and a few invalid prices fail the schema as they fail the engine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterstream.rating import quote
from meterstream.rating.money import CURRENCY_MINOR_UNITS

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "price.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = [
    yaml.safe_load(block)
    for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "pricing.md").read_text(), re.S)
]
MODELS = ("unit", "graduated", "volume", "package", "flat", "percentage")


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_docs_show_every_model() -> None:
    assert {example["price"]["model"] for example in EXAMPLES} == set(MODELS)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e['price']['model']}-q{e['quantity']}" for e in EXAMPLES])
def test_docs_example(example: dict[str, Any]) -> None:
    VALIDATOR.validate(example["price"])
    assert str(quote(example["price"], example["quantity"]).total) == example["total"]


def test_public_vector_prices_validate() -> None:
    groups = yaml.safe_load((ROOT / "tests" / "data" / "pricing_public.yaml").read_text())
    for group in groups:
        for case in group["cases"]:
            price = dict(case.get("price") or group["price"])
            price.update({k: v for k, v in case.items() if k not in ("quantity", "total", "price")})
            VALIDATOR.validate(price)


@pytest.mark.parametrize(
    "price",
    [
        {"model": "unit", "currency": "USD", "unit_amount": 0.1},  # float
        {"model": "unit", "currency": "USD", "unit_amount": "-1"},  # negative
        {"model": "unit", "currency": "XYZ", "unit_amount": "1"},  # unknown currency
        {"model": "tiered", "currency": "USD"},  # unknown model
        {
            "model": "graduated",
            "currency": "USD",
            "tiers": [{"up_to": "5", "unit_amount": "1"}],
        },  # no open tier
        {
            "model": "volume",
            "currency": "USD",
            "tiers": [{"up_to": None, "unit_amount": "1", "block_size": "2", "block_amount": "1"}],
        },  # unit and block
        {"model": "flat", "currency": "USD", "amount": "1", "free_units": "1"},  # not a usage model
    ],
)
def test_invalid_prices_fail_the_schema(price: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(price)


def test_schema_currencies_are_the_engine_table() -> None:
    assert set(SCHEMA["$defs"]["common"]["properties"]["currency"]["enum"]) == set(CURRENCY_MINOR_UNITS)
