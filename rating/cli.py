"""`meterstream rate quote`: price a quantity from the command line.

    meterstream rate quote --price <file | inline JSON/YAML> --quantity Q

prints {"currency", "total", "precise_total", "quantity", "priced_quantity", "lines": [...]} with
decimals as strings; an invalid price prints the error (naming the field) to stderr and exits 2.
The main CLI mounts this with `add_commands(subparsers)`; `run(argv)` is the same without it.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import yaml

from meterstream.rating.engine import quote
from meterstream.rating.price import PriceError

__all__ = ["add_commands", "load_price_text", "run"]

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


def _quote(args: argparse.Namespace) -> int:
    try:
        document = load_price_text(args.price)
    except (OSError, yaml.YAMLError, ArithmeticError) as exc:
        print(f"invalid price: cannot read {args.price!r}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        result = quote(document, args.quantity)
    except PriceError as exc:
        print(f"invalid price: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (ValueError, TypeError, ArithmeticError) as exc:
        print(f"invalid quantity: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(orjson.dumps(result.to_json()).decode() + "\n")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register `rate` with its `quote` subcommand; returns the `rate` subparsers so that other
    modules can add theirs (e.g. `rate event`). Subcommands set `handler(args) -> int` (and func=None)."""
    rate = subparsers.add_parser("rate", help="price quantities with the tariff engine")
    rate_subparsers = rate.add_subparsers(dest="rate_command", required=True)
    p = rate_subparsers.add_parser("quote", help="price a period quantity (see docs/pricing.md)")
    p.add_argument("--price", required=True, help="price file (YAML/JSON) or the price itself, inline")
    p.add_argument("--quantity", required=True, help="decimal quantity (for percentage: the event's value)")
    p.set_defaults(func=None, handler=_quote)
    return rate_subparsers


def run(argv: list[str] | None = None) -> int:
    """`meterstream rate ...` without the rest of the CLI (tests, scripts)."""
    parser = argparse.ArgumentParser(prog="meterstream")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(run())
