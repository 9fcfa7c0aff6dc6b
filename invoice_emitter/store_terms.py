"""What the close takes from the entity store besides customers and subscriptions: each customer's coupon uses
(entities/coupons.py: derived from the issued invoices), the explicit taxes (entities/tax_objects.py) and the
pending late fees (entities/dunning.py: billed once, derived from the issued invoices), loaded once per close in
one session (a few queries, whatever the number of customers)."""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import sessionmaker

from meterstream.entities.coupons import coupon_uses
from meterstream.entities.dunning import pending_charge_lines
from meterstream.entities.tax_objects import tax_overrides
from meterstream.invoice_emitter.issue import Issuing

__all__ = ["with_store_terms"]


def with_store_terms(issuing: Issuing, sf: sessionmaker, period: str) -> Issuing:
    """`issuing` with the coupon uses for `period`, the explicit taxes and the pending late fees of the store `sf`;
    what `issuing` already carries (a caller's own `coupons`, `taxes` or `charges`) is kept."""
    if issuing.coupons is not None and issuing.taxes is not None and issuing.charges is not None:
        return issuing
    with sf() as s:
        coupons = issuing.coupons if issuing.coupons is not None else coupon_uses(s, None, period)
        taxes = issuing.taxes if issuing.taxes is not None else tax_overrides(s)
        charges = issuing.charges if issuing.charges is not None else pending_charge_lines(s, period)
    return dataclasses.replace(issuing, coupons=coupons, taxes=taxes, charges=charges)
