"""Throughput of telecom rating: CDRs/s through ``rate_cdr`` on one core.

The mix is shaped like a retail mobile operator's day: 70 % voice (mostly
national/mobile, short calls, some crossing a band change), 20 % SMS, 10 % data,
customers inside, past or (2 %) at the edge of their minute bundle.  Rated with the example plan.

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

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# run as a script, bench/ is sys.path[0] and bench/rating.py would shadow the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from meterstream.rating.telecom import parse_telecom_plan, rate_cdr  # noqa: E402

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
    parser.add_argument("--json", type=Path, help="write {'cdrs_per_s': ...} here")
    args = parser.parse_args(argv)
    rate = cdr_events_per_s(args.seconds)
    print(f"telecom rating: {rate:,.0f} CDRs/s (one core)")
    if args.json:
        args.json.write_text(json.dumps({"cdrs_per_s": rate}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
