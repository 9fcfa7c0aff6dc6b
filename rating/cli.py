"""`meterstream rate quote`: price a quantity from the command line.

    meterstream rate quote --price <file | inline JSON/YAML> --quantity Q

prints {"currency", "total", "precise_total", "quantity", "priced_quantity", "lines": [...]} with
decimals as strings; an invalid price prints the error (naming the field) to stderr and exits 2.
The command line is deploy/cli_rate.py's (typer); `quote_command` is the work, and reads no settings.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import yaml

from meterstream.rating.engine import quote
from meterstream.rating.money import PRECISION
from meterstream.rating.price import PriceError

__all__ = ["load_price_text", "quote_command"]

EXIT_INVALID = 2


class _DecimalLoader(yaml.SafeLoader):
    """YAML (and so JSON) whose unquoted numbers with a fraction become Decimals read from their text,
    never floats: `unit_amount: 0.10` on the command line means exactly 0.10."""


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node).replace("_", ""))
)


def load_price_text(source: str) -> Any:
    """The price document from a file path, or from the argument itself (inline JSON or YAML)."""
    path = Path(source)
    text = path.read_text() if len(source) < 4096 and "\n" not in source and path.is_file() else source
    return yaml.load(text, Loader=_DecimalLoader)  # a SafeLoader subclass


def quote_command(price: str, quantity: str) -> int:
    """Print the quote of `quantity` under `price` (a file path, or the price inline) as JSON; the exit status."""
    try:
        document = load_price_text(price)
    except (OSError, yaml.YAMLError, ArithmeticError) as exc:
        reason = " ".join(str(exc).split())  # one line: YAML's message spans several, with a caret drawing
        print(f"invalid price: cannot read {price!r}: {reason}", file=sys.stderr)
        return EXIT_INVALID
    try:
        result = quote(document, quantity)
    except PriceError as exc:
        print(f"invalid price: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ArithmeticError:  # a decimal signal of EXACT (its text is only the signal's class): what it means
        print(f"invalid quantity: {quantity!r} cannot be priced exactly: its amounts need more than {PRECISION} "
              "significant digits", file=sys.stderr)  # fmt: skip
        return EXIT_INVALID
    except (ValueError, TypeError) as exc:
        print(f"invalid quantity: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(orjson.dumps(result.to_json()).decode() + "\n")
    return 0
