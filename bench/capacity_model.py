"""The capacity model of docs/capacity.md: its figures computed from the benchmark JSON it cites, and the page.

    python bench/capacity_model.py            # rewrite docs/capacity.md
    python bench/capacity_model.py --check    # exit 1 when the page is not what the JSON says

Measured inputs: `bench/e2e.py` runs (CPU per event of each process in the steady phase, dedup bytes per id),
`bench/api.py` runs (API CPU per event), `bench/storage.py` (ClickHouse bytes per rated row). Everything else
on the page is arithmetic on them, done here, so the prose cannot drift from the numbers.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "capacity.md"
TEMPLATE = (Path(__file__).resolve().parent / "capacity.md.in").read_text(encoding="utf-8")  # str.format fields

# the files cited; the ranges are over the runs of sessions 5-7 (e2e) and of 2026-12-01 (API), so that a later
# result file does not change this page until someone chooses to cite it
W1 = "e2e-300k-native-w1-2026-12-01-s7.json"  # the session 7 pair on a quiet machine (README)
W2 = "e2e-300k-native-w2-2026-12-01-s7.json"
API = "api-2026-12-01-quiet.json"
STORAGE = "storage-1m-2026-12-01.json"
UTILIZATION = 0.7  # the load an instance is planned for
WINDOW_DAYS = 35  # METERSTREAM_DEDUP_WINDOW_DAYS default
RATES = (1_000_000, 10_000_000)
EVENT_BYTES, KEY_BYTES = 226, 14.5  # ingest.workload events: mean JSON value and key (50,000 events)


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def next_pow2(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def _range(values: list[float], unit: str = "") -> str:
    return f"{min(values):g}–{max(values):g}{unit}"


def figures() -> dict[str, Any]:
    w1, w2, api, st = load(W1), load(W2), load(API), load(STORAGE)
    steady = w1["cpu_us_per_event_steady"]
    proc, sink, broker = steady["processor-0"], steady["sink"], steady["broker"]
    s2 = w2["cpu_us_per_event_steady"]
    proc_w2 = round(sum(v for k, v in s2.items() if k.startswith("processor-")), 1)
    native = [load(p.name) for p in sorted(RESULTS.glob("e2e-*native*-s[67]*.json"))]
    runs = [r for r in native if r.get("cpu_us_per_event_steady")]
    per_proc = [round(sum(v for k, v in r["cpu_us_per_event_steady"].items() if k.startswith("processor-")), 1)
                for r in runs]  # fmt: skip
    api_runs = [p for f in sorted(RESULTS.glob("api-2026-12-01*.json")) for p in load(f.name)["phases"]
                if p["phase"] == "batch-1000" and not load(f.name).get("with_pipeline")]  # fmt: skip
    api_us = next(p["api_cpu_us_per_event"] for p in api["phases"] if p["phase"] == "batch-1000")
    threads_p = w1["threads_cpu_s_steady"]["processor-0"]
    threads_s = w1["threads_cpu_s_steady"]["sink"]
    sink_python_share = threads_s["python"] / sum(threads_s.values())
    sink_python_us = round(sink * sink_python_share, 2)
    per_instance = math.floor(1e6 / proc)
    per_instance_70 = math.floor(1e6 / proc * UTILIZATION)
    dedup_b = w1["state_dir_bytes_per_id"]
    dedup_all = [r["state_dir_bytes_per_id"] for r in map(load, (p.name for p in RESULTS.glob("e2e-*-s[567]*.json")))
                 if r.get("state_dir_bytes_per_id")]  # fmt: skip
    f: dict[str, Any] = {
        "w1": f"bench/results/{W1}", "w2": f"bench/results/{W2}", "api_file": f"bench/results/{API}",
        "st_file": f"bench/results/{STORAGE}",
        "proc": proc, "sink": sink, "broker": broker, "api": api_us,
        "proc_w2": proc_w2, "proc_w2_parts": " + ".join(f"{v}" for k, v in s2.items() if k.startswith("processor-")),
        "sink_w2": s2["sink"], "broker_w2": s2["broker"],
        "proc_range": _range(per_proc),
        "sink_range": _range([r["cpu_us_per_event_steady"]["sink"] for r in runs]),
        "broker_range": _range([r["cpu_us_per_event_steady"]["broker"] for r in runs]),
        "api_range": _range([p["api_cpu_us_per_event"] for p in api_runs]),
        "proc_python_pct": round(100 * threads_p["python"] / sum(threads_p.values())),
        "sink_python_pct": round(100 * sink_python_share), "sink_python_us": sink_python_us,
        "per_instance": per_instance, "per_instance_70": per_instance_70,
        "pipeline_rate": w1["pipeline_events_per_s"], "proc_core": w1["pipeline_events_per_s"] * proc / 1e6,
        "dedup_b": dedup_b, "dedup_range": _range(dedup_all),
        "rates_range": "–".join(f"{x:,}" for x in (min(r["pipeline_events_per_s"] for r in runs),
                                                   max(r["pipeline_events_per_s"] for r in runs))),
        "ids_range": _range([round(r["dedup_ids"] / 1e6, 2) for r in runs]),
        "event_bytes": EVENT_BYTES, "key_bytes": KEY_BYTES,
        "kafka_day_tb": round(1e6 * 86400 * (EVENT_BYTES + KEY_BYTES) / 1e12, 1),
    }  # fmt: skip
    for rate in RATES:
        tag = {1_000_000: "1", 10_000_000: "10"}[rate]
        inst = math.ceil(rate / per_instance_70)
        ids = rate * 86400 * WINDOW_DAYS
        f.update({
            f"p{tag}_cores": round(rate * proc / 1e6), f"p{tag}_inst": inst, f"p{tag}_parts": next_pow2(2 * inst),
            f"s{tag}_cores": round(rate * sink / 1e6),
            f"s{tag}_inst": math.ceil(rate * sink_python_us / 1e6 / UTILIZATION),
            f"b{tag}_cores": round(rate * broker / 1e6), f"b{tag}_rf3": round(3 * rate * broker / 1e6),
            f"a{tag}_cores": round(rate * api_us / 1e6),
            f"ids_{tag}m": f"{ids:.3g}",
            f"dedup_{tag}m_tb": round(ids * dedup_b / 1e12, 1),
            f"dedup_{tag}m_inst_tb": round(ids * dedup_b / 1e12 / inst, 2),
        })  # fmt: skip
    seq, uu = st["sequential_ids"], st["uuid_ids"]
    f.update({
        "st_rows": st["rows"], "st_codec": seq["codec"], "st_version": st["clickhouse_version"],
        "seq_disk": seq["bytes_on_disk_per_row"], "seq_comp": seq["compressed_per_row"],
        "seq_unc": seq["uncompressed_per_row"], "seq_gb": seq["gb_on_disk_per_billion_rows"],
        "uuid_disk": uu["bytes_on_disk_per_row"], "uuid_comp": uu["compressed_per_row"],
        "uuid_unc": uu["uncompressed_per_row"], "uuid_gb": uu["gb_on_disk_per_billion_rows"],
        "uuid_id_col": uu["columns"]["event_id"]["compressed_per_row"],
        "seq_id_col": seq["columns"]["event_id"]["compressed_per_row"],
        "day_1m_tb": round(86.4e9 * uu["bytes_on_disk_per_row"] / 1e12, 1),
    })  # fmt: skip
    return f


def render() -> str:
    return TEMPLATE.format(**figures())


def main(argv: list[str]) -> int:
    page = render()
    if "--check" in argv:
        if PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE} is not current: run python bench/capacity_model.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
