"""Period close: deduplicated usage from ClickHouse -> finalized invoices (records, files, table, topic).

A period is closed once. Closing it again re-issues the stored documents unchanged (final invoices
never change); usage of a closed period that arrives later is billed as adjustment lines on the next
close (see `adjustments.py`). Each customer's lines are computed as before (`document.py`, the subscription
path), then issued as the version 2 document (`issue.py`: issuer, buyer, dates, per-user section, taxes,
totals) and finalized with its gapless number in the invoice store (`records.py`), one transaction per
customer; the file, the tables and the topic carry that numbered document. Documents are deterministic (no
wall clock inside), files are rewritten atomically, tables are keyed by (tenant, customer, period), and
topic consumers key on the document's `id`.
"""

from __future__ import annotations

import gc
import pickle
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import orjson
from clickhouse_connect.driver.client import Client

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord, period_records, period_usage
from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.close_lock import close_lock
from meterstream.invoice_emitter.closed import earlier_closed, issued_documents
from meterstream.invoice_emitter.document import MeterPricer, empty_invoice, invoice_and_differences, with_lines
from meterstream.invoice_emitter.documents_list import Documents
from meterstream.invoice_emitter.files import DocumentFiles, Progress, file_name, file_paths, write_documents
from meterstream.invoice_emitter.issue import Issuing, issue_draft
from meterstream.invoice_emitter.ledger import (
    billed_details,
    billed_lines,
    billed_quantities,
    closed_periods,
    mark_closed,
    store_encoded,
    store_invoices,
    stored_invoices,
)
from meterstream.invoice_emitter.parallel import CpuWindow, ordered_map, spare_cores
from meterstream.invoice_emitter.phases import Phases
from meterstream.invoice_emitter.records import EncodedDraft, EncodedFinal, Recorder
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.invoice_emitter.store_terms import with_store_terms
from meterstream.invoice_emitter.subjects import line_subjects, period_subjects, with_subject_quantities
from meterstream.invoice_emitter.subscription_close import SubscriptionClose, no_subscription_reason, subscription_close
from meterstream.invoice_emitter.subscription_invoice import with_periods
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Catalog
from meterstream.rating.money import EXACT, minor_units
from meterstream.schemas.invoice import InvoiceDoc
from meterstream.schemas.invoice import encode as encode_doc
from meterstream.schemas.settings import get_settings

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class CloseResult:
    period: str
    invoices: Sequence[dict[str, Any]] = field(default_factory=list)  # `Documents` from a close: decoded when read
    files: list[Path] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)  # lines whose streamed amount differs
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, customer, reason): not invoiced
    reissued: bool = False  # the period was already closed: stored documents, unchanged
    # where this process spent the close: {phase: (wall s, CPU s)} (`phases.py`; the bench reports them)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def totals_by_currency(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            out[inv["currency"]] = EXACT.add(out[inv["currency"]], Decimal(inv["total"]))
        return dict(out)


Failure = tuple[str, str, str]  # (tenant, customer, reason)


