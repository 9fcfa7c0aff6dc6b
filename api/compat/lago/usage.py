"""Lago's current usage from the draft invoice the close would write (pure).

`GET /customers/{external_customer_id}/current_usage?external_subscription_id=` answers from
`invoice_emitter.subscription_invoice.draft_usage(...)`: the invoice document of the subscription's billing
period containing now, priced by the close's own code from the usage in ClickHouse. Lago's figures are
its usage lines, per billable metric (a meter priced under two plan versions in one period, after a
mid-cycle change, is one entry with the sum of both lines):

- `charges_usage[]`: `units` (sum of the lines' quantities), `amount_cents` (sum of the lines' rounded
  amounts, in the currency's minor unit), `events_count`, the billable metric and the charge;
- `amount_cents` = `total_amount_cents` = the sum of those (Lago's current usage covers usage-based
  charges, not the plan's recurring fee; there are no taxes here: `taxes_amount_cents` 0);
- `from_datetime` = the period's start, `to_datetime` = its last second (Lago's convention; the exact
  exclusive end is `meterstream.period_end`), `issuing_date` = the local date the period ends.

The whole draft invoice (recurring fees, minimum true-up, its total) is in the `meterstream` object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterstream.api.compat.lago.plans import amount_to_cents, lago_uuid
from meterstream.rating.money import EXACT, round_money
from meterstream.schemas.event import format_time

# meter -> (metric lago_id, name, aggregation_type) of its billable metric, or None
MetricInfo = Callable[[str], tuple[str, str, str] | None]
# (plan rating id code@version, meter) -> the Lago charge model pricing it, or None
ChargeModel = Callable[[str, str], str | None]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def usage_lines(invoice: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The usage lines of a draft invoice: those naming a meter (recurring fees and true-ups name none)."""
    return [line for line in invoice.get("lines", []) if line.get("meter") and line.get("kind", "usage") == "usage"]


def usage_object(
    invoice: Mapping[str, Any], tenant: str, metric: MetricInfo, charge_model: ChargeModel, timezone: str = "UTC"
) -> dict[str, Any]:
    """Lago's `customer_usage` object of a draft invoice (see the module docstring)."""
    currency = invoice["currency"]
    by_meter: dict[str, dict[str, Any]] = {}
    for line in usage_lines(invoice):
        meter = line["meter"]
        entry = by_meter.setdefault(meter, {"units": Decimal(0), "amount": Decimal(0), "events": 0, "plan": None})
        entry["units"] = EXACT.add(entry["units"], Decimal(str(line.get("quantity", "0"))))
        entry["amount"] = EXACT.add(entry["amount"], Decimal(str(line["amount"])))
        entry["events"] += int(line.get("events") or 0)
        entry["plan"] = line.get("plan") or invoice.get("plan")  # the newest line's plan names the charge
    charges = []
    total = 0
    for meter, entry in by_meter.items():
        cents = amount_to_cents(round_money(entry["amount"], currency), currency)
        total += cents
        plan = entry["plan"] or ""
        info = metric(meter)
        units = format(entry["units"].normalize(), "f") if entry["units"] else "0"
        charges.append({
            "units": units, "total_aggregated_units": units, "events_count": entry["events"],
            "amount_cents": cents, "amount_currency": currency,
            "charge": {"lago_id": lago_uuid(tenant, "plan", plan.split("@")[0], "charge", meter),
                       "charge_model": charge_model(plan, meter) or "standard", "invoice_display_name": None},
            "billable_metric": {"lago_id": info[0] if info else lago_uuid(tenant, "metric", meter),
                                "name": info[1] if info else meter, "code": meter,
                                "aggregation_type": info[2] if info else "sum_agg"},
            "filters": [], "grouped_usage": [],
        })  # fmt: skip
    start, end = _instant(invoice["period_start"]), _instant(invoice["period_end"])
    issuing = end.astimezone(ZoneInfo(timezone)).date()
    return {
        "from_datetime": format_time(start).replace(".000Z", "Z"),
        "to_datetime": format_time(end - timedelta(seconds=1)).replace(".000Z", "Z"),
        "issuing_date": issuing.isoformat(), "lago_invoice_id": None, "currency": currency,
        "amount_cents": total, "taxes_amount_cents": 0, "total_amount_cents": total, "charges_usage": charges,
        "meterstream": {"period": invoice.get("period"), "period_start": invoice["period_start"],
                        "period_end": invoice["period_end"],
                        "invoice_total": invoice.get("total"), "lines": list(invoice.get("lines", []))},
    }  # fmt: skip
