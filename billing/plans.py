"""Finding the plan versions a subscription uses: the lookup the billing domain is given.

A lookup answers `(code, version, as_of)`: version N of plan `code`, or with version None the newest
version published at or before `as_of` (how a phase's add-ons are resolved: "their newest version at the
phase start"). The store answers it from SQL; `lookup_from` answers it from documents in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from meterstream.schemas.entities import PlanVersionDoc

__all__ = ["PlanLookup", "lookup_from"]

PlanLookup = Callable[[str, int | None, datetime], PlanVersionDoc]


def lookup_from(docs: Iterable[PlanVersionDoc]) -> PlanLookup:
    """A lookup over these plan versions (one tenant). A version without `published_at` counts as
    published from the beginning of time; with version None and no version published by `as_of` (a
    phase back-dated before the plan was published), the first version. Raises KeyError naming the plan
    when there is no answer."""
    by_code: dict[str, dict[int, PlanVersionDoc]] = {}
    for doc in docs:
        by_code.setdefault(doc.code, {})[doc.version] = doc

    def lookup(code: str, version: int | None, as_of: datetime) -> PlanVersionDoc:
        versions = by_code.get(code, {})
        if version is not None:
            try:
                return versions[version]
            except KeyError:
                raise KeyError(f"plan {code}@{version} not found") from None
        if not versions:
            raise KeyError(f"plan {code} not found")
        published = [doc for doc in versions.values() if doc.published_at is None or doc.published_at <= as_of]
        if not published:  # a phase back-dated before the plan existed: its first version
            return versions[min(versions)]
        return max(published, key=lambda doc: doc.version)

    return lookup
