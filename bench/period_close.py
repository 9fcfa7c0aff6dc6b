"""Period close throughput: invoices per second for 10,000 and 100,000 customers with 5 meters each.

    python bench/period_close.py [--customers 10000,100000] [--events-per-meter 2] [--json FILE] [--profile DIR]

For each size, in its own subprocess (embedded chdb: one store path per process), a fresh chdb store
is created with the real DDL (`aggregation.ddl.create_schema`), and `rated_usage` is filled directly
with synthetic, already deduplicated rows (column inserts with clickhouse-connect): tenant `bench`,
one plan with 5 metered prices (graduated, unit, volume with a minimum, package, graduated), every
customer uses every meter `--events-per-meter` times in the period. Each row's `amount` is the
streaming delta from the same pricing engine, so the close reconciles (`unreconciled` must be 0).
Then only `invoice_emitter.close.close_period(client, db, catalog, period, out_dir, producer=None,
progress=False)` is timed: the FINAL reads, pricing, invoice documents, the `invoices` /
`invoice_lines` inserts and the JSON files. Since issue #15 that includes issuing each invoice as the
version 2 document (issuer, buyer, dates, taxes, validation) and finalizing it with its number in the
invoice store (no store is passed: the close's own SQLite file under the work folder; until session 7's H15 it
was created and migrated inside the timed close, ~0.4-1 s, mostly importing alembic; now it is migrated before
the timer, `store_migrate_seconds`, since in production the store exists before any close: bench hygiene, not a
speed-up of the close). Measured on the 2-core machine shared with other work (load ~4): 10,000
customers 1,324 invoices/s before (v1 documents, no store); after, 320/s at 10,000 under cProfile (which
slows it) and 390/s at 2,000 without it. The profile: v1 -> v2 conversion `from_v1` ~19 %, store inserts
and lifecycle events ~20 % (before the Core inserts), `validate` ~8 %, pricing ~17 %.
Session 7 (issue #15 speed work: from_v1 and validate without to_decimal's dispatch, shared breakdowns converted
once; records' events from one summary, batch ULIDs, SQLite inserts through the driver, per-tenant lookups),
10,000 customers, the session's start and its end run one after the other on the same machine under the same
load, each in a folder of its own (nothing deleted in between): at load 3-4, CPU (user + sys, with the file
writer) 1,084 / 1,007 -> 863 / 715 us per invoice, user CPU 7.8 / 8.2 -> 6.3 / 5.9 s, 852 / 874 -> 789 / 1,170
invoices/s; at load 15-18, 1,405-1,451 -> 873-1,223 us, wall 62 -> 41-43 s. At the session's start, at load
2.6, the start measured 1,460 invoices/s (6.85 s, CPU 835 us per invoice).
Profile after (share of the close): pricing 24 %, issuing 24 % (from_v1 14 %, validate 7 %),
finalize_many 20 %, ClickHouse ledger inserts 7 %, files 6 %, the own store's migration 2 %, reads 4 %.
JSON: per size `seconds`, `invoices`, `invoices_per_s`, the close's CPU seconds (`cpu_user_s`, `cpu_sys_s`:
this process and the file-writing helper) and the 1-minute load average after it (`load_1m`: other work
on the machine makes these figures noisy).
`--profile DIR` also writes a cProfile of the close per size (`close-<N>.prof`).
Progress: when stderr is a terminal, a bar for the rows inserted and one for the close's invoices written
(`deploy/cli_common.progress`, as `meterstream close` draws it); the bar's redraws (rich, a thread) then run
inside the timed close, so the JSON says `progress_bar`; the figures here were measured with stderr piped.
`--with-drafts`: before the timed close, the period's drafts are kept current as `meterstream up` keeps them
(`invoice_emitter.close.draft_period` into the close's own invoice store, created and migrated first, outside
the timing: `store_migrate_seconds`, which the close without drafts pays inside its timing, ~1 s); the close
then finalizes those stored drafts (records.py). JSON adds `drafts`, `drafts_seconds`, `drafts_cpu_s`.
Measured (session 7, H13; 2,000 customers, `--pdfs 0`, load 2.4-2.6, one after the other): before stored drafts
were finalized in bulk, 3.05 s without drafts (CPU user/sys 1.80/1.70 s) and 20.66 s with them (16.22/2.02 s);
after, without drafts 2.03, 2.44, 1.66 s (user/sys 1.46/0.38, 1.82/0.29, 1.31/0.27 s), with drafts 2.24, 2.12,
1.63 s (1.45/0.99, 1.53/0.25, 1.12/0.38 s; the refresh before it 1.2-1.6 s, the store's migration 0.5 s).
10,000 customers after (load 2.8-3.1): without drafts 9.44 s (6.92/2.42 s), with drafts 12.17 s (7.76/5.31 s; the
refresh before it 6.6 s): the rows updated in place cost more kernel time in SQLite than rows inserted.
Session 7, H15 (10,000 customers, `--pdfs 0`, load 2.4-2.6, before = 62b94ff, after = the store migrated before
the timer + each document's compact JSON encoded once by the store and inserted into ClickHouse as it is; three
rounds alternating, each in its own folder): before 10.82 / 8.50 / 8.42 s = 924 / 1,176 / 1,187 invoices/s, CPU
(user + sys) 1,014 / 806 / 830 us per invoice (user 7.62 / 6.65 / 6.88 s); after 9.13 / 7.88 / 7.76 s = 1,095 /
1,270 / 1,289 invoices/s, 864 / 950 / 757 us (user 7.08 / 6.56 / 6.20 s; the migration apart 0.17-0.30 s). The
kernel time swings 1.4-2.9 s between runs of the same code (SQLite and file writes). 2,000 invoices/s (<= 500 us
per invoice) is NOT reached: left per the profile (4,000 customers, cProfile): `from_v1` building line and tier
structs (~18 dict look-ups per line; the shared-breakdown cache misses: most breakdowns are per customer),
`validate`, `msgspec.to_builtins` of each finalized document (the files and `CloseResult.invoices` are dicts),
the pricing (`rating.engine.quote`) and the SQLite executemany.
Session 8 (H1): from 2,000 customers the close prices and issues in a forked worker while its own process numbers,
stores and writes (`invoice_emitter/parallel.py`; the worker's drafts are numbered from their JSON,
`records.EncodedDraft`; a differential test checks the same documents, numbers, files and records as the close in
one process). By default only while the machine has a core spare (`parallel.spare_cores`): on a busy machine the
worker costs more CPU in all than it saves. `--workers N` forces it (0: one process); JSON adds `workers`,
`cpu_us_per_invoice` (all the close's processes) and `cpu_self_us_per_invoice` (its own). 10,000 customers, load
9-11 (7 other helpers' tests), three rounds alternating (bench/results/period_close_s8_h1.json): with the worker
39.2 / 45.1 / 40.8 s = 255 / 222 / 245 invoices/s, CPU 1,353 / 1,283 / 1,267 us per invoice in all, of which the
close's own process 534 / 506 / 487; in one process 24.9 / 53.0 / 32.5 s = 402 / 189 / 308 invoices/s, CPU 1,171 /
1,183 / 770 us, own process 756 / 913 / 676. The worker takes ~30 % off the close's own process but adds ~250 us of
CPU per invoice (pages shared after the fork copied on first write, results through a pipe); the file writer's
kernel time is 100-400 us per invoice here. When the load fell to 3.6-5 (two more rounds): with the worker 9.03 /
11.35 s = 1,108 / 881 invoices/s (all 1,194 / 1,205 us, own 516 / 503), in one process 10.46 / 13.04 s = 956 / 767
(1,336 / 987 us, own 736 / 670); the default just before, at load 5 (no spare core: one process), 7.68 s = 1,302/s
(816 us). 2,000 invoices/s is NOT reached: it needs <= ~1,000 us of CPU per
invoice in all on 2 idle cores, and the session start's code measured 1,021 us at load 2.2 (542/s) and 990 us at
load 6.9 (314/s). Where the worker's time goes (py-spy): pricing 40 %, issuing 35 % (`from_v1` 17 %), encoding 7 %;
the close's own process: `finalize_many` 54 % (SQLite inserts 25 %, lifecycle events 12 %, the store's checks 7 %),
the ClickHouse ledger ~7 %.
Session 8 (H10): building each document's version 2 lines with its version 1 lines (no `from_v1` line by line for
the close's own documents) was tried and reverted (d86b579, 638b315): 10,000 customers, one process (`--workers
0`), five rounds alternating before/after, each from a snapshot of its commit (bench/results/period_close_s8_h10.json):
the close's own process 783 / 756 / 842 / 732 / 805 us of CPU per invoice before vs 835 / 851 / 771 / 772 / 791 after
(all processes, with the file writer: 803-1,325 vs 855-1,390 us; 230-605 vs 218-647 invoices/s at load 5.6-12.4).
The bench's quantities are ~60 % distinct (30,324 quotes for 50,000 lines), so most lines are converted once either
way: issuing got 60-85 us per invoice cheaper and the pricing about as much dearer. The store's batch path
(executemany straight to SQLite, outbox rows in one executemany, no ORM objects) and the files (one open per file, no
fsync, a folder made once) were already as item 2-4 of the session's list asks. The user CPU is ~650-790 us per
invoice and the kernel's 150-600 more (files, SQLite, chdb): 2,000/s is NOT reached on this machine.
Session 9 (H5): where the kernel time went. The JSON adds, per invoice, user and kernel CPU us and minor page
faults of this process (`self_*`) and of its waited children (`children_*`: the forked worker, the file writer).
Page faults were not it (self ~15, children ~2.7 per invoice). `perf record -e cpu-clock -g` of a whole run: the
file writer spent 4.3 s in `openat` -> `ext4_create` -> `__ext4_new_inode` -> `find_inode_bit` ->
`recently_deleted` (19 % of all the bench's CPU): on this ext4 without a journal, creating an inode scans the block
group's free inodes and skips those deleted in the last 1-6 minutes, and the group the files landed in (next to
the work folder's parent, /tmp) was full of them (the previous bench run's removed folder, other work's temporary
files). Since then the files are written in a randomly named folder of a staging folder marked `chattr +T`
(`invoice_emitter/spread.py`), which ext4 places in a roomy group: 10,000 files made then removed, three rounds,
255-297 us of kernel time per file before, 36-37 us after. Also `period_subjects` leaves customers without any
subject out in ClickHouse (the bench has none: 50,000 rows were read and dropped). 10,000 customers, `--workers 1`,
load 8-11, three rounds alternating before (694535f's files and subjects, patched into the same code) / after, each
in a fresh folder removed after it: CPU of all processes 1,234 / 1,397 / 1,351 -> 916 / 897 / 926 us per invoice;
user 7.46 / 7.57 / 8.11 -> 7.10 / 7.21 / 7.24 s, kernel 4.88 / 6.40 / 5.40 -> 2.06 / 1.76 / 2.02 s (the children's
kernel time 356-458 -> 70-90 us per invoice); this process 527 / 576 / 542 -> 494 / 470 / 496 us (user 394-420 ->
365-383); 34.0 / 43.3 / 39.9 -> 30.8 / 30.6 / 38.8 s at that load. The invoice files of a 2,000-customer close are
byte for byte the same. What is left: ~900 us of CPU per invoice in all, this process ~480 (SQLite executemany and
the lifecycle events, decoding each numbered document, the ClickHouse reads and ledger inserts, chdb's threads
count here), the worker ~350 (pricing, issuing), the file writer ~80: at best ~2,000 invoices/s on 2 idle cores
only if this process and the worker overlap fully (this process is the longer: ~4.8 s for 10,000).
Session 10 (H2): the JSON's `phases` split this process's close (`CloseResult.phases`, `invoice_emitter/phases.py`):
wall s and CPU us per invoice of `prepare`, `usage` (the ClickHouse reads before any worker), `loop` (holding
`finalize`: numbering and the SQLite inserts, `documents`: files and results, and now `ledger`), `ledger` (ClickHouse
`invoices`/`invoice_lines`), `publish`, `gc`. Found: (1) session 9's quiet runs (1,325 and 1,728/s) closed in ONE
process: their children used 19-22 us of user CPU per invoice, the file writer alone; the default asked the 1-minute
load average, which still counted the bench's own populate a second before (1.9-2.0 on 2 cores: no spare core).
The default now judges the cores over the close's own reads (`parallel.CpuWindow`: /proc/stat less this process's
CPU). (2) The ledger was one insert after the loop (~1.0-1.9 s serial at 10k); it is now inserted per batch of 1,000
while the worker prices the next customers, from the documents' bytes (`ledger.store_encoded`, a typed decoder of
its fields). (3) Each numbered document was decoded to a dict (orjson.loads) for the files and the result: the files
are now its bytes re-indented (`msgspec.json.format`, byte for byte the same) and `CloseResult.invoices` decodes a
document when it is read (`documents_list.Documents`). (4) The worker blocked on its 64 kB pipe whenever this process
stored a batch: a reader thread now takes its frames as they come (`parallel.AHEAD` frames ahead; worker's time
blocked writing, 10k, load 3-3.6: 5.2 / 3.4 s before, 0.7 / 1.1 s after), the pipe widened to 1 MB. 10,000
customers, `--workers 1`, alternating with a snapshot of the session's start (+ the phase timers), each in its own
folder, load 2.7-3.5 (another helper's callgrind held a core: wall figures mean little): this process 411 / 426 /
478 / 512 -> 376 / 318 (ledger and files) and 442 / 415 (with the reader thread) us of CPU per invoice; documents 62-79
-> 25-32 us; ledger 93-114 us (0.94-1.86 s serial after the loop) -> 83-119 us inside the loop; finalize 159-205 ->
141-206 us; usage 23-33 us (0.21-0.81 s wall) either way; all processes 771-935 -> 654-1,008 us. One process
(`--workers 0`): this process 774 / 704 -> 629 / 718 us. The invoice files, the store's records and the ClickHouse
ledger rows of a 2,000-customer close are identical before and after. Not measured here: the quiet wall clock
(the machine was never idle); what is left per invoice: this process ~320-440 us (SQLite inserts and events ~160,
ledger ~100), the worker ~330 (pricing, from_v1, validate), the file writer ~70.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PERIOD = "2026-10"
TENANT = "bench"
PLAN = "bench-five-meters"
METERS = {
    "api_calls": {
        "model": "graduated",
        "tiers": [
            {"up_to": "10000", "unit_amount": "0"},
            {"up_to": "1000000", "unit_amount": "0.00002"},
            {"up_to": None, "unit_amount": "0.000012"},
        ],
    },
    "storage_gb_hours": {"model": "unit", "unit_amount": "0.000137"},
    "seats": {
        "model": "volume",
        "minimum": "5",
        "tiers": [
            {"up_to": "10", "unit_amount": "12", "flat_amount": "0"},
            {"up_to": None, "unit_amount": "9", "flat_amount": "0"},
        ],
    },
    "egress_gb": {"model": "package", "package_size": "100", "package_amount": "4.5", "rounding": "up"},
    "build_minutes": {
        "model": "graduated",
        "tiers": [{"up_to": "500", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0.008"}],
    },
}
QUANTITY = {  # (low, high, scale): quantities per event
    "api_calls": (1, 50_000, 0),
    "storage_gb_hours": (1, 5_000_000, 3),
    "seats": (1, 30, 0),
    "egress_gb": (1, 40_000, 2),
    "build_minutes": (1, 900, 0),
}


def catalog_doc() -> dict:
    return {
        "version": 1,
        "plans": [{"id": PLAN, "name": "Bench, five meters", "currency": "USD", "meters": METERS}],
        "assignments": [{"tenant": TENANT, "customer": "*", "plan": PLAN}],
    }


def populate(client, db: str, catalog, customers: int, per_meter: int, advance=None) -> int:
    """Insert the synthetic deduplicated rows; returns how many. `advance(done, total)`: customers done (a bar)."""
    import random

    from meterstream.aggregation.rows import RATED_COLUMNS
    from meterstream.rating import delta

    rng = random.Random(42)
    plan = catalog.plan_for(TENANT, "c-0")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    span_ms = 31 * 86_400_000 - 1
    cols: list[list] = [[] for _ in RATED_COLUMNS]
    rows = offset = 0
    chunk = 200_000

    def flush() -> None:
        nonlocal cols
        if cols[0]:
            client.insert(f"{db}.rated_usage", cols, column_names=list(RATED_COLUMNS), column_oriented=True)
            cols = [[] for _ in RATED_COLUMNS]

    for c in range(customers):
        if advance is not None and c % 1000 == 0:
            advance(c, customers)
        customer = f"cust-{c:06d}"
        for meter, (lo, hi, scale) in QUANTITY.items():
            price = plan.prices[meter]
            before = None
            for _ in range(per_meter):
                q = Decimal(rng.randint(lo, hi)).scaleb(-scale)
                after = (before or Decimal(0)) + q
                amount = delta(price, before, after)
                before = after
                values = (
                    TENANT,
                    f"e-{offset:010d}",
                    customer,
                    "",
                    meter,
                    start + timedelta(milliseconds=rng.randrange(span_ms)),
                    PERIOD,
                    q,
                    amount,
                    after,
                    "USD",
                    PLAN,
                    meter,
                    {},
                    "bench",
                    offset % 4,
                    offset,
                )
                for col, v in zip(cols, values, strict=True):
                    col.append(v)
                offset += 1
                rows += 1
                if len(cols[0]) >= chunk:
                    flush()
    flush()
    if advance is not None:
        advance(customers, customers)
    return rows


def run_one(customers: int, per_meter: int, profile: Path | None, work: Path, pdfs: int = 0,
            with_drafts: bool = False, workers: int | None = None) -> dict:  # fmt: skip
    from meterstream.aggregation.client import connect
    from meterstream.aggregation.ddl import create_schema
    from meterstream.deploy.cli_common import is_terminal, progress
    from meterstream.invoice_emitter.close import close_period
    from meterstream.rating.catalog import load_catalog

    bar = is_terminal(sys.stderr)  # progress bars on a terminal only (the parent passes its stderr through)
    work.mkdir(parents=True)
    cat_path = work / "catalog.json"
    cat_path.write_text(json.dumps(catalog_doc()))
    catalog = load_catalog(cat_path)
    client = connect(dsn=f"chdb://{work / 'clickhouse'}")
    db = "meterstream"
    create_schema(client, db)
    t0 = time.perf_counter()
    with progress(f"[close-bench] {customers:,} customers: rows", customers) as advance:
        rows = populate(client, db, catalog, customers, per_meter, advance if bar else None)
    t_pop = time.perf_counter() - t0
    print(f"[close-bench] {customers} customers: {rows} rows inserted in {t_pop:.1f}s", file=sys.stderr)
    out_dir = work / "invoices"
    drafts = refresh_drafts(client, db, catalog, out_dir) if with_drafts else migrate_store(out_dir)
    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    r0 = _rusage()
    c0, t0 = os.times(), time.perf_counter()
    with progress(f"[close-bench] close, {customers:,} customers", customers) as advance:  # invoices written
        result = close_period(client, db, catalog, PERIOD, out_dir, producer=None, progress=advance if bar else False,
                              workers=workers)  # fmt: skip
    seconds, c1 = time.perf_counter() - t0, os.times()
    r1 = _rusage()
    if prof is not None:
        prof.disable()
        profile.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(profile / f"close-{customers}.prof"))
    invoices = len(result.invoices)
    cpu = sum(c1[:4]) - sum(c0[:4])  # user + sys of this process and its waited children (file writer, workers)
    pdf = render_pdfs(result.files, pdfs, work / "pdf")
    return {
        "customers": customers,
        "meters_per_customer": len(METERS),
        "rows": rows,
        "populate_seconds": round(t_pop, 2),
        "seconds": round(seconds, 3),
        "invoices": invoices,
        "invoices_per_s": round(invoices / seconds, 1),
        "workers": workers,  # None: the close's default (a worker while a core is spare)
        "progress_bar": bar,  # the close drew a bar (stderr a terminal): a redraw thread ran during the timing
        # CPU microseconds per invoice (user + sys, all processes of the close): less noisy than the wall clock
        "cpu_us_per_invoice": round(cpu / invoices * 1e6) if invoices else None,
        # of which this process alone (the rest: the file writer and the forked workers)
        "cpu_self_us_per_invoice": round((sum(c1[:2]) - sum(c0[:2])) / invoices * 1e6) if invoices else None,
        "unreconciled": len(result.unreconciled),
        # CPU of the close, this process and its helper (file writer): user and kernel seconds
        "cpu_user_s": round(c1.user - c0.user + c1.children_user - c0.children_user, 2),
        "cpu_sys_s": round(c1.system - c0.system + c1.children_system - c0.children_system, 2),
        "load_1m": os.getloadavg()[0],  # other work on the machine (the figures are noisy under load)
        # per invoice: user and kernel CPU us, and page faults (minor: memory first touched or copied on write
        # after a fork; these are most of the kernel time), of this process (`self`) and of its waited children
        # (`children`: the forked workers and the file writer)
        **_per_invoice(r0, r1, invoices),
        # this process's phases of the close (`CloseResult.phases`): wall seconds and CPU us per invoice (all its
        # threads, embedded ClickHouse's included; not the workers' nor the file writer's). `loop` holds `finalize`
        # and `documents`; its wall minus its CPU is mostly this process waiting for the forked worker's results
        "phases": {
            name: {"wall_s": round(wall, 3), "cpu_us_per_invoice": round(cpu / invoices * 1e6) if invoices else None}
            for name, (wall, cpu) in result.phases.items()
        },
        **drafts,
        **pdf,
    }


def _rusage() -> dict[str, tuple[float, float, int]]:
    import resource

    out = {}
    for who, flag in (("self", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN)):
        r = resource.getrusage(flag)
        out[who] = (r.ru_utime, r.ru_stime, r.ru_minflt)
    return out


def _per_invoice(r0: dict, r1: dict, invoices: int) -> dict:  # type: ignore[type-arg]
    if not invoices:
        return {}
    out = {}
    for who in ("self", "children"):
        (u0, s0, f0), (u1, s1, f1) = r0[who], r1[who]
        out[f"{who}_user_us_per_invoice"] = round((u1 - u0) / invoices * 1e6)
        out[f"{who}_sys_us_per_invoice"] = round((s1 - s0) / invoices * 1e6)
        out[f"{who}_minor_faults_per_invoice"] = round((f1 - f0) / invoices, 1)
    return out


def refresh_drafts(client, db: str, catalog, out_dir: Path) -> dict:  # type: ignore[no-untyped-def]
    """The open period's drafts kept current before the close (`--with-drafts`): the close's own invoice store
    (`close._own_records`, the file the close given no store uses) created and migrated, then one draft refresh of
    the period into it (`close.draft_period`, as `meterstream up` runs it), each timed."""
    from meterstream.invoice_emitter.close import _own_records, draft_period

    t0 = time.perf_counter()
    store = _own_records(out_dir)
    migrate_s = time.perf_counter() - t0
    c0, t0 = os.times(), time.perf_counter()
    result = draft_period(client, db, catalog, PERIOD, store)
    seconds, c1 = time.perf_counter() - t0, os.times()
    if result.failed:
        raise SystemExit(f"draft refresh: {len(result.failed)} customers failed, first {result.failed[0]}")
    store.sf.kw["bind"].dispose()  # the close opens the file again
    print(f"[close-bench] drafts of {len(result.invoices)} customers stored in {seconds:.1f}s", file=sys.stderr)
    return {"with_drafts": True, "drafts": len(result.invoices), "drafts_seconds": round(seconds, 3),
            "drafts_cpu_s": round(c1.user - c0.user + c1.system - c0.system, 2),
            "store_migrate_seconds": round(migrate_s, 3)}  # fmt: skip


def migrate_store(out_dir: Path) -> dict:
    """The close's own invoice store (`close._own_records`) created and migrated before the timed close, timed
    apart (`store_migrate_seconds`): in production the store exists before any close, so its migration (mostly
    importing alembic) is not part of a close's cost. The close still checks it is at the head revision."""
    from meterstream.invoice_emitter.close import _own_records

    t0 = time.perf_counter()
    store = _own_records(out_dir)
    migrate_s = time.perf_counter() - t0
    store.sf.kw["bind"].dispose()  # the close opens the file again
    return {"store_migrate_seconds": round(migrate_s, 3)}


