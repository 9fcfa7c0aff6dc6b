"""`meterstream billing run`: close every period that has ended and is not closed yet, behind the close guards.

Which periods: the months after the last one in ClickHouse `period_closes` (with none closed yet: from the
earliest month with rated usage), up to the month before the current UTC month, in order (a close bills the
late usage of the periods closed before it). The current month is never closed. A period that has not ended
in some billed time zone stops the run quietly (`waiting`: the next run closes it). Before the first close
the run waits, up to `--wait` seconds, for the pipeline to process what was produced before it started
(`close_guards.pipeline_backlog`); a backlog still there at the deadline, or Kafka unreachable, refuses the
run (exit 1) with the guards' reason. Re-running changes nothing: every period it closed is in
`period_closes`.

Grace periods: customers whose `invoice_grace_days` have not passed since the period ended in their time zone
(`close_guards.in_grace`) are left out of the close (their drafts are kept current, `invoice_emitter/drafts.py`);
everyone else is finalized, and the period is not marked closed, so the next run comes back to it, finalizes
those whose grace has passed (the others keep their numbers: `close.py`), and marks it once nobody is left.
The run closes no later period meanwhile (`waiting` names the customers). Each run also marks the finalized
invoices past their due date overdue (`entities.invoices.mark_overdue`, today in UTC), then applies the dunning
steps that have come due (`invoice_emitter/dunning_run.py`, docs/dunning.md: reminders, late fees billed on the next
close, suspension and reactivation through the provisioning topic), before any close, so a late fee due before
a period ended is on that period's invoice, and writes the wallets' interval top-ups due by now
(`entities.wallets.interval_top_ups`, docs/wallets.md: each anniversary once; a failure is said in
`wallet_top_ups_error` and exits 1), and deletes the unmatched external events and Lago event errors received more
than `METERSTREAM_UNMATCHED_RETENTION_DAYS` ago (`purged`; a failure in `purge_error`, exit 1). A dunning failure
(Kafka down) is said in `dunning_error`, exits 1,
and does not stop the closes; the next run does the steps it could not. Each run then writes the MRR, ARR, churn
and net revenue retention of the previous and the current UTC month of every tenant with subscriptions to
ClickHouse's `revenue_monthly` (`cli_revenue.store_recent`, docs/analytics.md); a failure there is said in
`revenue_error`, exits 1 and does not stop the closes either.

`meterstream billing close --period P [--force] --json` is the same close as `meterstream close` with a JSON
answer (the API's POST /v1/billing/close runs it as a child process: a close pauses the garbage collector of
its process and takes a core for a while).

Inside `meterstream up`, `BillingScheduler` runs `meterstream billing run` as a child process at start and
then on `METERSTREAM_BILLING_SCHEDULE` (`daily@HH:MM`, UTC; `off` disables it), logs each run and writes its
metrics for Prometheus's textfile collector (`<home>/billing/metrics.prom`).

`meterstream billing drafts [--all]` brings the drafts of every open period up to date
(`invoice_emitter/drafts.py`; state in `<home>/billing/drafts-state.json`); inside `up`, `DraftScheduler` runs
it as a child process every `METERSTREAM_DRAFT_REFRESH_SECONDS` (default 60; 0: off), logged to `drafts.log`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterstream.schemas.settings import Settings, settings_from_env

if TYPE_CHECKING:
    from meterstream.deploy.close_guards import LagTargets

log = logging.getLogger("meterstream.billing")

EXIT_REFUSED = 3  # `billing close` and `close`: a guard refused (the message says why)


# --- the schedule (pure) ----------------------------------------------------------------------------------

_DAILY = re.compile(r"^daily@([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Daily:
    hour: int
    minute: int

    def next_after(self, now: datetime) -> datetime:
        """The first run time strictly after `now` (UTC)."""
        now = now.astimezone(UTC)
        at = now.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        return at if at > now else at + timedelta(days=1)


def parse_schedule(text: str) -> Daily | None:
    """`daily@HH:MM` (24-hour UTC clock) -> Daily; `off` -> None; anything else: ValueError naming the variable."""
    value = text.strip().lower()
    if value == "off":
        return None
    m = _DAILY.match(value)
    if m is None:
        raise ValueError(f"METERSTREAM_BILLING_SCHEDULE: must be 'daily@HH:MM' (UTC, e.g. daily@02:00) or 'off', "
                         f"got {text!r}")  # fmt: skip
    return Daily(int(m.group(1)), int(m.group(2)))


# --- which periods (pure) ---------------------------------------------------------------------------------


def _next_month(period: str) -> str:
    y, m = int(period[:4]), int(period[5:7])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def due_periods(closed: list[str], usage_periods: list[str], now: datetime) -> list[str]:
    """The periods a run closes, in order: after the last closed one (none closed: from the earliest with
    usage) up to the month before `now`'s UTC month. Nothing to start from -> []."""
    current = f"{now.astimezone(UTC):%Y-%m}"
    if closed:
        start = _next_month(max(closed))
    else:
        past = sorted(p for p in usage_periods if p < current)
        if not past:
            return []
        start = past[0]
    out = []
    while start < current:
        out.append(start)
        start = _next_month(start)
    return out


