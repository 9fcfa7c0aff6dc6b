"""Balance thresholds and credit limits of a customer: which levels its balance or usage is past (pure).

Configured per customer in its metadata (the customer's `metadata`, set through the API like any other field),
so no schema change was needed; amounts are decimal text in the wallets' currency, never floats:

- `balance_alert_below`: levels such as `"10,5"`: the prepaid balance is below 10.00 (resp. 5.00);
- `usage_alert_percent`: percentages such as `"80,100"`: the usage drawn from the wallets is at least 80%
  (resp. 100%) of the credits put in them (settled top-ups, paid and granted);
- `credit_limit`: a postpaid customer's limit for the rated usage of one billing period (UTC month here):
  past it, provisioning gets `suspend` with reason `credit_limit_exceeded` (processor/balances.py);
- `credit_limit_alert_percent`: percentages such as `"50,80"`: the period's rated usage is at least 50% (resp.
  80%) of `credit_limit` (levels `limit:50`, `limit:80`; they need a `credit_limit`);
- `credit_limit_soft_percent`: one percentage such as `"90"`, above 0 and at most 100: from 90% of
  `credit_limit` provisioning gets `limit` (reason `credit_limit_soft`: throttle before the suspension), lifted
  by `reactivate` with the same reason when the period's usage is back under it (a new period, a higher limit);
- `commitment_alert_percent`: percentages such as `"100"`: the period's rated usage is at least 100% of the
  minimum commitment of the customer's subscriptions in effect (their plan versions' `minimum_commitment`, as
  the processor's catalog has them; levels `commitment:100`).

Every number is at most `MAX_DIGITS` (30) significant digits and below 10^24 (a longer one is refused, named).
`crossed(...)` names the levels a prepaid state is past (`below:10`, `usage:80`), `postpaid_crossed(...)` those of
a period's usage (`limit:80`, `commitment:100`), `soft_limited(...)` whether the soft level is reached (all
compared exactly, as fractions: never rounded, never an error). The processor keeps the set it last
reported in its own state and notifies only the levels that *enter* the set (`entered`): a level stays in the
set, silent, until the balance is back above it (a top-up), so a balance moving around a line cannot flap: the
hysteresis is by state, never by time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from meterstream.rating.money import minor_units

__all__ = [
    "BALANCE_BELOW",
    "COMMITMENT_PERCENT",
    "CREDIT_LIMIT",
    "CREDIT_PERCENT",
    "CREDIT_SOFT_PERCENT",
    "TOP_UP_REQUESTED",
    "USAGE_PERCENT",
    "Rules",
    "crossed",
    "entered",
    "postpaid_crossed",
    "rules_from_metadata",
    "soft_limited",
]

BALANCE_BELOW = "balance_alert_below"
USAGE_PERCENT = "usage_alert_percent"
CREDIT_LIMIT = "credit_limit"
CREDIT_PERCENT = "credit_limit_alert_percent"
CREDIT_SOFT_PERCENT = "credit_limit_soft_percent"
COMMITMENT_PERCENT = "commitment_alert_percent"
# the notification kind of an automatic top-up's crossing (a wallet's rule, not a customer level): the processor
# decides it with the same hysteresis as the levels (`entered`), the API process's relay writes the top-up
TOP_UP_REQUESTED = "wallet.top_up_requested"
_MAX_LEVELS = 10
# significant digits of one metadata number: a percentage times a limit then has at most 60, what rating.money.EXACT
# holds exactly (the comparisons below are exact whatever the digits; this bounds what the state and notes carry)
MAX_DIGITS = 30


@dataclass(frozen=True)
class Rules:
    balance_below: tuple[Decimal, ...] = ()
    usage_percent: tuple[Decimal, ...] = ()
    credit_limit: Decimal | None = None
    credit_percent: tuple[Decimal, ...] = ()
    credit_soft_percent: Decimal | None = None
    commitment_percent: tuple[Decimal, ...] = ()

    @property
    def empty(self) -> bool:
        return (not self.balance_below and not self.usage_percent and self.credit_limit is None
                and not self.commitment_percent)  # fmt: skip

    @property
    def postpaid(self) -> bool:
        """Whether the period's usage is watched (a credit limit or commitment levels)."""
        return self.credit_limit is not None or bool(self.commitment_percent)