def render_pdfs(files: list[Path], count: int, out_dir: Path) -> dict:
    """PDF rendering, measured apart from the close: `count` of the close's invoice files (spread over the
    customers) rendered one after the other to PDF with `documents.render_invoice`, in this process. CPU seconds
    per PDF give PDFs per core per second; the first render (fonts, templates) is left out of the figures."""
    if count <= 0 or not files:
        return {}
    from meterstream.documents.render import render_invoice

    step = max(1, len(files) // (count + 1))
    chosen = files[::step][: count + 1]
    out_dir.mkdir(parents=True, exist_ok=True)
    render_invoice(chosen[0], out_dir, ("pdf",))  # warm-up: not counted
    c0, t0 = time.process_time(), time.perf_counter()
    for path in chosen[1:]:
        render_invoice(path, out_dir, ("pdf",))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    n = len(chosen) - 1
    return {"pdfs": n, "pdf_cpu_s": round(cpu, 3), "pdf_wall_s": round(wall, 3),
            "pdfs_per_core_s": round(n / cpu, 1) if cpu else None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", default="10000,100000", help="comma-separated sizes")
    ap.add_argument("--events-per-meter", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--pdfs", type=int, default=20, help="invoices rendered to PDF after the close, timed apart")
    ap.add_argument("--with-drafts", action="store_true",
                    help="keep the period's drafts current in the invoice store before the timed close")  # fmt: skip
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="forked pricing/issuing workers of the close (default: the close's: one while a core is spare; 0: none)",
    )
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one size, JSON on stdout
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)  # child: its work folder
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.events_per_meter, args.profile, args.work, args.pdfs,
                                 args.with_drafts, args.workers)))  # fmt: skip
        return 0
    results = []
    # Work folders (stores, invoice files) are removed after the last size, not between sizes: on this
    # machine's ext4 (no journal) creating files right after ~100,000 were deleted costs up to 10x more
    # kernel time (the allocator skips recently freed inodes), which is the bench's own doing, not the close's.
    base = Path(tempfile.mkdtemp(prefix="close-bench-"))
    try:
        for n in (int(x) for x in args.customers.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), "--events-per-meter", str(args.events_per_meter)]
            cmd += ["--work", str(base / str(n)), "--pdfs", str(args.pdfs)]
            if args.profile:
                cmd += ["--profile", str(args.profile)]
            if args.with_drafts:
                cmd += ["--with-drafts"]
            if args.workers is not None:
                cmd += ["--workers", str(args.workers)]
            # stderr passed through: the child's log lines as they come, and its bars when it is a terminal
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ))
            if done.returncode:
                raise SystemExit(f"close bench for {n} customers failed")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| customers | meters | rows | close seconds | invoices/s | unreconciled | CPU user / sys s | load "
          "| PDFs per core-second |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['customers']:,} | {r['meters_per_customer']} | {r['rows']:,} | {r['seconds']:.2f} "
            f"| {r['invoices_per_s']:,.0f} | {r['unreconciled']} | {r['cpu_user_s']} / {r['cpu_sys_s']} "
            f"| {r['load_1m']:.1f} | {r.get('pdfs_per_core_s', '-')} |"
        )
    doc = {"machine": f"{os.cpu_count()} cores, {os.uname().machine}", "runs": results}
    for r in results:
        doc[f"seconds_{r['customers']}"] = r["seconds"]
        doc[f"invoices_per_s_{r['customers']}"] = r["invoices_per_s"]
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
