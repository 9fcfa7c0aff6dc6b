"""docs/reference: the event page names every field of the schema and its error table is what parse_event
says; the catalog page's file parses and its worked examples hold (totals worked out by hand in the page)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterstream.rating import quote
from meterstream.rating.catalog import CatalogError, parse_catalog
from meterstream.schemas.event import InvalidEvent, parse_event

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "docs" / "reference"
EVENTS = (REF / "events.md").read_text(encoding="utf-8")
CATALOG = (REF / "catalog.md").read_text(encoding="utf-8")
EVENT_SCHEMA = json.loads((ROOT / "schemas" / "usage_event.v1.json").read_text())
PRICE_SCHEMA = json.loads((ROOT / "schemas" / "price.v1.json").read_text())
TELECOM_SCHEMA = json.loads((ROOT / "schemas" / "telecom_plan.v1.json").read_text())


def _example_event() -> dict[str, Any]:
    block = re.search(r"```json\n(.*?)```", EVENTS, re.S)
    assert block is not None
    return json.loads(block.group(1))


def _error_rows() -> list[tuple[str, str, str]]:
    section = EVENTS.split("<!-- errors: change | field | reason -->", 1)[1].split("<!-- end of errors -->", 1)[0]
    rows = []
    for line in section.strip().splitlines()[2:]:  # after the header and the rule
        change, field, reason = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        rows.append((change, field.strip("`"), reason))
    return rows


def _message(change: str) -> bytes:
    """The example event changed as the row's first cell says."""
    event = _example_event()
    if change.startswith("the message is "):
        return change.removeprefix("the message is ").strip("`").encode()
    if change.startswith("without "):
        event.pop(change.removeprefix("without ").strip("`"))
        return json.dumps(event).encode()
    # a JSON object merged into the event; `"x" * 257` stands for that string repeated
    text = re.sub(r'"(.)" \* (\d+)', lambda m: json.dumps(m.group(1) * int(m.group(2))), change.strip("`"))
    return json.dumps({**event, **json.loads(text)}).encode()


def test_the_example_event_is_valid() -> None:
    event = parse_event(json.dumps(_example_event()))
    assert (event.tenant, event.id, event.quantity) == ("acme", "evt-0001", 250)


def test_every_schema_field_has_a_row() -> None:
    fields = re.findall(r"^\| `([a-z_]+)` \| ", EVENTS.split("## Fields", 1)[1].split("##", 1)[0], re.M)
    assert fields == list(EVENT_SCHEMA["properties"])
    required = re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| yes \|", EVENTS, re.M)
    assert required == EVENT_SCHEMA["required"]


ERRORS = _error_rows()


def test_the_error_table_is_read() -> None:
    assert len(ERRORS) >= 15 and ("without `id`", "id", "required") in ERRORS


@pytest.mark.parametrize(("change", "field", "reason"), ERRORS, ids=[r[0] for r in ERRORS])
def test_each_documented_error_is_what_the_parser_says(change: str, field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_message(change))
    assert (caught.value.field, caught.value.reason) == (field, reason)


# ------------------------------------------------------------------------------------------------- catalog

BLOCKS = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", CATALOG, re.S)]
PRICES = [b for b in BLOCKS if "price" in b]
[TELECOM] = [b["telecom_example"] for b in BLOCKS if "telecom_example" in b]


def test_the_catalog_file_parses() -> None:
    [doc] = [b for b in BLOCKS if "plans" in b]
    catalog = parse_catalog(doc, base_dir=ROOT / "rating" / "telecom" / "examples")
    assert sorted(catalog.plans) == ["api-pro", "mobile"]
    assert catalog.plans["mobile"].telecom is not None


def test_the_documented_catalog_error_is_the_engines() -> None:
    message = "plans[0].meters.api_calls.tiers[1].up_to: bounds must increase (5 after 10)"
    assert message in CATALOG
    tiers = [{"up_to": bound, "unit_amount": "1"} for bound in ("10", "5", None)]
    bad = {"plans": [{"id": "p", "currency": "USD", "meters": {"api_calls": {"model": "graduated", "tiers": tiers}}}]}
    with pytest.raises(CatalogError) as caught:
        parse_catalog(bad)
    assert str(caught.value) == message


def test_every_model_has_a_worked_example_and_a_row() -> None:
    models = list(PRICE_SCHEMA["$defs"]["common"]["properties"]["model"]["enum"])
    assert {p["price"]["model"] for p in PRICES} == set(models)
    for model in models:
        assert f"| `{model}` |" in CATALOG
    for field in PRICE_SCHEMA["$defs"]["usage"]["properties"]:
        assert f"`{field}`" in CATALOG, field
    for field in TELECOM_SCHEMA["properties"]:
        assert f"`{field}`" in CATALOG, field


@pytest.mark.parametrize("example", PRICES, ids=[f"{p['price']['model']}-{p['quantity']}" for p in PRICES])
def test_worked_example(example: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(PRICE_SCHEMA).validate(example["price"])
    assert str(quote(example["price"], example["quantity"]).total) == example["total"]


@pytest.mark.parametrize("call", TELECOM["calls"], ids=[c["start"] for c in TELECOM["calls"]])
def test_telecom_worked_example(call: dict[str, Any]) -> None:
    from datetime import datetime
    from decimal import Decimal

    from meterstream.rating.telecom import rate_cdr

    doc = {"plans": [{"id": "mobile", "currency": "EUR", "telecom": TELECOM["plan"]}], "assignments": []}
    plan = parse_catalog(doc).plans["mobile"]
    rated = rate_cdr(plan.telecom, meter="voice_seconds", quantity=Decimal(call["seconds"]),
                     start=datetime.fromisoformat(call["start"]), dimensions={"destination": call["destination"]},
                     bundle_used={})  # fmt: skip
    assert rated.cost == Decimal(call["cost"])
    assert {key: amount for key, amount in rated.lines} == {k: Decimal(v) for k, v in call["lines"].items()}
