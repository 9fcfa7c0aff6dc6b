"""How much CPU the machine gives a benchmark right now: the work of two CPU-bound processes running at once over
the work of one alone, in the same seconds (`parallel_scaling`).

On two free cores it is ~2.0. Other load on the machine (a test run, another tenant of the host) lowers it: while a
test suite ran beside it, two processes got 1.43-1.83 cores' worth of work, and a pipeline of four processes whose
raw baseline is one process (bench/e2e.py) then measured a ratio 20-40% lower with the same code. bench/e2e.py
records it just before its pipeline phase (`machine_parallel_scaling`) so that a figure can be read against it.
"""

from __future__ import annotations

import subprocess
import sys

# counts loop turns for the given seconds, then prints the count (a fresh interpreter: no shared GIL, no caches)
_BURN = "import time,sys\ns=float(sys.argv[1]);t=time.perf_counter()+s;n=0\nwhile time.perf_counter()<t: n+=1\nprint(n)"


def _burn(n: int, seconds: float) -> list[int]:
    """Start n CPU-bound processes together; the loop turns each made in `seconds`."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _BURN, str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    return [int(p.communicate(timeout=seconds + 60)[0]) for p in procs]


def parallel_scaling(seconds: float = 2.0) -> float:
    """Work of two CPU-bound processes at once / work of one alone (each for `seconds`)."""
    one = _burn(1, seconds)[0]
    two = sum(_burn(2, seconds))
    return round(two / one, 2)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="each measurement's length")
    print(parallel_scaling(ap.parse_args().seconds))
