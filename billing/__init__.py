"""The billing domain, pure (no I/O): billing periods, day-based proration, and the fixed-fee, one-time,
installment and minimum-commitment lines of a subscription for one billing period (docs/billing.md)."""
