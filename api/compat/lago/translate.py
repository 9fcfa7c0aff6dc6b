"""A checked Lago event onto Meterstream usage events (pure), through the shared meter definitions.

The Lago event becomes the CloudEvent-shaped input of `ingest.translate` (the one translation both
compatibility layers share): id = `transaction_id`, source = "lago", type = `code` (a billable metric
is a meter definition whose `event_type` is its code), subject = the subscription (else the customer),
data = `properties`. Each matching meter yields one usage event with id
`ingest.translate.derived_id("lago", transaction_id, meter)`, so a re-sent transaction id maps to the
same ids and is dropped as a duplicate. The Lago properties (as strings) and
`precise_total_amount_cents` ride along as dimensions, so `GET /events/{transaction_id}` can answer
with them.

Customer: the event's `external_customer_id` if given; else the customer recorded for its
`external_subscription_id` (`POST /api/v1/subscriptions`); else the subscription id itself.

An event whose `properties` lack a billable metric's `field_name` (absent or null; sum, max, latest,
unique count) is accepted and yields nothing for that metric, as Lago stores such an event and its
aggregation skips it (a sum adds nothing, a max or latest has no value from it): `not_metered` names those
meters. A value that is there but not a quantity (negative, not a number) is still refused, naming it.
The native API (ingest/translate.py, OpenMeter) stays strict: there a missing value is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meterstream.api.compat.lago.events import SOURCE, LagoEvent
from meterstream.ingest.translate import _MISSING, MeterDefinition, extract, translate
from meterstream.schemas.event import InvalidEvent

# Field names of the usage event / CloudEvent, as the Lago caller knows them.
_LAGO_NAMES = {
    "id": "transaction_id",
    "type": "code",
    "subject": "external_subscription_id",
    "customer": "external_subscription_id",
    "time": "timestamp",
    "quantity": "properties",
    "dimensions": "properties",
}


def lago_field(name: str) -> str:
    """A usage-event or CloudEvent field name in Lago's terms (`data.gb` -> `properties.gb`)."""
    if name == "data" or name.startswith(("data.", "data[")):
        return "properties" + name[4:]
    head, dot, rest = name.partition(".")
    if head == "dimensions" and dot:
        return f"properties.{rest}"
    return _LAGO_NAMES.get(head, name)


def resolve_customer(event: LagoEvent, recorded: Mapping[str, str]) -> str:
    """Who is charged (see the module docstring); `recorded` maps subscription ids to their customers.

    Raises InvalidEvent when the event names a customer other than the one its subscription belongs to.
    """
    sub = event.external_subscription_id
    owner = recorded.get(sub) if sub is not None else None
    if event.external_customer_id is not None:
        if owner is not None and owner != event.external_customer_id:
            raise InvalidEvent(
                "external_customer_id",
                f"subscription {sub} belongs to customer {owner}, not {event.external_customer_id}",
            )
        return event.external_customer_id
    return owner if owner is not None else sub  # type: ignore[return-value]


def cloud_event(event: LagoEvent) -> dict[str, Any]:
    """The CloudEvent-shaped dict `ingest.translate.translate` takes."""
    return {
        "id": event.transaction_id,
        "source": SOURCE,
        "type": event.code,
        "subject": event.subject,
        "time": event.time_text,
        "data": event.properties,
    }


@dataclass(frozen=True)
class LagoTranslation:
    """What one Lago event becomes: usage events, per-meter refusals, or "no billable metric"."""

    event: LagoEvent
    customer: str
    usage: list[dict[str, Any]] = field(default_factory=list)
    errors: list[InvalidEvent] = field(default_factory=list)
    unmatched: bool = False
    not_metered: list[MeterDefinition] = field(default_factory=list)  # the event lacks their field_name


def lacks_quantity(meter: MeterDefinition, properties: Any) -> bool:
    """True when `meter` takes its quantity from a property (every aggregation but COUNT) and the event's
    `properties` do not have it (absent or null): Lago accepts such an event and its aggregation skips it."""
    if meter.aggregation == "COUNT" or not meter.value_property:
        return False
    value = extract(properties, meter.value_property)
    return value is _MISSING or value is None


def translate_lago(
    event: LagoEvent, meters: Iterable[MeterDefinition], customer: str, now: datetime | None = None
) -> LagoTranslation:
    """Usage events for `event` (customer already resolved), one per meter whose event_type is its code, but
    none for a meter whose field_name the event lacks (`not_metered`, module docstring)."""
    meters = list(meters)
    skipped = [m for m in meters if m.event_type == event.code and lacks_quantity(m, event.properties)]
    if skipped:
        fed = [m for m in meters if m not in skipped]
        if not any(m.event_type == event.code for m in fed):  # its code has metrics: not unmatched, just nothing
            return LagoTranslation(event, customer, not_metered=skipped)
        meters = fed
    result = translate(cloud_event(event), meters, {event.subject: customer}, now)
    if result.envelope_error is not None:  # parse_lago_event checked these fields: a defect if reached
        err = result.envelope_error
        return LagoTranslation(event, customer, errors=[InvalidEvent(lago_field(err.field), err.reason)])
    if result.unmatched:
        return LagoTranslation(event, customer, unmatched=True)
    extra = event.dimensions()
    usage = []
    for out in result.events:
        dims = {**extra, **out.get("dimensions", {})}
        usage.append({**out, "dimensions": dims} if dims else out)
    errors = [InvalidEvent(lago_field(e.field), e.reason) for e in result.errors]
    return LagoTranslation(event, customer, usage=usage, errors=errors, not_metered=skipped)
