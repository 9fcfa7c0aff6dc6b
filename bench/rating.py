"""Benchmark of the tariff engine's streaming path: rated events/s through `rating.delta` on one core.

A realistic mix: ~10k customers, each on one of several prices (unit with a byte->GB conversion,
graduated with 3-5 tiers and free units, volume, package, unit with a minimum), each event moving the
customer's cumulative period quantity (kept in a dict, as the stream rater keeps it in its table).

    python bench/rating.py [--seconds S] [--json FILE]

Sections are independent functions returning figures to merge into the JSON; `bench/telecom_rating.py`,
when present, contributes `cdrs_per_s` through its `cdr_events_per_s(seconds)`.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson

from meterstream.rating import Price, delta, parse_price

CUSTOMERS = 10_000
EVENTS = 200_000  # per round

PRICES: list[dict[str, object]] = [
    {
        "model": "unit",
        "currency": "USD",
        "unit_amount": "0.09",
        "divide_by": "1000000000",
        "conversion_rounding": "up",
        "free_units": "5",
    },  # egress bytes -> GB, 5 GB free
    {
        "model": "graduated",
        "currency": "USD",
        "free_units": "1000",
        "tiers": [
            {"up_to": "10000", "unit_amount": "0.002", "flat_amount": "5"},
            {"up_to": "100000", "unit_amount": "0.0015"},
            {"up_to": "1000000", "unit_amount": "0.001"},
            {"up_to": None, "unit_amount": "0.0005"},
        ],
    },  # API calls
    {
        "model": "graduated",
        "currency": "EUR",
        "divide_by": "60",
        "conversion_rounding": "up",
        "tiers": [
            {"up_to": "100", "unit_amount": "0"},
            {"up_to": "500", "unit_amount": "0.02"},
            {"up_to": None, "unit_amount": "0.015"},
        ],
    },  # seconds -> minutes
    {
        "model": "graduated",
        "currency": "USD",
        "maximum": "5000",
        "tiers": [
            {"up_to": "1000", "block_size": "100", "block_amount": "1.50"},
            {"up_to": "10000", "unit_amount": "0.012"},
            {"up_to": "50000", "unit_amount": "0.010"},
            {"up_to": "200000", "unit_amount": "0.008"},
            {"up_to": None, "unit_amount": "0.006"},
        ],
    },
    {
        "model": "volume",
        "currency": "USD",
        "tiers": [
            {"up_to": "1000", "unit_amount": "0.05"},
            {"up_to": "10000", "unit_amount": "0.04", "flat_amount": "10"},
            {"up_to": None, "unit_amount": "0.03", "flat_amount": "50"},
        ],
    },
    {
        "model": "package",
        "currency": "USD",
        "package_amount": "2.50",
        "package_size": "1000",
        "free_units": "500",
    },
    {"model": "unit", "currency": "JPY", "unit_amount": "3", "minimum": "1000"},
]

# Event sizes per price (bytes for the egress meter, seconds for the call meter, plain units elsewhere).
QUANTITIES: list[list[Decimal]] = [
    [Decimal(n) for n in (52_428_800, 1_048_576, 734_003_200, 12_000)],
    [Decimal(n) for n in (1, 1, 3, 10, 250)],
    [Decimal(n) for n in (17, 60, 95, 312)],
    [Decimal(n) for n in ("1", "12.5", "40", "100")],
    [Decimal(n) for n in (1, 5, 20)],
    [Decimal(n) for n in (1, 64, 300)],
    [Decimal(n) for n in (1, 2)],
]


def _workload(seed: int = 7) -> tuple[list[Price], list[tuple[int, Decimal]]]:
    rng = random.Random(seed)
    parsed = [parse_price(p) for p in PRICES]
    plan_of = [rng.randrange(len(parsed)) for _ in range(CUSTOMERS)]
    customer_price = [parsed[i] for i in plan_of]
    events = []
    for _ in range(EVENTS):
        customer = rng.randrange(CUSTOMERS)
        events.append((customer, rng.choice(QUANTITIES[plan_of[customer]])))
    return customer_price, events


def _rate_all(customer_price: list[Price], events: list[tuple[int, Decimal]]) -> Decimal:
    """The stream rater's inner loop: cumulative state per customer, one delta per event."""
    state: dict[int, Decimal] = {}
    total = Decimal(0)
    for customer, quantity in events:
        before = state.get(customer)
        after = quantity if before is None else before + quantity
        total += delta(customer_price[customer], before, after)
        state[customer] = after
    return total


def delta_events_per_s(seconds: float) -> dict[str, float]:
    """Best rate over rounds of EVENTS events until `seconds` have passed (at least 3 rounds).

    `events_per_s` divides by the process's CPU time (one core, single thread), so other load on a shared
    machine does not distort it; `events_per_s_wall` is the same best round by the wall clock.
    """
    customer_price, events = _workload()
    best_cpu = best_wall = 0.0
    rounds = 0
    deadline = time.perf_counter() + seconds
    while rounds < 3 or time.perf_counter() < deadline:
        cpu, wall = time.process_time(), time.perf_counter()
        _rate_all(customer_price, events)
        best_cpu = max(best_cpu, len(events) / (time.process_time() - cpu))
        best_wall = max(best_wall, len(events) / (time.perf_counter() - wall))
        rounds += 1
    return {"events_per_s": round(best_cpu), "events_per_s_wall": round(best_wall)}


def telecom_cdrs_per_s(seconds: float) -> dict[str, float]:
    """CDR section, contributed by bench/telecom_rating.py when it exists."""
    path = Path(__file__).with_name("telecom_rating.py")
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location("bench_telecom_rating", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "cdr_events_per_s"):
        return {}
    return {"cdrs_per_s": round(module.cdr_events_per_s(seconds))}


SECTIONS: list[Callable[[float], dict[str, float]]] = [delta_events_per_s, telecom_cdrs_per_s]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per section")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    for section in SECTIONS:
        results.update(section(args.seconds))
    print(", ".join(f"{name}: {value:,.0f}" for name, value in results.items()))
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