def _number(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"metadata.{field}: not a decimal number: {text.strip()!r}") from None
    if not value.is_finite() or value < 0 or (value and value.adjusted() >= 24):
        raise ValueError(f"metadata.{field}: a decimal from 0 to below 10^24 (got {text.strip()!r})")
    if len(value.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"metadata.{field}: at most {MAX_DIGITS} significant digits (got {text.strip()!r})")
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
    for field, name, parse in _FIELDS:
        if field in metadata:
            try:
                found[name] = parse(field, str(metadata[field]))
            except ValueError as exc:
                errors.append(str(exc))
    for field, name in ((CREDIT_PERCENT, "credit_percent"), (CREDIT_SOFT_PERCENT, "credit_soft_percent")):
        if name in found and "credit_limit" not in found:
            errors.append(f"metadata.{field}: needs metadata.{CREDIT_LIMIT} (a percentage of it)")
            del found[name]
    return Rules(**found), errors  # type: ignore[arg-type]


def _percents(field: str, text: str) -> tuple[Decimal, ...]:
    levels = _levels(field, text)
    if any(p <= 0 for p in levels):
        raise ValueError(f"metadata.{field}: percentages above 0 (got {text.strip()!r})")
    return levels


def _percent(field: str, text: str) -> Decimal:
    value = _number(field, text)
    if not 0 < value <= 100:
        raise ValueError(f"metadata.{field}: a percentage above 0 and at most 100 (got {value})")
    return value


# (metadata field, Rules attribute, parser), in the order their errors are reported
_FIELDS: tuple[tuple[str, str, Callable[[str, str], object]], ...] = (
    (BALANCE_BELOW, "balance_below", _levels),
    (USAGE_PERCENT, "usage_percent", _levels),
    (CREDIT_LIMIT, "credit_limit", _number),
    (CREDIT_PERCENT, "credit_percent", _percents),
    (COMMITMENT_PERCENT, "commitment_percent", _percents),
    (CREDIT_SOFT_PERCENT, "credit_soft_percent", _percent),
)


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
            if _reached(Decimal(used), pct, Decimal(inbound)):
                out.add(f"usage:{pct}")
    return out


def entered(before: set[str] | list[str], now: set[str]) -> list[str]:
    """The levels to notify: in `now` and not in `before` (sorted, so their order is deterministic)."""
    return sorted(now - set(before))


def postpaid_crossed(rules: Rules, used: Decimal, commitment: Decimal | None) -> set[str]:
    """The levels a billing period's rated usage (exact, in the customer's currency) is past: `limit:<N>` when it
    is at least N% of the credit limit, `commitment:<N>` when at least N% of `commitment` (None or 0: none)."""
    out: set[str] = set()
    if rules.credit_limit is not None:
        for pct in rules.credit_percent:
            if _reached(used, pct, rules.credit_limit):
                out.add(f"limit:{pct}")
    if commitment:
        for pct in rules.commitment_percent:
            if _reached(used, pct, commitment):
                out.add(f"commitment:{pct}")
    return out


def soft_limited(rules: Rules, used: Decimal) -> bool:
    """Whether a period's usage reached the soft level (`credit_limit_soft_percent` of the credit limit)."""
    if rules.credit_limit is None or rules.credit_soft_percent is None:
        return False
    return _reached(used, rules.credit_soft_percent, rules.credit_limit)


def _reached(used: Decimal, percent: Decimal, base: Decimal) -> bool:
    """Whether `used` is at least `percent`% of `base`: used x 100 >= percent x base, compared as exact fractions
    (a product never rounds nor traps, whatever the operands' digits)."""
    return Fraction(used) * 100 >= Fraction(percent) * Fraction(base)
