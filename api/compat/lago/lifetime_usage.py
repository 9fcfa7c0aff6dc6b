"""Lago's lifetime usage of a subscription: `GET /compat/lago/api/v1/subscriptions/{external_id}/lifetime_usage`
(lago-python-client: `subscriptions.lifetime_usage(external_id)`), the route in entity_routes.py.

`{"lifetime_usage": {...}}` with:

- `invoiced_usage_amount_cents`: the usage fees (lines of kind usage and adjustment, add-ons aside: Lago's
  `charge` fees, fees.py `fee_type`) of the subscription on its issued invoices that stand (finalized, partially
  paid, paid, overdue: fees.py `issued`; not drafts, not voided), before coupons and taxes, in cents, each line
  rounded as its fee;
- `current_usage_amount_cents`: `customers.current_usage` of the subscription now (`amount_cents`), 0 when it is
  not active (not started yet, or ended) or was recorded without a plan;
- `external_historical_usage_amount_cents`: 0 (the `PUT` that sets it in Lago is not supported);
- `from_datetime`: the subscription's start, `to_datetime`: now;
- `usage_thresholds`: `[]` (no progressive billing here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from meterstream.api.compat.lago import models as m
from meterstream.api.compat.lago.fees import CHARGE_KINDS, issued
from meterstream.api.compat.lago.invoices import _cents
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.documents.stored import StoredDocumentError, document_of
from meterstream.entities import invoices
from meterstream.invoice_emitter.one_off import is_add_on_line
from meterstream.schemas.event import format_time


class LifetimeUsageObject(m._Open):
    lago_id: str
    lago_subscription_id: str
    external_subscription_id: str
    external_historical_usage_amount_cents: int
    invoiced_usage_amount_cents: int
    current_usage_amount_cents: int
    from_datetime: str | None
    to_datetime: str | None
    usage_thresholds: list[dict[str, Any]]


class LifetimeUsageOut(BaseModel):
    lifetime_usage: LifetimeUsageObject


def invoiced_usage_cents(records: Iterable[invoices.Invoice], subscription: str) -> int:
    """The usage fees of `subscription` on these invoices, in cents (pure; a document that does not read: none)."""
    total = 0
    for record in records:
        try:
            doc = document_of(record.document)
        except StoredDocumentError:
            continue
        for line in doc.lines:
            if line.subscription == subscription and line.kind in CHARGE_KINDS and not is_add_on_line(line.line_key):
                total += _cents(line.amount, doc.currency)
    return total


def lifetime_usage(
    sf: Any, tenant: str, subscription: dict[str, Any], current: Callable[[str, str], dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """Lago's lifetime usage object of a subscription (`subscription`: its Lago object, as `subscriptions.find`
    answers it); `current(customer, subscription)`: its current usage object."""
    external_id, customer = subscription["external_id"], subscription["external_customer_id"]
    active = subscription["status"] == "active" and subscription.get("meterstream", {}).get("plan") is not None
    return {
        "lago_id": lago_uuid(tenant, "lifetime_usage", external_id),
        "lago_subscription_id": subscription["lago_id"],
        "external_subscription_id": external_id,
        "external_historical_usage_amount_cents": 0,
        "invoiced_usage_amount_cents": invoiced_usage_cents(issued(sf, tenant, customer), external_id),
        "current_usage_amount_cents": current(customer, external_id)["amount_cents"] if active else 0,
        "from_datetime": subscription["subscription_at"],
        "to_datetime": format_time(now),
        "usage_thresholds": [],
    }
