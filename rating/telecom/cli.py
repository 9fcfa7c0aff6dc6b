"""``meterstream rate event``: rate one usage event against a telecom plan, print JSON.

    meterstream rate event --catalog FILE --event JSON [--bundle-used JSON] [--plan ID]

``FILE`` is a telecom section (YAML/JSON), a file with a top-level ``telecom:``
key, or a full catalog ``plans: [{id, currency, telecom: {...}}]`` (first plan with
a telecom section, or ``--plan``).  ``--event`` / ``--bundle-used`` take JSON text
or ``@path``.  Exit status: 0 rated, 1 no rate (dead letter), 2 bad input.
The command line is deploy/cli_rate.py's (typer); ``rate_event_command`` is the work.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from meterstream.rating.telecom.errors import NoRate, TelecomCatalogError
from meterstream.rating.telecom.model import TelecomPlan, parse_telecom_plan
from meterstream.rating.telecom.rater import rate_cdr


def _json_arg(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return json.loads(text)


def load_plan_file(path: Path, *, plan_id: str | None = None, currency: str = "EUR") -> TelecomPlan:
    """Read a telecom plan from a section file, a file with a top-level `telecom:` key, or a full catalog (its
    first plan with a telecom section, or `plan_id`). The section is parsed as the catalog parses it
    (`rating.catalog.build_plan`): `telecom: {file: ...}` and `{csv: ...}` resolve against the file's directory,
    and errors name `plans[i].telecom...` (`$.telecom...` for a top-level key). A file that is not YAML/JSON or
    not a mapping: TelecomCatalogError naming the file."""
    from meterstream.rating.catalog import build_plan

    try:
        with path.open(encoding="utf-8") as f:  # YAML's errors name the file
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise TelecomCatalogError([(str(path), f"not valid YAML/JSON ({' '.join(str(exc).split())})")]) from None
    if not isinstance(doc, dict):
        raise TelecomCatalogError([(str(path), "not a mapping")])
    if "plans" in doc:
        plans = [(i, p) for i, p in enumerate(doc["plans"] or []) if isinstance(p, dict) and "telecom" in p]
        if plan_id is not None:
            plans = [(i, p) for i, p in plans if p.get("id") == plan_id]
        if not plans:
            raise TelecomCatalogError(
                [(f"{path}.plans", f"no plan with a telecom section{' ' + plan_id if plan_id else ''}")]
            )
        i, chosen = plans[0]
        section, currency, where = chosen["telecom"], str(chosen.get("currency", currency)), f"plans[{i}]"
    elif "telecom" in doc:
        section, currency, where = doc["telecom"], str(doc.get("currency", currency)), "$"
    else:
        return parse_telecom_plan(doc, currency=currency)
    telecom: TelecomPlan = build_plan("telecom", currency, {}, section, where=where, base_dir=path.parent).telecom
    return telecom


def _event(raw: Any) -> tuple[str, Decimal, datetime, dict[str, str]]:
    if not isinstance(raw, dict):
        raise ValueError("event must be a JSON object")
    quantity = Decimal(str(raw["quantity"]))
    start = datetime.fromisoformat(str(raw["time"]).replace("Z", "+00:00"))
    dims = {str(k): str(v) for k, v in (raw.get("dimensions") or {}).items()}
    return str(raw["meter"]), quantity, start, dims


def rate_event_command(
    catalog: Path, event: str, bundle_used: str = "{}", plan: str | None = None, currency: str = "EUR"
) -> int:
    """Print the rated event as JSON (or its no-rate reason); the exit status: 0 rated, 1 no rate, 2 bad input.
    `event` and `bundle_used` are JSON text or `@path`; `plan` picks a plan of a full catalog."""
    try:
        telecom = load_plan_file(catalog, plan_id=plan, currency=currency)
        raw = _json_arg(event)
        meter, quantity, start, dims = _event(raw)
        used = {str(k): Decimal(str(v)) for k, v in _json_arg(bundle_used).items()}
    except (TelecomCatalogError, OSError, ValueError, KeyError, InvalidOperation, AttributeError) as exc:
        print(f"error: {exc!r}" if isinstance(exc, KeyError) else f"error: {exc}", file=sys.stderr)
        return 2
    try:
        rated = rate_cdr(telecom, meter=meter, quantity=quantity, start=start, dimensions=dims, bundle_used=used)
    except NoRate as exc:
        print(json.dumps({"id": raw.get("id"), "error": exc.reason, "detail": exc.detail}))
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"id": raw.get("id"), **rated.to_json_dict()}, indent=2))
    return 0
