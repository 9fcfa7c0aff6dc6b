"""What the close takes from the entity store besides customers and subscriptions: each customer's coupon uses
(entities/coupons.py: derived from the issued invoices) and the explicit taxes (entities/tax_objects.py), loaded
once per close in one session (four queries, whatever the number of customers)."""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import sessionmaker

from meterstream.entities.coupons import coupon_uses
from meterstream.entities.tax_objects import tax_overrides
from meterstream.invoice_emitter.issue import Issuing

__all__ = ["with_store_terms"]


def with_store_terms(issuing: Issuing, sf: sessionmaker, period: str) -> Issuing:
    """`issuing` with the coupon uses for `period` and the explicit taxes of the store `sf`; what `issuing`
    already carries (a caller's own `coupons` or `taxes`) is kept."""
    if issuing.coupons is not None and issuing.taxes is not None:
        return issuing
    with sf() as s:
        coupons = issuing.coupons if issuing.coupons is not None else coupon_uses(s, None, period)
        taxes = issuing.taxes if issuing.taxes is not None else tax_overrides(s)
    return dataclasses.replace(issuing, coupons=coupons, taxes=taxes)
