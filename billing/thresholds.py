"""Balance thresholds and credit limits of a customer: which levels its balance or usage is past (pure).

Configured per customer in its metadata (the customer's `metadata`, set through the API like any other field),
so no schema change was needed; amounts are decimal text in the wallets' currency, never floats:

- `balance_alert_below`: levels such as `"10,5"`: the prepaid balance is below 10.00 (resp. 5.00);
- `usage_alert_percent`: percentages such as `"80,100"`: the usage drawn from the wallets is at least 80%
  (resp. 100%) of the credits put in them (settled top-ups, paid and granted);
- `credit_limit`: a postpaid customer's limit for the rated usage of one billing period (UTC month here):
  past it, provisioning gets `suspend` with reason `credit_limit_exceeded` (processor/balances.py).

`crossed(...)` names the levels a state is past (`below:10`, `usage:80`). The processor keeps the set it last
reported in its own state and notifies only the levels that *enter* the set (`entered`): a level stays in the
set, silent, until the balance is back above it (a top-up), so a balance moving around a line cannot flap: the
hysteresis is by state, never by time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from meterstream.rating.money import minor_units

__all__ = [
    "BALANCE_BELOW",
    "CREDIT_LIMIT",
    "TOP_UP_REQUESTED",
    "USAGE_PERCENT",
    "Rules",
    "crossed",
    "entered",
    "rules_from_metadata",
]

BALANCE_BELOW = "balance_alert_below"
USAGE_PERCENT = "usage_alert_percent"
CREDIT_LIMIT = "credit_limit"
# the notification kind of an automatic top-up's crossing (a wallet's rule, not a customer level): the processor
# decides it with the same hysteresis as the levels (`entered`), the API process's relay writes the top-up
TOP_UP_REQUESTED = "wallet.top_up_requested"
_MAX_LEVELS = 10


@dataclass(frozen=True)
class Rules:
    balance_below: tuple[Decimal, ...] = ()
    usage_percent: tuple[Decimal, ...] = ()
    credit_limit: Decimal | None = None

    @property
    def empty(self) -> bool:
        return not self.balance_below and not self.usage_percent and self.credit_limit is None


def _number(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"metadata.{field}: not a decimal number: {text.strip()!r}") from None
    if not value.is_finite() or value < 0 or (value and value.adjusted() >= 24):
        raise ValueError(f"metadata.{field}: a decimal from 0 to below 10^24 (got {text.strip()!r})")
    return value


def _levels(field: str, text: str) -> tuple[Decimal, ...]:
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) > _MAX_LEVELS:
        raise ValueError(f"metadata.{field}: at most {_MAX_LEVELS} levels (got {len(parts)})")
    return tuple(sorted({_number(field, p) for p in parts}, reverse=True))


def rules_from_metadata(metadata: Mapping[str, str] | None) -> tuple[Rules, list[str]]:
    """(the rules, one error per unusable field, naming it): a bad field is left out, the others still hold."""
    metadata = metadata or {}
    errors: list[str] = []
    found: dict[str, object] = {}
    for field, name in ((BALANCE_BELOW, "balance_below"), (USAGE_PERCENT, "usage_percent")):
        if field in metadata:
            try:
                found[name] = _levels(field, str(metadata[field]))
            except ValueError as exc:
                errors.append(str(exc))
    if CREDIT_LIMIT in metadata:
        try:
            found["credit_limit"] = _number(CREDIT_LIMIT, str(metadata[CREDIT_LIMIT]))
        except ValueError as exc:
            errors.append(str(exc))
    return Rules(**found), errors  # type: ignore[arg-type]


def crossed(rules: Rules, currency: str, balance: int, inbound: int, used: int) -> set[str]:
    """The levels this prepaid state is past: `below:<X>` when the balance (minor units) is under X, `usage:<N>`
    when the usage drawn is at least N% of the credits put in (`inbound`, minor units; none put in: none)."""
    out: set[str] = set()
    if not rules.balance_below and not rules.usage_percent:
        return out
    amount = Decimal(balance).scaleb(-minor_units(currency))  # exact: an integer's exponent moves
    for level in rules.balance_below:
        if amount < level:
            out.add(f"below:{level}")
    if inbound > 0:
        for pct in rules.usage_percent:
            if Decimal(used) * 100 >= pct * inbound:
                out.add(f"usage:{pct}")
    return out


def entered(before: set[str] | list[str], now: set[str]) -> list[str]:
    """The levels to notify: in `now` and not in `before` (sorted, so their order is deterministic)."""
    return sorted(now - set(before))
