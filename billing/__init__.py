"""The billing domain, pure (no I/O): billing periods, day-based proration, and the fixed-fee, one-time,
installment and minimum-commitment lines of a subscription for one billing period (docs/billing.md)."""

from meterstream.billing.charges import SubscriptionCharges
from meterstream.billing.lines import ChargeLine
from meterstream.billing.periods import Period, Schedule
from meterstream.billing.plans import PlanLookup, lookup_from
from meterstream.billing.proration import day_spans, prorated, round_share

__all__ = [
    "ChargeLine",
    "Period",
    "PlanLookup",
    "Schedule",
    "SubscriptionCharges",
    "day_spans",
    "lookup_from",
    "prorated",
    "round_share",
]