# --- the run (I/O) ----------------------------------------------------------------------------------------


@dataclass
class BillingRunResult:
    closed: list[str] = field(default_factory=list)  # periods closed (for every customer) by this run
    invoices: dict[str, int] = field(default_factory=dict)  # period -> invoices written
    failed: list[dict[str, str]] = field(default_factory=list)  # customers not invoiced (period, tenant, ...)
    waiting: str | None = None  # a due period that has not ended yet: the next run closes it
    refused: str | None = None  # the guards' reason, when the run gave up (lag, Kafka)
    in_grace: dict[str, list[str]] = field(default_factory=dict)  # period -> customers left for a later run
    overdue: int = 0  # invoices marked overdue by this run
    dunning: dict[str, Any] | None = None  # the collections step (DunningResult.to_json), None if it failed
    dunning_error: str | None = None
    revenue: dict[str, Any] | None = None  # revenue_monthly written (cli_revenue.store_recent), None if it failed
    revenue_error: str | None = None
    # the wallets' interval top-ups due by now (entities.wallets.interval_top_ups counts), None if it failed
    wallet_top_ups: dict[str, int] | None = None
    wallet_top_ups_error: str | None = None
    # rows past METERSTREAM_UNMATCHED_RETENTION_DAYS deleted (unmatched_events, lago_event_errors), None if it failed
    purged: dict[str, int] | None = None
    purge_error: str | None = None
    # subscription.started / .terminated events written by this run (the webhook dispatcher's backstop), None: failed
    announced: int | None = None

    @property
    def outcome(self) -> str:
        if self.refused:
            return "refused"
        if self.failed:
            return "failed_customers"
        return "closed" if self.closed or self.invoices else "nothing_to_do"

    @property
    def exit_code(self) -> int:
        errors = (self.dunning_error, self.revenue_error, self.wallet_top_ups_error, self.purge_error)
        return 1 if self.refused or self.failed or any(errors) else 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def store_client(settings: Settings) -> Any:
    """A client that may write the ClickHouse store (the front's writer while the sink owns an embedded one)."""
    from meterstream.aggregation.client import open_store

    # embedded store: through the sink's ClickHouse HTTP front (as its internal writer) while the sink owns it;
    # held by another process with no front to use: one line saying so (StoreHeld), chdb not opened
    return open_store(settings, writer=True)


def usage_periods(client: Any, db: str) -> list[str]:
    return [r[0] for r in client.query(f"SELECT DISTINCT period FROM {db}.rated_usage ORDER BY period").result_rows]


def close_one(
    settings: Settings,
    client: Any,
    period: str,
    out: Path,
    publish: bool,
    customers: set[tuple[str, str]] | None = None,
    exclude: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    store: Any = None,
) -> dict[str, Any]:
    """Close `period` (no guards here; `customers`: only these, `exclude`: all but these) and summarize it."""
    from meterstream.ingest.topics import Topics
    from meterstream.invoice_emitter.close import close_period
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import load_catalog

    producer = None
    if publish:
        from meterstream.ingest.producer import make_producer

        producer = make_producer(settings)
    result = close_period(client, settings.clickhouse_database, load_catalog(settings.catalog), period, out,
                          producer, Topics.from_settings(settings).invoices, progress=False,
                          store=store or StoreView.open(settings), customers=customers, exclude=exclude)  # fmt: skip
    return {
        "period": period,
        "customers": None if customers is None else [f"{t}/{c}" for t, c in sorted(customers)],
        "invoices": len(result.invoices),
        "totals": {c: str(t) for c, t in sorted(result.totals_by_currency.items())},
        "reissued": result.reissued,
        "unreconciled": len(result.unreconciled),
        "failed": [{"tenant": t, "customer": c, "reason": r} for t, c, r in result.failed],
        "directory": str(out / period),
    }


