"""Throughput of telecom rating: CDRs/s through ``rate_cdr`` on one core, against the frozen rater.

Two mixes, each rated by the runtime ``rate_cdr`` and by the frozen copy of the rater as it was
before issue #12 (tests/rating/reference_telecom/, test code), alternating in one run so that both
see the same machine; the ratio is the figure to compare between machines.

* ``demo``: the telecom half of the demo workload (ingest/workload.py, Settings().catalog), rated in
  production order with bundle use carried per customer as the processor does, then timed;
* ``retail``: a retail mobile operator's day: 70 % voice (mostly national/mobile, short calls,
  some crossing a band change), 20 % SMS, 10 % data, customers inside, past or (2 %) at the edge of
  their minute bundle.  Rated with the example plan.

The timed passes repeat the same records, so the rater's memo is warm (the steady state of a long
run); ``first_pass`` times one pass over records never rated before by a fresh plan, memo filling.

    python bench/telecom_rating.py [--seconds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from meterstream.rating.telecom import NoRate, parse_telecom_plan, rate_cdr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

sys.path.append(str(ROOT / "tests" / "rating"))
import reference_telecom  # noqa: E402  (the frozen rater: test code, imported by this bench only)

PLAN_FILE = ROOT / "rating" / "telecom" / "examples" / "telecom_plan.yaml"
DESTINATIONS = [
    ("+4930", 40),  # national fixed
    ("+4917", 30),  # mobile
    ("+4343", 8),  # EU
    ("+1212", 4),  # North America
    ("+8613", 3),  # rest of world (default rate)
    ("+49800", 2),  # freephone
]


def make_events(n: int = 20_000, seed: int = 7) -> list[tuple[str, Decimal, datetime, dict, dict]]:
    """A deterministic CDR mix: (meter, quantity, start, dimensions, bundle_used)."""
    rnd = random.Random(seed)
    base = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
    prefixes = [p for p, w in DESTINATIONS for _ in range(w)]
    events = []
    for _ in range(n):
        start = base + timedelta(seconds=rnd.randrange(7 * 86400))
        dest = rnd.choice(prefixes) + str(rnd.randrange(10**6, 10**7))
        # most customers are well inside or past their 300 minutes; a few are at the edge
        edge = rnd.random() < 0.02
        used = {"national_minutes": Decimal(17_900 if edge else rnd.choice((0, 6000, 12_000, 18_000)))}
        kind = rnd.random()
        if kind < 0.7:
            seconds = Decimal(int(rnd.expovariate(1 / 150)) + 1)
            events.append(("voice_seconds", seconds, start, {"destination": dest}, used))
        elif kind < 0.9:
            events.append(("sms", Decimal(1), start, {"destination": dest}, used))
        else:
            size = Decimal(rnd.randrange(1, 200_000_000))
            events.append(("data_bytes", size, start, {}, used))
    return events


def demo_events(n: int = 60_000) -> tuple[Any, list[tuple[str, Decimal, datetime, dict, dict]]]:
    """The demo workload's telecom records (first ``n`` generated events), with bundle use so far."""
    import orjson

    from meterstream.ingest.workload import WorkloadSpec, generate
    from meterstream.rating.catalog import load_catalog
    from meterstream.schemas.event import parse_quantity, parse_time
    from meterstream.schemas.settings import Settings

    catalog = load_catalog(Settings().catalog)
    plan = catalog.plans["telecom-standard"].telecom
    used: dict[str, dict[str, Decimal]] = {}
    events = []
    for _, value in generate(WorkloadSpec(events=n)):
        try:  # (the processor's own decoder refuses the demo's month-old times by default)
            e = orjson.loads(value)
            if e["tenant"] != "telco":
                continue
            meter, customer, dims = e["meter"], e["customer"], e["dimensions"]
            quantity, start = parse_quantity(e["quantity"]), parse_time(e["time"])
        except (ValueError, KeyError, TypeError):  # malformed on purpose: the processor dead-letters these
            continue
        bundle_used = dict(used.get(customer, {}))
        try:
            r = reference_telecom.rate_cdr(plan, meter=meter, quantity=quantity, start=start,
                                           dimensions=dims, bundle_used=bundle_used)  # fmt: skip
        except NoRate:
            continue
        events.append((meter, quantity, start, dims, bundle_used))
        for bundle, units in r.bundle_units_used.items():
            mine = used.setdefault(customer, {})
            mine[bundle] = mine.get(bundle, Decimal(0)) + units
    return plan, events