def with_credits_that_fit(
    doc: dict[str, Any], late: list[dict[str, Any]], issue: Callable[[list[dict[str, Any]]], InvoiceDoc]
) -> InvoiceDoc | None:
    """The draft of `doc` with its `late` lines (`issue(lines)` builds it), with no more of the late-usage credits
    (adjustment lines with a negative amount) than keep its total at zero or more; None when nothing is left.

    An invoice is never negative (the store refuses it), and a late-usage credit (a volume tier that makes the
    period cheaper once more usage arrived) can exceed everything else the customer is billed this time: that
    customer used to fail at every close, its fees and usage not invoiced either, until its charges grew past the
    credit. Now the rest is invoiced with as much credit as it takes: credits in their order (earlier periods
    first, then by line key), each whole when the total stays at zero or more, then a part of the first one left
    that has a quantity (`_part_of`: the most, in minor units, that keeps the total at zero or more). What is not
    billed is simply not on the invoice: the ledger still owes it (the next close computes the period's adjustment
    again from what the invoices billed), so the rest of a credit goes on the next invoices (its last part with
    the quantity). The same draft as before whenever the total is not negative; a total negative for another
    reason is left to the store, which refuses it as before."""
    draft = issue(late)
    if draft.total >= 0:
        return draft
    credits = [i for i, line in enumerate(late) if line.get("kind") == "adjustment" and Decimal(line["amount"]) < 0]
    # a credit of the catalog file's lines with no quantity is billed now or never: `late_adjustments` offers a
    # customer's late usage again only while a billed quantity differs, so one left out would be lost (a price that
    # went down; subscription lines are recomputed at every close)
    optional = [i for i in credits if _offered_again(late[i])]
    left_out = set(optional)

    def lines(part: tuple[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The late lines but those left out; `part`: (i, line), credit i in its place as `line` instead."""
        at, instead = part if part is not None else (-1, None)
        return [instead if j == at else line for j, line in enumerate(late) if j not in left_out or j == at]

    best = issue(lines()) if doc["lines"] or len(left_out) < len(late) else None
    if best is not None and best.total < 0:
        return draft  # negative without the credits that may wait: the store refuses it as before
    taken = []
    for i in optional:
        left_out.discard(i)
        trial = issue(lines())
        if trial.total >= 0:
            best = trial
            taken.append(i)
        else:
            left_out.add(i)
    if best is None:
        return None
    currency = doc["currency"]
    if best.total > 0 and left_out:  # the most of the first credit left out that keeps the total at 0 or more
        first = min(left_out)
        left_out.discard(first)
        part = _part_of(late[first], currency, lambda line: issue(lines((first, line))), whole=False)
        left_out.add(first)
        return part or best
    if best.total == 0 and taken:  # the last credit taken may be larger than it takes to reach 0 (its part would do)
        last = taken[-1]
        return _part_of(late[last], currency, lambda line: issue(lines((last, line))), whole=True) or best
    return best


def _offered_again(credit: dict[str, Any]) -> bool:
    """Whether a later close computes this credit again if this invoice leaves it out (or takes only a part of it):
    a subscription line (recomputed at every close), or one with a quantity (`late_adjustments` looks again while
    the billed quantity differs; a credit's last part carries its quantity)."""
    return str(credit.get("line_key", "")).startswith("@") or Decimal(credit["quantity"]) != 0


def _part_of(
    credit: dict[str, Any], currency: str, issue: Callable[[dict[str, Any]], InvoiceDoc], whole: bool
) -> InvoiceDoc | None:
    """The draft with a part of `credit` (a whole number of minor units, less than all of it) in its place
    (`issue(line)` builds the draft with the credit replaced by `line`), or None: the largest part that keeps the
    total at zero or more (when the whole credit does not: `whole` False), then, if that brings the total to 0, the
    smallest part that still does, so that the credit does not take the place of a coupon (a discount never takes
    more than what the lines leave: past 0, more credit would only shrink it, and a coupon is used up by an invoice
    it took nothing from). Found by halving (taxes and rounding make the total a step function of the part). The
    part is a line of quantity 0 (its subjects at 0 each, 0 billed units, 0 streamed): the late usage's quantity
    goes with the credit's last part, so a close sees the period's quantity still unbilled and offers the rest."""
    digits = minor_units(currency)
    units = -int(Decimal(credit["amount"]).scaleb(digits))  # all of it, in minor units (> 0)

    def total_with(n: int) -> InvoiceDoc:
        return issue(_part_line(credit, format(Decimal(-n).scaleb(-digits), "f")))

    most, found = (units, None) if whole else (0, None)
    if not whole:
        low, high = 1, units - 1
        while low <= high:
            mid = (low + high) // 2
            trial = total_with(mid)
            if trial.total >= 0:
                most, found, low = mid, trial, mid + 1
            else:
                high = mid - 1
        if found is None or found.total != 0:
            return found
    low, high = 1, most  # the smallest part with a total of 0 (at most `most`, which has one)
    while low < high:
        mid = (low + high) // 2
        if total_with(mid).total <= 0:
            high = mid
        else:
            low = mid + 1
    if low == units:
        return None  # all of it: not a part
    smallest = total_with(low)
    return smallest if smallest.total == 0 else found


def _part_line(credit: dict[str, Any], amount: str) -> dict[str, Any]:
    """`credit` as a part of itself: `amount`, of quantity 0 (see `_part_of`)."""
    line = {**credit, "quantity": "0", "amount": amount, "precise_amount": amount}
    if "subject_quantities" in line:
        line["subject_quantities"] = dict.fromkeys(line["subject_quantities"], "0")
    if "streamed_amount" in line:
        line["streamed_amount"] = "0"
    if "billed_units" in line:
        line["billed_units"] = "0"
    if "breakdown" in line:  # telecom billed units: the one step, as the line
        line["breakdown"] = [{**step, "quantity": "0", "amount": amount} for step in line["breakdown"]]
    return line


Key = tuple[str, str]  # (tenant, customer)


def compute_invoices(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    only: set[tuple[str, str]] | None = None,
    finish: Callable[[tuple[str, str], dict[str, Any]], dict[str, Any] | None] | None = None,
    failed: list[Failure] | None = None,
    store_customers: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    skip: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    stage: Callable[[tuple[str, str], dict[str, Any]], Any] | None = None,
    workers: int | None = 0,
    phases: Phases | None = None,
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Each customer's invoice for `period` from the usage in ClickHouse now, priced with the catalog FILE's
    plans; plus unreconciled lines.

    Usage rated with a plan the file does not have belongs to the entity store's subscriptions: for
    `store_customers` (customers with a subscription) it is left to the subscription path; for anyone else
    the customer cannot be invoiced, like a customer with usage under two file plans. Such a customer is
    appended to `failed` (tenant, customer, reason) and the others are invoiced; without `failed`, ValueError.
    `finish(key, document)`, if given, gets each document as it is built and returns the one to keep (None:
    none). `only`: these customers alone; `skip`: not these (their invoice is issued, or they are in grace).
    `stage(key, document)`, if given, runs on each document first and `finish` gets what it returns (an
    `InvoiceDoc`, a reason text, None or a document dict); with `workers` >= 1 and at least `FORK_FROM`
    customers, `stage` and the pricing run in that many forked worker processes (`parallel.ordered_map`: in the
    same order, the same results), so `stage` must be pure; None: `WORKERS` while the machine has a core spare
    (`parallel.spare_cores`, judged over the reads), else none. `phases`: the reads timed as `usage`, the
    customers' loop as `loop`.
    """
    timed = phases or Phases()
    window = CpuWindow()  # whether a core is spare, judged over the reads (`spare_cores`)
    with timed("usage"):
        items = _usage_items(client, db, catalog, period, only, failed, store_customers, skip)
    forking = stage is not None and len(items) >= FORK_FROM
    if workers is None:  # the default: one worker while a core is spare; on a machine busy with other work, none
        workers = min(WORKERS, spare_cores(window)) if forking else 0
    with timed("loop"):
        return _priced_all(items, period, finish, stage, workers if forking else 0)


def _usage_items(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    only: set[tuple[str, str]] | None,
    failed: list[Failure] | None,
    store_customers: frozenset[tuple[str, str]] | set[tuple[str, str]],
    skip: frozenset[tuple[str, str]] | set[tuple[str, str]],
) -> list[tuple[Key, Any, list[MeterUsage], list[UsageRecord]]]:
    """`compute_invoices`' reads: each customer's (key, plan, usage rows, telecom records), in order."""
    usage = period_usage(client, db, period)
    if only is not None:
        usage = [u for u in usage if (u.tenant, u.customer) in only]
    if skip:
        usage = [u for u in usage if (u.tenant, u.customer) not in skip]
    plans = catalog.plans
    if store_customers:
        usage = [u for u in usage if u.plan in plans or (u.tenant, u.customer) not in store_customers]
    groups: dict[tuple[str, str], dict[str, list[MeterUsage]]] = defaultdict(dict)
    for u in usage:
        groups[(u.tenant, u.customer)].setdefault(u.plan, []).append(u)
    telecom_plans = sorted({u.plan for u in usage if (p := plans.get(u.plan)) and p.telecom is not None})
    records: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for r in period_records(client, db, period, telecom_plans):
        records[(r.tenant, r.customer)].append(r)
    items: list[tuple[Key, Any, list[MeterUsage], list[UsageRecord]]] = []
    for (tenant, customer), by_plan in sorted(groups.items()):
        reason = _cannot_invoice(tenant, customer, period, by_plan, catalog)
        if reason is not None:
            if failed is None:
                raise ValueError(reason)
            failed.append((tenant, customer, reason))
            continue
        ((plan_id, rows),) = by_plan.items()
        plan = plans[plan_id]
        items.append(((tenant, customer), plan, rows, records.get((tenant, customer), [])))
    return items


def _priced_all(
    items: list[tuple[Key, Any, list[MeterUsage], list[UsageRecord]]],
    period: str,
    finish: Callable[[tuple[str, str], dict[str, Any]], dict[str, Any] | None] | None,
    stage: Callable[[tuple[str, str], dict[str, Any]], Any] | None,
    workers: int,
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """`compute_invoices`' loop: each item priced (and staged), in order, here or in `workers` forked ones."""
    pricer = MeterPricer()  # each distinct (price, quantity) of this close is quoted once (per process)

    def priced(item: tuple[Key, Any, list[MeterUsage], list[UsageRecord]]) -> tuple[Any, list[str]]:
        """The customer's document (through `stage`, if given) and its unreconciled lines."""
        (tenant, customer), plan, rows, calls = item
        flagged: list[str] = []
        extra: list[dict[str, Any]] = []
        if plan.telecom is not None:
            extra, rerated, streamed = telecom_lines(plan, calls)
            if rerated != streamed:
                flagged.append(f"{tenant}/{customer}/telecom")
        doc, differ = invoice_and_differences(tenant, customer, period, plan, rows, extra, pricer)
        flagged += [f"{tenant}/{customer}/{meter}" for meter in differ]
        return (doc if stage is None else stage((tenant, customer), doc)), flagged

    if stage is not None and workers > 0:
        outcomes: Iterator[tuple[Any, list[str]]] = map(_from_worker, ordered_map(_for_parent(priced), items, workers))
    else:
        outcomes = map(priced, items)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    unreconciled: list[str] = []
    for (key, *_), (out, flagged) in zip(items, outcomes, strict=True):
        kept = out if finish is None else finish(key, out)
        if kept is not None:
            docs[key] = kept
        unreconciled += flagged
    return docs, unreconciled


FORK_FROM = 2000  # customers: from how many a close prices and issues in a forked worker (`workers`)
_STAGED = msgspec.msgpack.Encoder()
_UNSTAGED = msgspec.msgpack.Decoder(tuple[int, Any, list[str]])  # bytes (msgpack bin), text or None


def _for_parent(priced: Callable[[Any], tuple[Any, list[str]]]) -> Callable[[Any], bytes]:
    """`priced` as a worker runs it: its (outcome, unreconciled) as bytes (`_from_worker` reads them back). An
    issued draft goes as its JSON (`schemas.invoice.encode`), which the store numbers as it is
    (`records.EncodedDraft`), a reason as text, a version 1 dict pickled."""

    def run(item: Any) -> bytes:
        out, flagged = priced(item)
        if isinstance(out, InvoiceDoc):
            return _STAGED.encode((0, encode_doc(out), flagged))
        if out is None or isinstance(out, str):
            return _STAGED.encode((1, out, flagged))
        return _STAGED.encode((2, pickle.dumps(out), flagged))

    return run


def _from_worker(data: bytes) -> tuple[Any, list[str]]:
    tag, payload, flagged = _UNSTAGED.decode(data)
    if tag == 0:  # numbered by the store as it is (records.EncodedDraft): no decoding of the whole document here
        return EncodedDraft(payload), flagged  # type: ignore[arg-type]
    if tag == 1:
        return payload, flagged
    return pickle.loads(payload), flagged  # type: ignore[arg-type]  # the worker's own dict, made by this code


def _cannot_invoice(
    tenant: str, customer: str, period: str, by_plan: dict[str, list[MeterUsage]], catalog: Catalog
) -> str | None:
    """Why the file path cannot invoice this customer's usage (None: it can)."""
    unknown = sorted(p for p in by_plan if p not in catalog.plans)
    if unknown:
        return no_subscription_reason(tenant, customer, period, unknown[0])
    if len(by_plan) > 1:
        return f"plan: {tenant}/{customer} has usage under two plans in {period} ({', '.join(sorted(by_plan))})"
    return None


def late_adjustments(
    client: Client,
    db: str,
    catalog: Catalog,
    closed: str,
    period: str,
    failed: list[Failure] | None = None,
    store_customers: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    only: set[tuple[str, str]] | None = None,
) -> dict[tuple[str, str], tuple[str, str, list[dict[str, Any]]]]:
    """Adjustment lines, per customer, for usage of `closed` not billed by the invoices stored so far (the file
    path's lines; subscription lines are adjusted by `subscription_close`). `only`: for these customers alone
    (those `closed` is closed for, when it is not closed for everyone; those this close invoices)."""
    plans = catalog.plans
    now = {
        (u.tenant, u.customer, u.meter): u for u in period_usage(client, db, closed)
        if u.plan in plans or (u.tenant, u.customer) not in store_customers
    }  # fmt: skip
    billed = billed_quantities(client, db, closed, period, subscriptions=False)
    changed = {
        (t, c) for (t, c, m) in set(now) | set(billed)
        if (now[(t, c, m)].quantity if (t, c, m) in now else Decimal(0)) != billed.get((t, c, m), Decimal(0))
    }  # fmt: skip
    if only is not None:
        changed &= only
    if not changed:
        return {}
    docs, _ = compute_invoices(
        client, db, catalog, closed, only=changed, failed=failed, store_customers=store_customers
    )
    lines_billed = billed_lines(client, db, closed, period, subscriptions=False)
    # per subject: the usage now (telecom lines carry theirs) and the shares billed, for the late subjects
    by_meter = period_subjects(client, db, closed, sorted(plans))
    details = billed_details(client, db, closed, period, set(docs), subscriptions=False)
    out = {}
    for key in sorted(changed):
        doc = docs.get(key)
        if doc is None:  # usage never leaves the deduplicated table; nothing to adjust against
            continue
        now = with_subject_quantities(doc["lines"], by_meter.get(key))
        lines = adjustment_lines(now, lines_billed.get(key, {}), closed, doc["currency"], details.get(key))
        if lines:
            out[key] = (doc["plan"], doc["currency"], lines)
    return out


WORKERS = 1  # forked pricing/issuing processes of a large close (`close_period(workers=)`): 2 cores here
RECORD_BATCH = 1000  # invoices finalized per store transaction (records.py `finalize_many`)
RECORDS_FILE = "invoice-records.db"  # the invoice store of a close given no entity store (library use, tests)


def close_period(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    out_dir: Path,
    producer: Any = None,
    topic: str | None = None,
    progress: Progress = True,
    store: StoreView | None = None,
    issuing: Issuing | None = None,
    render: tuple[str, ...] = (),
    customers: Collection[Key] | None = None,
    exclude: Collection[Key] = (),
    workers: int | None = None,
) -> CloseResult:
    """Close `period` (YYYY-MM): compute, finalize, store and write every invoice; a closed period is re-issued.

    With `store` (the entity store), customers with subscriptions are invoiced per their subscriptions
    (`subscription_close`), buyers come from the customers' billing details and the invoice records are kept
    in it; without it, invoices come from the catalog file alone and their records are kept in a SQLite file
    of their own, `<out_dir>/invoice-records.db` (`meterstream close` and the demo always pass a store).
    `issuing`: issuer, tax table, issue date (default: from the process's settings, `METERSTREAM_ISSUER_*`;
    without them the demo issuer). `render`: also
    write these formats (html, pdf, png) next to each JSON file (`documents.render_invoice`). A customer
    that cannot be invoiced is in `CloseResult.failed` and the others are closed.

    `customers`: close only these (tenant, customer); `exclude`: every customer but these (the billing run's
    customers in their grace period). Either way the period is not marked closed in `period_closes` (that
    mark means every customer of it is closed, `closed.py`); customers whose invoice of the period is issued
    already are never computed again: their stored document is used as it is (same number, same amounts).
    `workers`: from `FORK_FROM` customers on, the pricing and issuing run in this many forked processes while
    this one numbers, stores and writes (`parallel.py`; 0: all here); the documents and numbers are the same.
    None (the default): `WORKERS` while the machine has a core spare, none when it is busy with other work
    (there a worker costs more CPU in all than it takes off this process). Closes of one entity store run one at a
    time (`close_lock`), so each reads what every other one billed."""
    if not PERIOD_RE.match(period):
        raise ValueError(f"period: must be YYYY-MM, got {period!r}")
    if store is None:
        store = _own_records(out_dir)
        own = True
    else:
        own = False
    recorder = Recorder(store.sf, with_store_terms(issuing or Issuing.from_settings(get_settings()), store.sf, period))
    scope = Scope(None if customers is None else frozenset(customers), frozenset(exclude))
    phases = Phases()
    # one close at a time per entity store: what this one reads as billed includes every other close's lines
    with close_lock(store.sf), phases("close"), _gc_paused(phases):
        result = _close(client, db, catalog, period, out_dir, producer, topic, progress, store, recorder, own, scope,
                        workers, phases)  # fmt: skip
    result.phases = phases.as_dict()
    if render:
        from meterstream.documents.render import render_invoice

        for path in result.files:
            render_invoice(path, path.parent, render)
    return result


def draft_period(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    store: StoreView,
    issuing: Issuing | None = None,
    customers: Collection[Key] | None = None,
) -> CloseResult:
    """The close of `period` in draft mode (`invoice_emitter/drafts.py`): every customer's invoice computed by the
    close's own code, from the usage in ClickHouse now, and stored as a DRAFT record (`Recorder.upsert_drafts`):
    no number, nothing finalized, no finalization mark, no `period_closes`, no ClickHouse ledger rows, no files,
    nothing published. Customers whose invoice of the period is issued are left alone; a period closed for
    everyone has no drafts. `customers`: only these. `CloseResult.invoices` are the drafts stored."""
    if not PERIOD_RE.match(period):
        raise ValueError(f"period: must be YYYY-MM, got {period!r}")
    recorder = Recorder(store.sf, with_store_terms(issuing or Issuing.from_settings(get_settings()), store.sf, period))
    scope = Scope(None if customers is None else frozenset(customers), frozenset(), drafting=True)
    with _gc_paused():
        return _close(client, db, catalog, period, Path("."), None, None, False, store, recorder, False, scope)


@dataclass(frozen=True)
class Scope:
    """Whom a close invoices: `only` these customers (None: everyone), never those in `exclude`; `drafting`:
    store drafts instead of finalizing (`draft_period`)."""

    only: frozenset[Key] | None = None
    exclude: frozenset[Key] = frozenset()
    drafting: bool = False

    @property
    def whole(self) -> bool:
        """A close of every customer of the period: the one that marks it in `period_closes`."""
        return self.only is None and not self.exclude and not self.drafting


class _NoFiles:
    """A draft refresh writes no files."""

    def add(self, doc: dict[str, Any]) -> None:
        pass

    def publish(self) -> list[Path]:
        return []

    def abort(self) -> None:
        pass


def _own_records(out_dir: Path) -> StoreView:
    """An invoice store of the close's own under `out_dir` (created and migrated: safe to repeat)."""
    from meterstream.entities.db import make_engine, migrate, session_factory

    out_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url=f"sqlite:///{(out_dir / RECORDS_FILE).resolve()}")
    migrate(engine=engine)
    return StoreView(session_factory(engine))


@contextmanager
def _gc_paused(phases: Phases | None = None) -> Iterator[None]:
    """No cyclic garbage collection during a close: it builds millions of long-lived, acyclic objects (the
    documents), and every full collection would walk all of them again (15-25% of a large close).
    Reference counting still frees everything the close drops; cycles wait until the close returns. The
    one young-generation pass over what the close allocated (which the first allocation after it would
    trigger anyway) runs here, so its cost stays in the close."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            with (phases or Phases())("gc"):
                gc.collect(0)


def _close(
    client: Client,
    db: str,
    catalog: Catalog,
    period: str,
    out_dir: Path,
    producer: Any,
    topic: str | None,
    progress: Progress,
    store: StoreView,
    recorder: Recorder,
    own_records: bool,
    scope: Scope = Scope(),
    workers: int | None = 0,
    phases: Phases | None = None,
) -> CloseResult:
    timed = phases or Phases()
    preparing = timed.start("prepare")
    wide = closed_periods(client, db)
    only = None if scope.only is None else set(scope.only)
    if period in wide:  # closed for everyone: its documents are final
        if scope.drafting:
            return CloseResult(period)
        invoices = stored_invoices(client, db, period)
        if only is not None:
            invoices = [d for d in invoices if (d["tenant"], d["customer"]) in only]
        return _published(CloseResult(period, invoices, reissued=True), out_dir, progress, producer, topic, [])
    issued = issued_documents(store.sf, period, only)  # closed alone before (or by an interrupted close)
    if only is not None and only <= set(issued) and not scope.drafting:
        result = CloseResult(period, [issued[k] for k in sorted(issued)], reissued=True)
        return _published(result, out_dir, progress, producer, topic, [])
    files: DocumentFiles | _NoFiles = _NoFiles() if scope.drafting else DocumentFiles(out_dir / period, progress)
    try:
        skip = set(issued) | set(scope.exclude)
        earlier_periods, partial = earlier_closed(store.sf, wide, period)
        failed: list[Failure] = []
        subs = SubscriptionClose()
        if not own_records:
            subs = subscription_close(client, db, store, catalog, period, earlier_periods,
                                      finalize=not scope.drafting, only=only, skip=skip, partial=partial)  # fmt: skip
            failed += subs.failed
        customers = store.customers()
        file_plans = sorted(catalog.plans)
        subjects = period_subjects(client, db, period, file_plans)
        # late usage of closed periods first, so that each document is final when built: its file
        # is written while the close goes on
        late: dict[tuple[str, str], list[tuple[str, str, str, list[dict[str, Any]]]]] = defaultdict(list)
        for earlier in earlier_periods:
            for_whom = partial.get(earlier)
            if only is not None:
                for_whom = only if for_whom is None else for_whom & only
            for key, (plan, currency, lines) in late_adjustments(
                client, db, catalog, earlier, period, failed, subs.customers, for_whom
            ).items():
                if key not in skip:
                    late[key].append((earlier, plan, currency, lines))
        for key, adjustments in subs.late.items():
            late[key] += adjustments
        bills = dict(subs.bills)

        blocked: set[tuple[str, str]] = set()  # customers in `failed`: no document at all this close
        seen = [0]  # how many entries of `failed` are in `blocked`

        def update_blocked() -> None:
            if seen[0] < len(failed):
                blocked.update((t, c) for t, c, _ in failed[seen[0] :])
                seen[0] = len(failed)

        def stage(key: tuple[str, str], doc: dict[str, Any], ahead: bool = True) -> InvoiceDoc | str | dict | None:
            """The pure part of `finish` (it may run in a worker process, `compute_invoices(workers=)`): the draft
            issued from `doc`, or the reason it cannot be, or None (no document). `ahead` (before `finish`): a
            customer with subscription lines is left to `finish` (`doc` as it is: its lines' subjects are read
            from ClickHouse), and one blocked or skipped gets None."""
            bill = bills.get(key)
            if ahead and (bill is not None or key in blocked or key in skip):
                return doc if bill is not None else None
            if bill is not None:
                if doc["currency"] != bill.currency:
                    return (f"currency: usage in {doc['currency']} under the catalog file's plan, "
                            f"subscriptions in {bill.currency}; an invoice has one currency")  # fmt: skip
                doc = with_periods(with_lines(doc, bill.lines), bill)
            late_lines: list[dict[str, Any]] = []
            for earlier, _, currency, lines in late.get(key, ()):
                if doc["currency"] != currency:
                    return f"currency: late {earlier} usage in {currency}, invoice in {doc['currency']}"
                late_lines += lines
            try:
                file_name(*key)  # a customer id that cannot name its file fails alone, before it is numbered
                by_line = line_subjects(client, db, *key, bill.lines, file_plans) if bill is not None else None

                def issue(lines: list[dict[str, Any]]) -> InvoiceDoc:
                    return issue_draft(with_lines(doc, lines) if lines else doc, recorder.issuing, customers.get(key),
                                       subjects.get(key), by_line)  # fmt: skip

                return with_credits_that_fit(doc, late_lines, issue)
            except ValueError as exc:
                return str(exc)

        def finish(key: tuple[str, str], staged: InvoiceDoc | str | dict | None) -> None:
            """Take the customer's staged outcome: a draft to finalize (in batches), a failure, or nothing."""
            update_blocked()
            if key in blocked or key in skip:  # blocked: its other lines are billed once it can be invoiced
                bills.pop(key, None)
                late.pop(key, None)
                return None
            if isinstance(staged, dict):  # not staged yet (subscription lines, or no stage before)
                staged = stage(key, staged, ahead=False)
            bills.pop(key, None)
            late.pop(key, None)
            if isinstance(staged, str):
                failed.append((*key, staged))
            elif staged is not None:
                drafts.append(staged)
                if len(drafts) >= RECORD_BATCH:
                    record()
            return None

        def record() -> None:
            """Finalize (or, drafting, store as drafts) the drafts built so far (numbers in the order built) and
            hand each to the files."""
            with timed("finalize"):
                stored = _upsert_drafts(recorder, drafts) if scope.drafting else recorder.finalize_many(drafts)
            documents = timed.start("documents")
            known = getattr(recorder, "encoded", None) or {}  # their compact JSON, already encoded by the store
            batch: list[bytes] = []  # the compact JSON of this batch's finalized documents, for the ledger
            for draft, issued_doc in zip(drafts, stored, strict=True):
                if isinstance(issued_doc, ValueError):  # the store's Invalid and Conflict are ValueErrors
                    failed.append((draft.tenant, draft.customer, str(issued_doc)))
                    continue
                key = (draft.tenant, draft.customer)
                if isinstance(issued_doc, EncodedFinal):  # numbered from its JSON (a worker's draft)
                    data: bytes | None = issued_doc.data
                else:
                    pair = known.get(id(issued_doc))
                    data = pair[1] if pair is not None and pair[0] is issued_doc else None
                if data is None or scope.drafting:
                    out = orjson.loads(data) if data is not None else msgspec.to_builtins(issued_doc)
                    files.add(out)
                    docs[key] = out
                else:  # its bytes as they are: the file re-indented, the ledger's fields read, no dict built
                    files.add_encoded(*key, data)
                    docs[key] = (*key, data)
                    batch.append(data)
                    ledgered.add(key)
            drafts.clear()
            timed.stop(documents)
            if batch:  # into ClickHouse now, while a forked worker prices the next customers
                with timed("ledger"):
                    store_encoded(client, db, batch)

        drafts: list[InvoiceDoc] = []
        # each customer's document: a dict, or (tenant, customer, its compact JSON) for `Documents`
        docs: dict[tuple[str, str], dict[str, Any] | tuple[str, str, bytes]] = {}
        ledgered: set[tuple[str, str]] = set()  # in ClickHouse's ledger already (`store_encoded`, per batch)
        if not scope.drafting:  # issued before: unchanged, with the others (files, ClickHouse, topic)
            for key in sorted(issued):
                files.add(issued[key])
                docs[key] = issued[key]
        update_blocked()  # `stage` ahead of `finish` (in a worker) knows those blocked before the customers' loop
        timed.stop(preparing)
        _, unreconciled = compute_invoices(
            client, db, catalog, period, only=only, finish=finish, failed=failed, store_customers=subs.customers,
            skip=skip, stage=stage, workers=workers, phases=timed,
        )  # fmt: skip
        unreconciled += subs.unreconciled
        for (tenant, customer), bill in sorted(bills.items()):  # subscription lines only
            finish((tenant, customer), empty_invoice(tenant, customer, period, bill.plan, bill.currency))
        for (tenant, customer), adjustments in sorted(late.items()):  # late usage only
            _, plan, currency, _ = adjustments[0]
            finish((tenant, customer), empty_invoice(tenant, customer, period, plan, currency))
        record()
        failed = sorted({(t, c): (t, c, r) for t, c, r in reversed(failed)}.values())  # the first reason of each
        if only is not None:
            failed = [f for f in failed if (f[0], f[1]) in only]
        result = CloseResult(period, Documents(docs[k] for k in sorted(docs)), unreconciled=unreconciled, failed=failed)
        if scope.drafting:
            return result
        with timed("ledger"):  # the documents not stored per batch (issued before; finalized one by one)
            store_invoices(client, db, [docs[k] for k in sorted(docs) if k not in ledgered])  # type: ignore[misc]
            if scope.whole:
                mark_closed(client, db, period)
        with timed("publish"):
            paths = files.publish()
    except BaseException:
        files.abort()
        raise
    return _published(result, out_dir, progress, producer, topic, paths)


def _published(
    result: CloseResult, out_dir: Path, progress: Progress, producer: Any, topic: str | None, paths: list[Path] | None
) -> CloseResult:
    """`result` with its files (written now when `paths` is empty and there are documents: a re-issue) and its
    documents sent to the invoices topic."""
    if not isinstance(result.invoices, Documents):
        result.invoices = Documents(result.invoices)
    invoices = result.invoices
    if invoices and not paths:
        write_documents(out_dir / result.period, list(invoices), progress)
    result.files = file_paths(out_dir / result.period, invoices.keys())
    if producer is not None and topic:
        for i, (tenant, customer) in enumerate(invoices.keys()):  # each document's compact JSON, as it is
            producer.produce(topic, key=f"{tenant}/{customer}".encode(), value=invoices.encoded(i))
            producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("invoices topic: not every document was delivered")
    return result


def _upsert_drafts(recorder: Recorder, drafts: list[InvoiceDoc]) -> list[Any]:
    """`Recorder.upsert_drafts` (bulk); per record through the store's own function where it is missing."""
    bulk = getattr(recorder, "upsert_drafts", None)
    if bulk is not None:
        return bulk(drafts)
    from meterstream.entities.invoices import upsert_draft
    from meterstream.schemas.invoice import encode

    out: list[Any] = []
    for d in drafts:
        try:
            upsert_draft(recorder.sf, tenant=d.tenant, invoice_id=d.id, customer=d.customer, period=d.period,
                         currency=d.currency, total=d.total, amount_due=d.amount_due, issue_date=d.issue_date,
                         due_date=d.due_date, document=encode(d))  # fmt: skip
            out.append(d)
        except ValueError as exc:
            out.append(exc)
    return out
