"""Wallet balances from their ledger and the customer's rated usage: ONE pure rule (docs/wallets.md).

Everything is in integer minor units of the wallets' currency (a credit wallet's credits are converted by its
`rate_amount` when they are written: credits x rate_amount must be whole minor units, so no amount here is
ever rounded). The rule, over one customer's wallets of one currency:

- a *lot* is one settled inbound transaction (a paid top-up or granted credits); pending ones do not count;
- a lot ends (`Lot.ends_at`) at the first of: its own expiry, its wallet's expiry, its wallet's termination.
  What is left of a lot when it ends is `expired`;
- *draws* take units from the lots in time order: a `void` (an outbound transaction of one wallet) takes from
  that wallet's lots only; `usage` (the customer's rated usage at a time) takes from every lot whose wallet
  had started and that had not ended at that time;
- at the same instant: lots end first, then voids, then usage;
- the lots a draw takes from are in this order: wallet priority (lowest number first), then the lot's end
  (soonest first, a lot that never ends last), then the lot's settlement time, then its id;
- usage the lots cannot cover is `uncovered` (invoiced as usual): a wallet never goes below zero.

So, per wallet: `balance = settled inbound - consumed - voided - expired`, and over the wallets
`sum(consumed) + uncovered = the usage drawn`. The stream processor will debit with this same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = ["Draw", "HistoryEntry", "Lot", "WalletBalance", "WalletTerms", "balances", "usage_draws"]


@dataclass(frozen=True)
class WalletTerms:
    id: str
    priority: int  # lowest first
    started_at: datetime
    ends_at: datetime | None = None  # the wallet's expiry or termination, whichever is first


@dataclass(frozen=True)
class Lot:
    id: str
    wallet: str
    units: int  # > 0
    settled_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Draw:
    at: datetime
    units: int  # >= 0
    kind: Literal["usage", "void"]
    wallet: str | None = None  # a void's wallet; None for usage


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    kind: Literal["inbound", "consumed", "voided", "expired"]
    units: int  # the change, >= 0 (its sign is its kind's)
    balance: int  # the wallet's balance after it


@dataclass
class WalletBalance:
    wallet: str
    inbound: int = 0
    consumed: int = 0
    voided: int = 0
    expired: int = 0
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return self.inbound - self.consumed - self.voided - self.expired


def _end(lot: Lot, wallet: WalletTerms) -> datetime | None:
    ends = [t for t in (lot.expires_at, wallet.ends_at) if t is not None]
    return min(ends) if ends else None


def balances(
    wallets: Sequence[WalletTerms], lots: Iterable[Lot], draws: Iterable[Draw], now: datetime
) -> tuple[dict[str, WalletBalance], int]:
    """(wallet id -> its balance and history, uncovered usage units) at `now`: the rule of the module docstring.
    Lots settled after `now` and draws after `now` are left out. ValueError naming the field for a lot of an
    unknown wallet or a negative amount."""
    terms = {w.id: w for w in wallets}
    out = {w.id: WalletBalance(w.id) for w in wallets}
    live: list[tuple[Lot, datetime | None]] = []
    for lot in lots:
        if lot.wallet not in terms:
            raise ValueError(f"lots: lot {lot.id!r} names an unknown wallet {lot.wallet!r}")
        if lot.units <= 0:
            raise ValueError(f"lots: lot {lot.id!r} must have a positive amount (got {lot.units})")
        if lot.settled_at <= now:
            live.append((lot, _end(lot, terms[lot.wallet])))
    left = {lot.id: lot.units for lot, _ in live}
    # events: (time, order at that time, seq, what): 0 = a lot arrives, 1 = a lot ends, 2 = void, 3 = usage
    events: list[tuple[datetime, int, int, object]] = []
    for lot, end in live:
        events.append((lot.settled_at, 0, len(events), lot))
        if end is not None and end <= now:
            events.append((end, 1, len(events), lot))
    for d in draws:
        if d.units < 0:
            raise ValueError(f"draws: a {d.kind} draw must not be negative (got {d.units})")
        if d.kind == "void" and d.wallet not in terms:
            raise ValueError(f"draws: a void names an unknown wallet {d.wallet!r}")
        if d.at <= now and d.units:
            events.append((d.at, 2 if d.kind == "void" else 3, len(events), d))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    order = sorted(live, key=lambda le: (terms[le[0].wallet].priority, le[1] is None,
                                         (le[1] or now).timestamp(), le[0].settled_at, le[0].id))  # fmt: skip
    uncovered = 0
    for at, kind, _seq, what in events:
        if kind == 0:
            lot = what  # type: ignore[assignment]
            w = out[lot.wallet]  # type: ignore[attr-defined]
            w.inbound += lot.units  # type: ignore[attr-defined]
            w.history.append(HistoryEntry(at, "inbound", lot.units, w.balance))  # type: ignore[attr-defined]
        elif kind == 1:
            lot = what  # type: ignore[assignment]
            rest = left[lot.id]  # type: ignore[attr-defined]
            if rest:
                left[lot.id] = 0  # type: ignore[attr-defined]
                w = out[lot.wallet]  # type: ignore[attr-defined]
                w.expired += rest
                w.history.append(HistoryEntry(at, "expired", rest, w.balance))
        else:
            draw: Draw = what  # type: ignore[assignment]
            need = draw.units
            taken: dict[str, int] = {}
            for lot, end in order:
                if need == 0:
                    break
                if left[lot.id] == 0 or lot.settled_at > at or (end is not None and end <= at):
                    continue
                if draw.kind == "void" and lot.wallet != draw.wallet:
                    continue
                if draw.kind == "usage" and terms[lot.wallet].started_at > at:
                    continue
                take = min(need, left[lot.id])
                left[lot.id] -= take
                need -= take
                taken[lot.wallet] = taken.get(lot.wallet, 0) + take
            for wallet, units in taken.items():
                w = out[wallet]
                if draw.kind == "void":
                    w.voided += units
                    w.history.append(HistoryEntry(at, "voided", units, w.balance))
                else:
                    w.consumed += units
                    w.history.append(HistoryEntry(at, "consumed", units, w.balance))
            if draw.kind == "usage":
                uncovered += need
    return out, uncovered


def usage_draws(bounds: Sequence[datetime], cumulative_units: Sequence[int]) -> list[Draw]:
    """The usage draws of pieces [bounds[i], bounds[i+1]) from the usage's cumulative totals rounded to minor
    units at each bound after the first (cumulative_units[i] = round(usage in [bounds[0], bounds[i+1]))): each
    piece draws the difference, so the draws add up to the rounded total, never to a sum of rounded pieces.
    A total below an earlier one (negative usage: a correction) draws nothing until the total passes it again."""
    if len(cumulative_units) != max(0, len(bounds) - 1):
        raise ValueError("cumulative_units: one total per piece")
    out = []
    before = 0
    for start, total in zip(bounds, cumulative_units, strict=False):
        if total > before:
            out.append(Draw(start, total - before, "usage"))
            before = total
    return out