def _pass(fn: Any, plan: Any, events: list) -> float:
    clock = time.process_time
    began = clock()
    for meter, qty, start, dims, used in events:
        fn(plan, meter=meter, quantity=qty, start=start, dimensions=dims, bundle_used=used)
    return clock() - began


def compare(plan: Any, events: list, seconds: float) -> dict[str, float]:
    """µs per call of the frozen rater and of ``rate_cdr``, alternating slices for ``seconds`` of CPU."""
    first = _pass(rate_cdr, plan, events) / len(events) * 1e6  # runtime memo empty: it fills in this pass
    _pass(reference_telecom.rate_cdr, plan, events)
    best = {"reference": float("inf"), "current": float("inf")}
    size = max(1, min(len(events), 5000))
    spent = 0.0
    k = 0
    while spent < seconds or k < 4:
        part = events[(k * size) % len(events) :][:size]
        for name, fn in (("reference", reference_telecom.rate_cdr), ("current", rate_cdr)):
            took = _pass(fn, plan, part)
            spent += took
            best[name] = min(best[name], took / len(part) * 1e6)
        k += 1
    return {
        "reference_us_per_cdr": best["reference"],
        "current_us_per_cdr": best["current"],
        "ratio": best["reference"] / best["current"],
        "first_pass_us_per_cdr": first,
    }


def cdr_events_per_s(seconds: float = 3.0) -> float:
    """Rate the mix repeatedly for ``seconds`` of CPU time and return CDRs per CPU-second.

    CPU time of this (single-threaded) process is the "one core" figure and is not
    deflated when other work shares the machine; wall-clock throughput on an idle
    core is the same number.
    """
    plan = parse_telecom_plan(yaml.safe_load(PLAN_FILE.read_text()), currency="EUR")
    events = make_events()
    for meter, qty, start, dims, used in events[:2000]:  # warm caches
        rate_cdr(plan, meter=meter, quantity=qty, start=start, dimensions=dims, bundle_used=used)
    done = 0
    clock = time.process_time
    began = clock()
    deadline = began + seconds
    while True:
        for meter, qty, start, dims, used in events:
            rate_cdr(plan, meter=meter, quantity=qty, start=start, dimensions=dims, bundle_used=used)
        done += len(events)
        now = clock()
        if now >= deadline:
            return done / (now - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, help="write the figures (cdrs_per_s, demo, retail) here")
    args = parser.parse_args(argv)
    rate = cdr_events_per_s(args.seconds)
    print(f"telecom rating: {rate:,.0f} CDRs/s (one core, retail mix)")
    out: dict[str, Any] = {"cdrs_per_s": rate}
    demo_plan, demo = demo_events()
    retail_plan = parse_telecom_plan(yaml.safe_load(PLAN_FILE.read_text()), currency="EUR")
    for name, plan, events in (("demo", demo_plan, demo), ("retail", retail_plan, make_events())):
        figures = compare(plan, events, args.seconds)
        out[name] = {**figures, "cdrs": len(events)}
        print(
            f"{name:7s} reference {figures['reference_us_per_cdr']:.2f} µs/CDR, current "
            f"{figures['current_us_per_cdr']:.2f} µs/CDR: {figures['ratio']:.2f}x "
            f"(first pass, memo filling: {figures['first_pass_us_per_cdr']:.2f} µs/CDR; {len(events):,} CDRs)"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
