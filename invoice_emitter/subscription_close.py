"""The subscription half of a close: every customer with a subscription in the entity store (docs/billing.md).

For each such customer: the lines of the billing periods the close of `label` closes
(`subscription_invoice.customer_bill`), the late-usage adjustments for earlier closed labels (the same rule as
the file path: that label's lines recomputed now minus what was billed for it, by line key), and the
finalization mark (`entities.finalization.record_finalized`, until = the end of the newest period closed)
so that the store refuses back-dated changes into what is invoiced. A customer that cannot be billed is
reported in `failed` and the others are closed.

Race with a back-dated change: the mark is recorded after the customer's lines are built, then the customer's
subscriptions are read again; if one changed in between (its version moved), the lines are built again from
the new documents (a change committed after the mark is refused by the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from meterstream.aggregation.usage_query import rated_customers
from meterstream.billing.periods import label_window
from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.document import MeterPricer
from meterstream.invoice_emitter.ledger import billed_details, billed_lines
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.invoice_emitter.subjects import line_subjects, with_subject_quantities
from meterstream.invoice_emitter.subscription_invoice import CustomerBill, customer_bill
from meterstream.rating.catalog import Catalog
from meterstream.schemas.entities import DEFAULT_CUSTOMER, SubscriptionDoc

Key = tuple[str, str]
Late = tuple[str, str, str, list[dict[str, Any]]]  # (closed label, plan, currency, adjustment lines)


@dataclass
class SubscriptionClose:
    customers: set[Key] = field(default_factory=set)  # every customer with a subscription of their own
    bills: dict[Key, CustomerBill] = field(default_factory=dict)
    late: dict[Key, list[Late]] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)


def _versions(subs: list[SubscriptionDoc]) -> list[tuple[str, int]]:
    return sorted((s.external_id, s.version) for s in subs)


def _record_finalized() -> Any:
    """`entities.finalization.record_finalized` (issue #14, H3), or None where it does not exist."""
    try:
        from meterstream.entities.finalization import record_finalized
    except ImportError:  # pragma: no cover - a tree without the finalization store
        return None
    return record_finalized


def subscription_close(
    client: Client,
    db: str,
    store: StoreView,
    catalog: Catalog,
    label: str,
    earlier: list[str],
    finalize: bool = True,
    only: set[Key] | None = None,
    skip: set[Key] | frozenset[Key] = frozenset(),
    partial: dict[str, set[Key]] | None = None,
) -> SubscriptionClose:
    """Lines, late adjustments (for the closed labels `earlier`) and failures of every subscription customer
    (`only`: of these alone; never of those in `skip`). `partial`: earlier labels closed only for some customers
    (`closed.earlier_closed`); the others' usage of such a label is not late. `customers` lists every customer
    with a subscription whatever the filters (the file path leaves their store-plan usage to this path)."""
    out = SubscriptionClose()
    file_plans = sorted(catalog.plans)
    pricer = MeterPricer()
    record = _record_finalized() if finalize else None
    every = store.subscriptions()
    defaults = {t: subs for (t, c), subs in every.items() if c == DEFAULT_CUSTOMER}  # a tenant's default ones
    by_customer = {k: v for k, v in every.items() if k[1] != DEFAULT_CUSTOMER}
    # usage rated with a store plan of a customer without a subscription of its own, in the label's UTC month
    # and the closed ones before it (late usage): billed under the tenant's default subscription, usage only
    lo, hi = label_window(min([label, *earlier]), "UTC")[0], label_window(label, "UTC")[1]
    unbilled: dict[Key, str] = {}
    for tenant, customer, plan in rated_customers(client, db, lo, hi, file_plans):
        if (tenant, customer) not in by_customer:
            unbilled.setdefault((tenant, customer), plan)
    defaulted: set[Key] = set()
    for (tenant, customer), plan in unbilled.items():
        if tenant in defaults:
            by_customer[(tenant, customer)] = defaults[tenant]
            defaulted.add((tenant, customer))
        elif (only is None or (tenant, customer) in only) and (tenant, customer) not in skip:
            out.failed.append((tenant, customer, no_subscription_reason(tenant, customer, label, plan)))
    out.customers = set(by_customer)
    chosen = {k: v for k, v in by_customer.items() if (only is None or k in only) and k not in skip}
    if not chosen:
        return out
    partial = partial or {}
    billed = {closed: billed_lines(client, db, closed, label, subscriptions=True) for closed in earlier}
    for (tenant, customer), subs in chosen.items():
        key = (tenant, customer)
        fees = key not in defaulted
        try:
            late = []
            for closed in earlier:
                if closed in partial and key not in partial[closed]:  # still open for this customer
                    continue
                before = customer_bill(client, db, store, tenant, customer, subs, closed, file_plans, pricer,
                                       fees=fees)  # fmt: skip
                was = billed[closed].get(key, {})
                if before is None and not was:
                    continue
                currency = before.currency if before is not None else _currency(store, subs)
                now = [] if before is None else before.lines
                lines = adjustment_lines(now, was, closed, currency)
                if lines:  # late usage: what each subject used late, and telecom billed units (read only now)
                    if now:
                        by_key = line_subjects(client, db, tenant, customer, now, file_plans)
                        now = with_subject_quantities(now, by_key=by_key)
                    details = billed_details(client, db, closed, label, {key}, subscriptions=True).get(key)
                    lines = adjustment_lines(now, was, closed, currency, details)
                    late.append((closed, before.plan if before is not None else "", currency, lines))
            bill = customer_bill(client, db, store, tenant, customer, subs, label, file_plans, pricer, fees=fees)
            if bill is not None and record is not None and bill.until is not None:
                owner = DEFAULT_CUSTOMER if not fees else customer  # whose subscriptions priced the invoice
                # (the default subscription's boundary is the newest of any customer's: entities.finalization)
                record(store.sf, tenant, customer, bill.until)
                again = store.customer_subscriptions(tenant, owner)
                if _versions(again) != _versions(subs):  # changed while we were building: build again
                    bill = customer_bill(client, db, store, tenant, customer, again, label, file_plans, pricer,
                                         fees=fees)  # fmt: skip
                    if bill is not None and bill.until is not None:
                        record(store.sf, tenant, customer, bill.until)
        except (ValueError, LookupError) as exc:  # the store's NotFound is a LookupError
            out.failed.append((tenant, customer, str(exc)))
            continue
        if late:
            out.late[key] = late
        if bill is not None:
            out.bills[key] = bill
            out.unreconciled += bill.unreconciled
    return out


def no_subscription_reason(tenant: str, customer: str, label: str, plan: str) -> str:
    """Why usage rated with a store plan cannot be invoiced: no subscription of the customer nor of the tenant."""
    return (f"plan: usage of {tenant}/{customer} in {label} was rated with plan {plan!r}, which is neither in the "
            f"catalog file nor a plan of a subscription of the customer, and the tenant has no default "
            f"subscription (customer '*')")  # fmt: skip


def _currency(store: StoreView, subs: list[SubscriptionDoc]) -> str:
    """The currency of a customer's subscriptions (their first phase's plan)."""
    first = subs[0].phases[0]
    return store.lookup(subs[0].tenant)(first.plan_code, first.plan_version, first.start).currency
