"""The error every layer raises for bad input it refuses: it names the field and says why, so that the caller can
answer (or dead-letter) with both. Subclassed per layer: schemas.event.InvalidEvent (an event that cannot be
accepted), processor.rate.RatingError (an event that cannot be rated), api.queries.QueryError (a query refused),
entities.common.Invalid (an entity write refused)."""

from __future__ import annotations


class FieldReasonError(ValueError):
    """`field` names what is wrong (a path such as `usage.calls.tiers[1].up_to`; empty when the input as a whole is),
    `reason` says why; the message is `field: reason` (just `reason` without a field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
