"""Longest-prefix destination lookup, precompiled to one dict probe per prefix length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from meterstream.rating.telecom.errors import NoRate

T = TypeVar("T")
MEMO_LIMIT = 65_536  # distinct number heads remembered (at most 10**longest prefix length exist)


class PrefixTable(Generic[T]):
    """Maps E.164 numbers to the entry of the longest *priced* prefix.

    Only prefixes that carry a rate are in the table, so a longer prefix that the
    plan declares but does not price simply is not found and the lookup falls
    through to the next shorter one.  ``default`` (the ``*any`` rate) answers when
    nothing matches; without it :class:`NoRate` is raised.
    """

    __slots__ = ("_default", "_lengths", "_table", "longest", "memo")

    def __init__(self, entries: Mapping[str, T], default: T | None = None) -> None:
        self._table = dict(entries)
        self._lengths = tuple(sorted({len(p) for p in self._table}, reverse=True))
        self.longest = self._lengths[0] if self._lengths else 0
        self._default = default
        # memo: the first `longest` digits decide the answer for every number at least that long
        # (None: no priced prefix and no default). Read by the rater; filled only by `match`.
        self.memo: dict[str, T | None] = {}

    def match(self, number: str | None) -> T:
        """The entry for ``number`` (digits, optionally ``+``-prefixed)."""
        if number:
            digits = number[1:] if number[0] == "+" else number
            if not (digits.isdigit() and digits.isascii()):
                raise NoRate("no rate for destination", f"{number!r} is not E.164 digits")
            if len(digits) >= self.longest:
                head = digits[: self.longest]
                memo = self.memo
                hit = memo.get(head, memo)
                if hit is memo:
                    if len(memo) >= MEMO_LIMIT:
                        memo.clear()
                    hit = memo[head] = self._longest_match(head)
                if hit is not None:
                    return hit
            else:
                hit = self._longest_match(digits)
                if hit is not None:
                    return hit
        if self._default is not None:
            return self._default
        raise NoRate("no rate for destination", repr(number))

    def _longest_match(self, digits: str) -> T | None:
        """The entry of the longest priced prefix of ``digits``, else ``default`` (may be None)."""
        table = self._table
        n = len(digits)
        for length in self._lengths:
            if length <= n:
                hit = table.get(digits[:length])
                if hit is not None:
                    return hit
        return self._default
