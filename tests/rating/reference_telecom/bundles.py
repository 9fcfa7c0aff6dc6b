"""Included allowances (bundles) consumed before money is charged.

A bundle covers *billed* usage (after increments) of its meter, for the
destination groups and time bands it lists (empty = all).  Billed usage is
consumed in call order; when the allowance runs out inside an increment, the
covered part is free and the rest of that increment is charged pro rata — so the
split point is exact and shown as two segments on the rated record.  Bundles do
not cover the connect fee.  The caller owns the per-customer, per-period state
(``bundle_used``); this module only computes what one record consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CompiledBundle:
    """A bundle with its allowance in the meter's base unit (seconds, messages, bytes)."""

    id: str
    groups: frozenset[str] | None
    bands: frozenset[str] | None
    amount: Decimal

    def applies(self, group: str, band: str | None = None) -> bool:
        """Whether usage to ``group`` (in ``band``) may draw on this bundle."""
        if self.groups is not None and group not in self.groups:
            return False
        return band is None or self.bands is None or band in self.bands


def split_by_bundles(
    lo: Decimal,
    hi: Decimal,
    band: str,
    candidates: tuple[CompiledBundle, ...],
    remaining: dict[str, Decimal],
    used: dict[str, Decimal],
) -> list[tuple[Decimal, Decimal, str | None]]:
    """Cut billed ``[lo, hi)`` into bundle-covered parts (in plan order) and a charged rest.

    ``remaining`` is decremented and ``used`` incremented in place.
    """
    out: list[tuple[Decimal, Decimal, str | None]] = []
    for b in candidates:
        if lo >= hi:
            break
        left = remaining[b.id]
        if left <= 0 or (b.bands is not None and band not in b.bands):
            continue
        take = min(left, hi - lo)
        out.append((lo, lo + take, b.id))
        remaining[b.id] = left - take
        used[b.id] = used.get(b.id, Decimal(0)) + take
        lo += take
    if lo < hi:
        out.append((lo, hi, None))
    return out
