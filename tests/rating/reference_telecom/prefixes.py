"""Longest-prefix destination lookup, precompiled to one dict probe per prefix length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from .errors import NoRate

T = TypeVar("T")


class PrefixTable(Generic[T]):
    """Maps E.164 numbers to the entry of the longest *priced* prefix.

    Only prefixes that carry a rate are in the table, so a longer prefix that the
    plan declares but does not price simply is not found and the lookup falls
    through to the next shorter one.  ``default`` (the ``*any`` rate) answers when
    nothing matches; without it :class:`NoRate` is raised.
    """

    __slots__ = ("_default", "_lengths", "_table")

    def __init__(self, entries: Mapping[str, T], default: T | None = None) -> None:
        self._table = dict(entries)
        self._lengths = tuple(sorted({len(p) for p in self._table}, reverse=True))
        self._default = default

    def match(self, number: str | None) -> T:
        """The entry for ``number`` (digits, optionally ``+``-prefixed)."""
        if number:
            digits = number[1:] if number[0] == "+" else number
            if not (digits.isdigit() and digits.isascii()):
                raise NoRate("no rate for destination", f"{number!r} is not E.164 digits")
            table = self._table
            n = len(digits)
            for length in self._lengths:
                if length <= n:
                    hit = table.get(digits[:length])
                    if hit is not None:
                        return hit
        if self._default is not None:
            return self._default
        raise NoRate("no rate for destination", repr(number))
