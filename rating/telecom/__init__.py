"""Telecom rating: calls, SMS and data by destination, time of use and billing increments.

Public API::

    parse_telecom_plan(section, *, currency) -> TelecomPlan
    load_telecom_csv(directory, *, currency) -> TelecomPlan
    rate_cdr(plan, *, meter, quantity, start, dimensions, bundle_used) -> RatedCDR
    # the columnar processor's call: the start as its canonical UTC text, memoised answers as tuples
    rate_cdr(plan, *, meter, quantity, time_text, dimensions, bundle_used, brief=True)
        -> (cost, line_key, bundle_id, billed) | RatedCDR

See docs/telecom.md for the catalog format and the rating rules.
"""

from meterstream.rating.telecom.csv_loader import load_telecom_csv
from meterstream.rating.telecom.errors import NoRate, TelecomCatalogError
from meterstream.rating.telecom.model import TelecomPlan, parse_telecom_plan
from meterstream.rating.telecom.rater import RatedCDR, Segment, rate_cdr

__all__ = [
    "NoRate",
    "RatedCDR",
    "Segment",
    "TelecomCatalogError",
    "TelecomPlan",
    "load_telecom_csv",
    "parse_telecom_plan",
    "rate_cdr",
]
