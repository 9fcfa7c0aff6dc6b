"""Errors raised by telecom rating.

Two families: a *catalog* error means the plan itself is wrong (fix the YAML/CSV);
a *no rate* error means one event cannot be priced (the pipeline dead-letters it
with ``exc.reason``).
"""

from __future__ import annotations


class TelecomCatalogError(ValueError):
    """The telecom section of a catalog is invalid.

    ``problems`` holds ``(field_path, reason)`` pairs, e.g.
    ``("telecom.meters.voice_seconds.rates[0].rate", "unknown rate 'RT_X'")``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in self.problems))


class NoRate(LookupError):
    """An event cannot be priced by the plan; ``reason`` is the dead-letter reason."""

    def __init__(
        self, reason: str = "no rate for destination", detail: str = "", field: str = "dimensions.destination"
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field  # the event field the dead letter names
        super().__init__(f"{reason}: {detail}" if detail else reason)