def drafts_state_file(settings: Settings) -> Path:
    return settings.home / "billing" / "drafts-state.json"


def run_drafts(
    settings: Settings,
    full: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    client: Any = None,
    only: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One refresh of the drafts (`invoice_emitter.drafts.refresh_drafts`), its state kept in the home; `only`
    (tenant, customer): that customer's drafts alone (`refresh_customer`)."""
    from meterstream.invoice_emitter.drafts import DraftState, refresh_drafts
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import load_catalog

    client = client if client is not None else store_client(settings)
    if only is not None:  # one customer, on request: the periodic refresh's state is left as it is
        from meterstream.invoice_emitter.drafts import refresh_customer

        one = refresh_customer(client, settings.clickhouse_database, load_catalog(settings.catalog),
                               StoreView.open(settings), now(), *only, cluster=settings.clickhouse_cluster)  # fmt: skip
        return one.to_json()
    path = drafts_state_file(settings)
    refresh, state = refresh_drafts(client, settings.clickhouse_database, load_catalog(settings.catalog),
                                    StoreView.open(settings), now(), DraftState.load(path), full=full,
                                    cluster=settings.clickhouse_cluster)  # fmt: skip
    state.save(path)
    return refresh.to_json()


def run_billing(
    settings: Settings,
    out: Path,
    wait_seconds: float = 600.0,
    publish: bool = True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    poll_seconds: float = 1.0,
    client: Any = None,
    stop: threading.Event | None = None,
) -> BillingRunResult:
    """Close every ended, unclosed period (see the module's docstring). Idempotent. `stop` set (SIGTERM of the
    CLI): the run ends while waiting or between two periods, never inside a close."""
    stop = stop or threading.Event()
    from meterstream.deploy.close_guards import check_close, grace_text, in_grace
    from meterstream.entities.invoices import mark_overdue
    from meterstream.ingest.lag import LagProbe
    from meterstream.invoice_emitter.ledger import closed_periods
    from meterstream.invoice_emitter.store_plans import StoreView

    client = client if client is not None else store_client(settings)
    db = settings.clickhouse_database
    result = BillingRunResult()
    store = StoreView.open(settings)
    today = now().astimezone(UTC).date()
    result.overdue = len(mark_overdue(store.sf, today))
    result.dunning, result.dunning_error = _dunning(settings, store.sf, today, publish)
    result.wallet_top_ups, result.wallet_top_ups_error = _wallet_top_ups(store.sf, now())
    result.revenue, result.revenue_error = _revenue(store.sf, client, db, now())
    result.purged, result.purge_error = _purge(store.sf, settings.unmatched_retention_days, now())
    result.announced = _announce(store.sf, now())
    due = due_periods(closed_periods(client, db), usage_periods(client, db), now())
    if not due:
        return result
    targets: LagTargets | None = None
    probe: LagProbe | None = None
    drained = False
    try:
        for period in due:
            if stop.is_set():
                result.refused = f"stopped before {period} was closed"
                return result
            report, targets = check_close(settings, period, store, now(), probe, targets)
            if not report.ended:
                result.waiting = report.end.text()
                log.info("billing run: %s; not closed yet", result.waiting)
                break
            deadline = time.monotonic() + wait_seconds
            while not drained:
                if report.kafka_problem is None and probe is None:
                    probe = LagProbe(settings)
                if report.backlog is not None and report.backlog.empty:
                    drained = True
                    break
                if time.monotonic() >= deadline:
                    result.refused = f"waited {wait_seconds:g}s: {report.message()}"
                    return result
                log.info("billing run: waiting for the pipeline (%s)", "; ".join(report.reasons))
                if stop.wait(poll_seconds):
                    result.refused = f"stopped while waiting: {report.message()}"
                    return result
                report, targets = check_close(settings, period, store, now(), probe, targets)
            grace = in_grace(store, period, now())
            summary = close_one(settings, client, period, out, publish,
                                exclude={(g.tenant, g.customer) for g in grace}, store=store)  # fmt: skip
            result.invoices[period] = summary["invoices"]
            result.failed += [{"period": period, **f} for f in summary["failed"]]
            if grace:  # closed for everyone else: the next run finalizes them once their grace has passed
                result.in_grace[period] = [f"{g.tenant}/{g.customer}" for g in grace]
                result.waiting = f"{period}: {grace_text(grace)}"
                log.info("billing run: %s closed but for %s", period, grace_text(grace))
                break
            result.closed.append(period)
            log.info("billing run: closed %s (%d invoices, %d customers failed)", period, summary["invoices"],
                     len(summary["failed"]))  # fmt: skip
    finally:
        if probe is not None:
            probe.close()
    return result


def _dunning(settings: Settings, sf: Any, today: Any, publish: bool) -> tuple[dict[str, Any] | None, str | None]:
    from meterstream.invoice_emitter.dunning_run import dunning_for_run

    try:
        return dunning_for_run(settings, sf, today, publish).to_json(), None
    except Exception as exc:  # Kafka down, a policy the rules refuse: said, and the closes still run
        log.error("billing run: dunning failed: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"


def _wallet_top_ups(sf: Any, at: datetime) -> tuple[dict[str, int] | None, str | None]:
    from meterstream.entities.wallets import interval_top_ups

    try:
        return dict(interval_top_ups(sf, at)), None
    except Exception as exc:  # the database gone mid-run: said; the anniversaries not written come next run
        log.error("billing run: wallet interval top-ups failed: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"


def _announce(sf: Any, at: datetime) -> int | None:
    """The subscriptions whose start or end has come and that the API's dispatcher has not announced (it was not
    running): their lifecycle webhooks (entities/subscriptions.announce_due). A failure is logged; the next run or
    the dispatcher does it."""
    from meterstream.entities.subscriptions import announce_due

    try:
        return announce_due(sf, at, limit=100_000)
    except Exception as exc:  # the database gone mid-run
        log.error("billing run: subscription announcements failed: %s", exc)
        return None


def _purge(sf: Any, days: int, at: datetime) -> tuple[dict[str, int] | None, str | None]:
    """Unmatched events and Lago event errors received more than `days` ago, deleted (0: kept for ever)."""
    from meterstream.entities import lago_event_errors, unmatched

    if days <= 0:
        return {"unmatched_events": 0, "lago_event_errors": 0}, None
    cutoff = at - timedelta(days=days)
    try:
        return {"unmatched_events": unmatched.purge_received_before(sf, cutoff),
                "lago_event_errors": lago_event_errors.purge_created_before(sf, cutoff)}, None  # fmt: skip
    except Exception as exc:  # the database gone mid-run: said; the next run deletes them
        log.error("billing run: purge of old unmatched events failed: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"


def _revenue(sf: Any, client: Any, db: str, at: datetime) -> tuple[dict[str, Any] | None, str | None]:
    from meterstream.deploy.cli_revenue import store_recent

    try:
        return store_recent(sf, client, db, at), None
    except Exception as exc:  # a plan missing from the store, ClickHouse refusing the insert: said, closes still run
        log.error("billing run: revenue_monthly not written: %s", exc)
        return None, f"{type(exc).__name__}: {exc}"


# --- the schedulers inside `meterstream up` ---------------------------------------------------------------


class ChildScheduler:
    """A `meterstream billing ...` command run as a child process, again and again, in a daemon thread of `up`:
    `run_once` (one child, its output appended to a log), `wait_next` (until the next run or `stop`). `stop` asks a
    child under way to end (SIGTERM) and kills it after `stop_timeout` seconds."""

    thread_name = "child-scheduler"
    stop_timeout = 30.0
    logs: Path  # where run_child appends the children's output (set by the subclass)

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.stopping = threading.Event()
        self.child: subprocess.Popen[str] | None = None
        self.thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """No new run; a run under way is asked to stop (SIGTERM) and killed if it has not ended after `timeout`
        seconds (default `stop_timeout`)."""
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(30)
        if self.thread.is_alive():
            self.thread.join(5)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a run that could not even start: said, tried again next time
                self.could_not_run(exc)
            self.wait_next()

    def run_once(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def could_not_run(self, exc: Exception) -> None:
        self.say(f"{self.thread_name}: could not run ({exc})")

    def wait_next(self) -> None:
        raise NotImplementedError

    def run_child(self, args: list[str], log_name: str, header: str, log_stdout: bool = False,
                  env: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | None]:  # fmt: skip
        """`meterstream <args>` as a child (stderr, and with `log_stdout` stdout too, appended to `<logs>/log_name`
        after `header`); (exit code, the JSON object of its last line of output or None)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / log_name, "a") as err:
            err.write(f"--- {header} {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n")
            err.flush()
            self.child = subprocess.Popen([sys.executable, "-m", "meterstream.deploy.cli", *args], env=env,
                                          stdout=subprocess.PIPE, stderr=err, text=True,
                                          start_new_session=True)  # fmt: skip  # Ctrl-C on `up` lets a close finish
            stdout, _ = self.child.communicate()
            if log_stdout:
                err.write(stdout)
        code = self.child.returncode
        self.child = None
        try:
            answer = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
        except ValueError:
            answer = None
        return code, answer


class BillingScheduler(ChildScheduler):
    """Runs `meterstream billing run` as a child process at start and then daily, in a thread of `up`.

    Each run's output is appended to `<logs>/billing.log`; after each run `<home>/billing/metrics.prom` is
    rewritten (Prometheus text format, for node_exporter's textfile collector): runs by outcome, periods
    closed, the last run's and the last successful run's times and the last exit code."""

    def __init__(self, schedule: Daily, env: dict[str, str], home: Path, logs: Path,
                 say: Callable[[str], None] = lambda msg: log.info(msg)) -> None:  # fmt: skip
        from prometheus_client import CollectorRegistry, Counter, Gauge

        super().__init__(say)
        self.schedule, self.env, self.home, self.logs = schedule, env, home, logs
        self.registry = CollectorRegistry()
        self.runs = Counter("meterstream_billing_runs", "Billing runs by outcome", ["outcome"],
                            registry=self.registry)  # fmt: skip
        self.periods = Counter("meterstream_billing_periods_closed", "Periods closed by billing runs",
                               registry=self.registry)  # fmt: skip
        self.last_run = Gauge("meterstream_billing_last_run_timestamp_seconds", "End of the last billing run",
                              registry=self.registry)  # fmt: skip
        self.last_ok = Gauge("meterstream_billing_last_success_timestamp_seconds",
                             "End of the last billing run that exited 0", registry=self.registry)  # fmt: skip
        self.last_code = Gauge("meterstream_billing_last_exit_code", "Exit code of the last billing run",
                               registry=self.registry)  # fmt: skip
        self.top_ups = Counter("meterstream_billing_wallet_interval_top_ups",
                               "Wallet interval top-ups (anniversaries) written by billing runs",
                               registry=self.registry)  # fmt: skip

    @property
    def metrics_file(self) -> Path:
        return self.home / "billing" / "metrics.prom"

    # a run under way is asked to stop (SIGTERM: at once while it waits for the pipeline, after the period it
    # is closing) and killed if it has not ended after a minute
    thread_name = "billing-scheduler"
    stop_timeout = 60.0

    def could_not_run(self, exc: Exception) -> None:  # said, counted, tried again next time
        self.runs.labels("error").inc()
        self._write_metrics()
        self.say(f"billing run: could not run ({exc})")

    def wait_next(self) -> None:
        wake = self.schedule.next_after(datetime.now(UTC))
        self.say(f"billing: next run {wake:%Y-%m-%dT%H:%MZ}")
        while not self.stopping.is_set() and datetime.now(UTC) < wake:
            self.stopping.wait(min(60.0, max(0.1, (wake - datetime.now(UTC)).total_seconds())))

    def run_once(self) -> dict[str, Any] | None:
        """One `meterstream billing run --json` child; its result (None if it printed none)."""
        code, answer = self.run_child(["billing", "run", "--json"], "billing.log", "billing run", env=self.env)
        outcome = answer["outcome"] if answer else "error"
        self.runs.labels(outcome).inc()
        if answer:
            self.periods.inc(len(answer["closed"]))
            self.top_ups.inc((answer.get("wallet_top_ups") or {}).get("written", 0))
        self.last_run.set_to_current_time()
        self.last_code.set(code)
        if code == 0:
            self.last_ok.set_to_current_time()
        self._write_metrics()
        self.say(f"billing run: {describe(answer) if answer else f'exit {code}, no result'} (log {self.logs})")
        return answer

    def _write_metrics(self) -> None:
        from prometheus_client import write_to_textfile

        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.metrics_file), self.registry)


class DraftScheduler(ChildScheduler):
    """Runs `meterstream billing drafts` as a child process every `interval` seconds, in a thread of `up`; each
    run's output goes to `<logs>/drafts.log`, and a run that fails or leaves customers without a draft is said."""

    thread_name = "draft-refresh"
    stop_timeout = 30.0

    def __init__(self, interval: float, env: dict[str, str], logs: Path,
                 say: Callable[[str], None] = lambda msg: log.info(msg)) -> None:  # fmt: skip
        super().__init__(say)
        self.interval, self.env, self.logs = interval, env, logs

    def could_not_run(self, exc: Exception) -> None:  # said, tried again next time
        self.say(f"drafts: could not refresh ({exc})")

    def wait_next(self) -> None:
        self.stopping.wait(self.interval)

    def run_once(self) -> dict[str, Any] | None:
        code, answer = self.run_child(["billing", "drafts", "--json"], "drafts.log", "drafts", log_stdout=True,
                                      env=self.env)  # fmt: skip
        if self.stopping.is_set():
            return answer
        if code != 0 or answer is None:
            self.say(f"drafts: refresh failed (exit {code}; log {self.logs / 'drafts.log'})")
        elif answer["failed"]:
            self.say(f"drafts: {len(answer['failed'])} customers without a current draft (log "
                     f"{self.logs / 'drafts.log'})")  # fmt: skip
        return answer


def drafts_scheduler_for(env: dict[str, str], logs: Path, say: Callable[[str], None]) -> DraftScheduler | None:
    """The draft refresh `up` runs (None: METERSTREAM_DRAFT_REFRESH_SECONDS=0)."""
    interval = settings_from_env(env).draft_refresh_seconds
    return DraftScheduler(interval, env, logs, say) if interval > 0 else None


def scheduler_for(env: dict[str, str], home: Path, logs: Path, say: Callable[[str], None]) -> BillingScheduler | None:
    """The scheduler `up` runs (None: METERSTREAM_BILLING_SCHEDULE=off). ValueError for a bad schedule."""
    schedule = parse_schedule(settings_from_env(env).billing_schedule)
    return None if schedule is None else BillingScheduler(schedule, env, home, logs, say)


def describe(answer: dict[str, Any]) -> str:
    parts = [f"closed {', '.join(answer['closed'])}" if answer["closed"] else "nothing closed"]
    if answer.get("overdue"):
        parts.append(f"{answer['overdue']} invoices overdue")
    dunning = answer.get("dunning") or {}
    done = [f"{dunning[k]} {k.replace('_', ' ')}" for k in ("reminders", "late_fees", "suspended", "reactivated")
            if dunning.get(k)]  # fmt: skip
    if done:
        parts.append(f"dunning: {', '.join(done)}")
    if answer.get("dunning_error"):
        parts.append(f"dunning failed: {answer['dunning_error']}")
    if answer.get("revenue_error"):
        parts.append(f"revenue_monthly not written: {answer['revenue_error']}")
    if (answer.get("wallet_top_ups") or {}).get("written"):
        parts.append(f"{answer['wallet_top_ups']['written']} wallet interval top-ups")
    if answer.get("wallet_top_ups_error"):
        parts.append(f"wallet interval top-ups failed: {answer['wallet_top_ups_error']}")
    purged = sum((answer.get("purged") or {}).values())
    if purged:
        parts.append(f"{purged} unmatched events and Lago event errors past their retention deleted")
    if answer.get("purge_error"):
        parts.append(f"purge of old unmatched events failed: {answer['purge_error']}")
    if answer.get("waiting"):
        parts.append(f"waiting: {answer['waiting']}")
    if answer.get("refused"):
        parts.append(f"refused: {answer['refused']}")
    if answer.get("failed"):
        parts.append(f"{len(answer['failed'])} customers not invoiced")
    return "; ".join(parts)


# --- CLI --------------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else settings.invoices_dir
    wait = settings.billing_wait_seconds if args.wait is None else args.wait
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # end between periods, never inside a close
    result = run_billing(settings, out, wait, publish=not args.no_publish, stop=stop)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"billing run: {describe(result.to_json())}")
        for f in result.failed:
            print(f"error: {f['period']} {f['tenant']}/{f['customer']} not invoiced: {f['reason']}", file=sys.stderr)
        if result.refused:
            print(f"refused: {result.refused}", file=sys.stderr)
    return result.exit_code


def _drafts(args: argparse.Namespace, settings: Settings) -> int:
    only = None
    if getattr(args, "customer", None):
        from meterstream.deploy.close_guards import resolve_tenant
        from meterstream.invoice_emitter.store_plans import StoreView

        try:
            only = (resolve_tenant(store_client(settings), settings.clickhouse_database, StoreView.open(settings),
                                   args.customer, args.tenant), args.customer)  # fmt: skip
        except ValueError as exc:
            print(json.dumps({"error": "invalid", "field": str(exc).split(":", 1)[0], "message": str(exc)}))
            print(f"meterstream billing drafts: error: {exc}", file=sys.stderr)
            return 2
    answer = run_drafts(settings, full=args.all, only=only)
    if args.json:
        print(json.dumps(answer))
    else:
        who = "all customers" if answer["customers"] is None else f"{answer['customers']} customers with new usage"
        if only is not None:
            who = f"customer {only[0]}/{only[1]}"
        print(f"drafts: {answer['drafts']} written for {', '.join(answer['labels']) or 'no open period'} ({who}, "
              f"{answer['seconds']:.1f}s)")  # fmt: skip
        for f in answer["failed"]:
            print(f"error: {f['period']} {f['tenant']}/{f['customer']} has no current draft: {f['reason']}",
                  file=sys.stderr)  # fmt: skip
    return 0


def _close(args: argparse.Namespace, settings: Settings) -> int:
    """A close with a JSON answer: 0 closed, 1 some customers not invoiced, 3 refused by a guard."""
    from meterstream.deploy.close_guards import check_period, close_refusal

    try:
        period = check_period(args.period)
    except ValueError as exc:
        print(json.dumps({"error": "invalid", "field": "period", "message": str(exc)}))
        print(f"meterstream billing close: error: {exc}", file=sys.stderr)  # for a person at the terminal too
        return 2
    from meterstream.deploy.close_guards import resolve_tenant
    from meterstream.invoice_emitter.store_plans import StoreView

    out = Path(args.out) if args.out else settings.invoices_dir
    client = store_client(settings)
    store = StoreView.open(settings)
    customers = None
    if args.customer:
        try:
            tenant = resolve_tenant(client, settings.clickhouse_database, store, args.customer, args.tenant)
        except ValueError as exc:
            field_name = str(exc).split(":", 1)[0]
            print(json.dumps({"error": "invalid", "field": field_name, "message": str(exc)}))
            print(f"meterstream billing close: error: {exc}", file=sys.stderr)
            return 2
        customers = {(tenant, args.customer)}
    if not args.force:
        reason = close_refusal(settings, period, client, store, customers, end_grace=args.end_grace)
        if reason:
            print(json.dumps({"error": "refused", "message": reason}))
            return EXIT_REFUSED
    summary = close_one(settings, client, period, out, publish=not args.no_publish, customers=customers, store=store)
    if customers and not summary["invoices"] and not summary["failed"]:  # the one customer asked for: nothing
        from meterstream.deploy.cli_close import nothing_to_invoice

        message = nothing_to_invoice(*next(iter(customers)), period, client, settings.clickhouse_database)
        print(json.dumps({"error": "invalid", "field": "customer", "message": message}))
        print(f"meterstream billing close: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps({**summary, "forced": bool(args.force)}))
    return 1 if summary["failed"] else 0
