"""Lago plans <-> Meterstream plan versions (pure).

A Lago plan (`POST /plans`) becomes a `PlanVersionDoc` published with `entities.plans.publish_plan`:

- each charge prices the meter of its billable metric (`billable_metric_id` = the metric's `lago_id`, or
  `billable_metric_code`) in the catalog's canonical price shape (rating.parse_price):
  `standard` -> unit, `graduated` -> graduated, `volume` -> volume, `package` -> package,
  `percentage` -> percentage; `min_amount_cents` -> the price's period `minimum`;
- `amount_cents` (the plan's recurring fee, in the currency's minor unit) -> one `FixedCharge` (code
  `subscription_fee`) billed per `interval`, in advance when `pay_in_advance`, else in arrears;
- `minimum_commitment.amount_cents` -> `minimum_commitment`.

What the engine cannot do as Lago does is refused with the field and the reason (422) rather than
accepted and billed differently: charges paid in advance, filters, taxes, pricing units, prorated
charges, percentage free units and per-transaction fees or limits, `bill_charges_monthly`, a trial
period (Meterstream keeps trials on subscriptions, not plans), charges on metrics whose invoice would
not be a sum of event quantities (max_agg, latest_agg, unique_count_agg). A Lago plan update publishes
a new version.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from meterstream.entities.common import Invalid
from meterstream.rating.money import CURRENCY_MINOR_UNITS, round_money
from meterstream.schemas.entities import FixedCharge, PlanVersionDoc
from meterstream.schemas.event import format_time

FEE_CODE = "subscription_fee"
INTERVALS = ("weekly", "monthly", "quarterly", "yearly")
CHARGE_MODELS = ("standard", "graduated", "volume", "package", "percentage")
# metrics whose charges the invoice prices as the sum of their events' quantities
PRICEABLE = ("count_agg", "sum_agg")
_NAMESPACE = uuid.UUID("6f1c1d7e-4a8b-5c3d-9e2f-0a1b2c3d4e5f")


def lago_uuid(tenant: str, *parts: str) -> str:
    """A stable Lago id for an entity Meterstream keys by name (uuid5 of tenant and the parts)."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((tenant, *parts))))


def cents_to_amount(cents: int, currency: str) -> Decimal:
    """Lago `*_cents` (minor units of the currency: cents, yen, fils) as a Decimal amount."""
    return Decimal(cents).scaleb(-CURRENCY_MINOR_UNITS[currency])


def amount_to_cents(amount: Decimal, currency: str) -> int:
    """A Decimal amount with at most the currency's decimals, in its minor unit (exact, never rounded)."""
    scaled = Decimal(amount).scaleb(CURRENCY_MINOR_UNITS[currency])
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


# --- input ------------------------------------------------------------------------------------------


def _cents(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(field, f"a whole number of cents >= 0 (got {value!r})")
    return value


def _number(field: str, value: Any, *, required: bool = True) -> str | None:
    """A Lago decimal property: a string such as "0.5" or an integer; never a float (inexact)."""
    if value is None:
        if required:
            raise Invalid(field, "required")
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise Invalid(field, f'a decimal string such as "0.5" (got {value!r}: a float is inexact)')
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except ArithmeticError:
            number = None
        if number is None or not number.is_finite() or number < 0:
            raise Invalid(field, f'a decimal string >= 0 such as "0.5" (got {value!r})')
        return value.strip()
    raise Invalid(field, f'a decimal string such as "0.5" (got {type(value).__name__})')


def _whole(field: str, value: Any, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(field, f"a whole number >= 0 (got {value!r})")
    return value


def _ranges(field: str, raw: Any) -> list[dict[str, Any]]:
    """Lago ranges (from_value 0, then the previous to_value + 1; to_value null on the last) -> tiers with an
    inclusive `up_to` (= to_value), `unit_amount` (= per_unit_amount) and `flat_amount`."""
    if not isinstance(raw, list) or not raw:
        raise Invalid(field, "required: a non-empty array of ranges")
    tiers: list[dict[str, Any]] = []
    expected_from = 0
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise Invalid(where, "must be an object with from_value, to_value, per_unit_amount, flat_amount")
        start = _whole(f"{where}.from_value", item.get("from_value"))
        if start != expected_from:
            raise Invalid(f"{where}.from_value", f"must be {expected_from} (0, then the previous to_value + 1; "
                          f"got {start})")  # fmt: skip
        end = _whole(f"{where}.to_value", item.get("to_value"), nullable=True)
        last = i == len(raw) - 1
        if end is None and not last:
            raise Invalid(f"{where}.to_value", "only the last range is open (null)")
        if end is not None and last:
            raise Invalid(f"{where}.to_value", "the last range must be open (null)")
        if end is not None and end <= start:
            raise Invalid(f"{where}.to_value", f"must be greater than from_value ({end} <= {start})")
        tier: dict[str, Any] = {
            "up_to": str(end) if end is not None else None,
            "unit_amount": _number(f"{where}.per_unit_amount", item.get("per_unit_amount")),
        }
        flat = _number(f"{where}.flat_amount", item.get("flat_amount"), required=False)
        if flat is not None and Decimal(flat) != 0:
            tier["flat_amount"] = flat
        tiers.append(tier)
        expected_from = (end or 0) + 1
    return tiers


def price_from_charge(field: str, model: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical price of one Lago charge's `properties` (field names `<field>.properties.<name>`)."""
    p = f"{field}.properties"
    if props.get("grouped_by") or props.get("pricing_group_keys"):
        raise Invalid(f"{p}.pricing_group_keys", "grouping a charge by event properties is not supported yet")
    if model == "standard":
        return {"model": "unit", "unit_amount": _number(f"{p}.amount", props.get("amount"))}
    if model == "graduated":
        return {"model": "graduated", "tiers": _ranges(f"{p}.graduated_ranges", props.get("graduated_ranges"))}
    if model == "volume":
        return {"model": "volume", "tiers": _ranges(f"{p}.volume_ranges", props.get("volume_ranges"))}
    if model == "package":
        size = props.get("package_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise Invalid(f"{p}.package_size", f"a whole number of units >= 1 (got {size!r})")
        price: dict[str, Any] = {"model": "package", "package_amount": _number(f"{p}.amount", props.get("amount")),
                                 "package_size": str(size)}  # fmt: skip
        free = _whole(f"{p}.free_units", props.get("free_units", 0) or 0)
        if free:
            price["free_units"] = str(free)
        return price
    if model == "percentage":
        for name in ("free_units_per_events", "free_units_per_total_aggregation"):
            if props.get(name) not in (None, 0, "0"):
                raise Invalid(f"{p}.{name}", "free units of a percentage charge are not supported yet")
        # the close prices a period's total as one transaction (rating.quote): a rate is exact over a sum, a
        # fee or a limit per transaction would be billed once per period instead of once per event
        for name in ("fixed_amount", "per_transaction_min_amount", "per_transaction_max_amount"):
            value = _number(f"{p}.{name}", props.get(name), required=False)
            if value is not None and Decimal(value) != 0:
                raise Invalid(f"{p}.{name}", "per-transaction fees and limits are not supported yet (the invoice "
                              "prices the period's total, so they would apply once, not per event)")  # fmt: skip
        return {"model": "percentage", "rate": _number(f"{p}.rate", props.get("rate"))}
    raise Invalid(f"{field}.charge_model", f"one of {', '.join(CHARGE_MODELS)} (got {model!r})")


MetricLookup = Callable[[str], tuple[str, str] | None]  # lago id or code -> (meter code, aggregation_type)


def plan_from_lago(raw: Any, tenant: str, metric: MetricLookup, code: str | None = None) -> PlanVersionDoc:
    """The `plan` body of `POST /plans` (or `PUT /plans/{code}`, `code` given) as a plan version to publish.
    `metric` resolves a charge's billable metric. Raises `Invalid(field, reason)`."""
    if not isinstance(raw, Mapping):
        raise Invalid("plan", "must be a JSON object")
    code = code if code is not None else raw.get("code")
    if not isinstance(code, str) or not code:
        raise Invalid("code", "required")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Invalid("name", "required, a non-empty string")
    interval = raw.get("interval")
    if interval not in INTERVALS:
        raise Invalid("interval", f"one of {', '.join(INTERVALS)} (got {interval!r})")
    currency = raw.get("amount_currency")
    if not isinstance(currency, str) or currency not in CURRENCY_MINOR_UNITS:
        raise Invalid("amount_currency", f"an ISO 4217 currency code such as USD (got {currency!r})")
    if raw.get("amount_cents") is None:
        raise Invalid("amount_cents", "required (0 for a plan without a recurring fee)")
    fee_cents = _cents("amount_cents", raw.get("amount_cents"))
    in_advance = raw.get("pay_in_advance", False)
    if not isinstance(in_advance, bool):
        raise Invalid("pay_in_advance", "true or false")
    if raw.get("trial_period") not in (None, 0, 0.0):
        raise Invalid("trial_period", "trial periods are kept on subscriptions here, not on plans: not supported yet")
    if raw.get("bill_charges_monthly") or raw.get("bill_fixed_charges_monthly"):
        raise Invalid("bill_charges_monthly", "charges are billed with the plan's interval; not supported yet")
    for name_ in ("tax_codes", "usage_thresholds", "fixed_charges"):
        if raw.get(name_):
            raise Invalid(name_, f"{name_} are not supported yet")

    usage: dict[str, dict[str, Any]] = {}
    charges = raw.get("charges") or []
    if not isinstance(charges, list):
        raise Invalid("charges", "must be an array of charges")
    for i, charge in enumerate(charges):
        where = f"charges[{i}]"
        if not isinstance(charge, Mapping):
            raise Invalid(where, "must be a JSON object")
        ref = charge.get("billable_metric_id") or charge.get("billable_metric_code")
        if not isinstance(ref, str) or not ref:
            raise Invalid(f"{where}.billable_metric_id", "required: the billable metric's lago_id")
        found = metric(ref)
        if found is None:
            raise Invalid(f"{where}.billable_metric_id", f"no billable metric {ref!r}")
        meter, aggregation = found
        if aggregation not in PRICEABLE:
            raise Invalid(f"{where}.billable_metric_id", f"charges on {aggregation} metrics are not supported yet: the "
                          "invoice prices the sum of the events' quantities (count_agg, sum_agg)")  # fmt: skip
        if meter in usage:
            raise Invalid(f"{where}.billable_metric_id", f"a second charge on metric {meter!r}: one charge per metric")
        for flag, reason in (("pay_in_advance", "usage charges are billed in arrears"),
                             ("prorated", "prorated usage charges are not supported"),
                             ("accepts_target_wallet", "wallets are not supported")):  # fmt: skip
            if charge.get(flag):
                raise Invalid(f"{where}.{flag}", reason)
        if charge.get("invoiceable") is False:
            raise Invalid(f"{where}.invoiceable", "every charge is invoiced")
        for name_ in ("filters", "tax_codes", "applied_pricing_unit"):
            if charge.get(name_):
                raise Invalid(f"{where}.{name_}", f"{name_} on charges are not supported yet")
        model = charge.get("charge_model")
        if model not in CHARGE_MODELS:
            raise Invalid(f"{where}.charge_model", f"one of {', '.join(CHARGE_MODELS)} (got {model!r})")
        props = charge.get("properties") or {}
        if not isinstance(props, Mapping):
            raise Invalid(f"{where}.properties", "must be a JSON object")
        price = price_from_charge(where, model, props)
        if charge.get("min_amount_cents"):
            if model == "percentage":
                raise Invalid(f"{where}.min_amount_cents", "a period minimum is not supported on percentage charges")
            minimum = cents_to_amount(_cents(f"{where}.min_amount_cents", charge["min_amount_cents"]), currency)
            price["minimum"] = str(minimum)
        usage[meter] = price

    fixed = []
    if fee_cents:
        fixed.append(FixedCharge(code=FEE_CODE, name=name.strip(), amount=cents_to_amount(fee_cents, currency),
                                 interval=interval, timing="advance" if in_advance else "arrears"))  # fmt: skip
    minimum_commitment = None
    commitment = raw.get("minimum_commitment")
    if commitment:
        if not isinstance(commitment, Mapping):
            raise Invalid("minimum_commitment", "must be a JSON object with amount_cents")
        cents = _cents("minimum_commitment.amount_cents", commitment.get("amount_cents"))
        minimum_commitment = cents_to_amount(cents, currency) if cents else None
    if not usage and not fixed:
        raise Invalid("charges", "a plan needs a recurring fee (amount_cents > 0) or at least one charge")
    return PlanVersionDoc(tenant=tenant, code=code, version=0, name=name.strip(), currency=currency,
                          interval=interval, usage=usage, fixed=fixed,
                          minimum_commitment=minimum_commitment)  # fmt: skip


class PlanOverrides(NamedTuple):
    """Lago's `plan_overrides` of one subscription, as the store keeps them on its phase (entities.subscriptions):
    prices that replace the plan's for some meters, fixed charges' amounts, and a trial's length in days."""

    usage: dict[str, dict[str, Any]]
    fixed: dict[str, Decimal]
    trial_days: Decimal | None


_OVERRIDE_REFUSED = ("tax_codes", "usage_thresholds", "fixed_charges")


def overrides_from_lago(raw: Any, plan: PlanVersionDoc) -> PlanOverrides:
    """A subscription's `plan_overrides` on `plan` (fields named `plan_overrides.<name>`); Invalid(field, reason).

    As Lago's child plan: `amount_cents` replaces the recurring fee (the plan must have one), `charges[i]` (its
    `id`: the charge's `lago_id` in the plan object, or its code) replaces that charge's `properties` (in the
    charge's own model) and/or its `min_amount_cents`, the rest of the charge kept; `trial_period` (days) gives the
    subscription a trial. Names, descriptions and display names change nothing billed and are not kept. What would
    be billed otherwise is refused: another currency, taxes, usage thresholds, fixed charges, a different minimum
    commitment, charge filters."""
    where = "plan_overrides"
    if not isinstance(raw, Mapping):
        raise Invalid(where, "must be a JSON object")
    currency = raw.get("amount_currency")
    if currency is not None and currency != plan.currency:
        raise Invalid(f"{where}.amount_currency", f"must be the plan's currency {plan.currency} (got {currency!r})")
    for name in _OVERRIDE_REFUSED:
        if raw.get(name):
            raise Invalid(f"{where}.{name}", f"overriding {name} is not supported yet")
    commitment = raw.get("minimum_commitment")
    if commitment:
        cents = commitment.get("amount_cents") if isinstance(commitment, Mapping) else None
        kept = amount_to_cents(plan.minimum_commitment, plan.currency) if plan.minimum_commitment is not None else 0
        if cents != kept:
            raise Invalid(f"{where}.minimum_commitment", "overriding the minimum commitment is not supported yet")
    fixed: dict[str, Decimal] = {}
    if raw.get("amount_cents") is not None:
        cents = _cents(f"{where}.amount_cents", raw["amount_cents"])
        fee = next((f for f in plan.fixed if f.code == FEE_CODE), None)
        if fee is None:
            if cents:
                raise Invalid(f"{where}.amount_cents", f"plan {plan.code!r} has no recurring fee to override")
        else:
            fixed[FEE_CODE] = cents_to_amount(cents, plan.currency)
    trial_days = None
    if raw.get("trial_period") is not None:
        days = raw["trial_period"]
        if isinstance(days, bool) or not isinstance(days, int | float | str):
            raise Invalid(f"{where}.trial_period", f"a number of days >= 0 (got {days!r})")
        try:
            trial_days = Decimal(str(days))
        except ArithmeticError:
            trial_days = None
        if trial_days is None or not trial_days.is_finite() or trial_days < 0:
            raise Invalid(f"{where}.trial_period", f"a number of days >= 0 (got {days!r})")
    charges = raw.get("charges") or []
    if not isinstance(charges, list):
        raise Invalid(f"{where}.charges", "must be an array of charge overrides")
    by_id = {lago_uuid(plan.tenant, "plan", plan.code, "charge", meter): meter for meter in plan.usage}
    usage: dict[str, dict[str, Any]] = {}
    for i, charge in enumerate(charges):
        at = f"{where}.charges[{i}]"
        if not isinstance(charge, Mapping):
            raise Invalid(at, "must be a JSON object")
        ref = charge.get("id")
        meter = by_id.get(ref) if isinstance(ref, str) else None
        if meter is None and isinstance(ref, str) and ref in plan.usage:
            meter = ref
        if meter is None:
            raise Invalid(f"{at}.id", f"no charge {ref!r} in plan {plan.code!r}: the lago_id of one of its charges")
        if meter in usage:
            raise Invalid(f"{at}.id", f"a second override of the charge on {meter!r}")
        for name in ("filters", "tax_codes", "applied_pricing_unit"):
            if charge.get(name):
                raise Invalid(f"{at}.{name}", f"{name} on charges are not supported yet")
        shape = charge_from_price(plan.usage[meter])
        if shape is None:
            raise Invalid(f"{at}.id", f"the charge on {meter!r} has a price Lago cannot describe: override it "
                          "through Meterstream's own API")  # fmt: skip
        model = shape[0]
        parent = plan.usage[meter]
        if "properties" in charge:
            props = charge.get("properties")
            if not isinstance(props, Mapping):
                raise Invalid(f"{at}.properties", "must be a JSON object")
            price = price_from_charge(at, model, props)
            if "minimum" in parent:
                price["minimum"] = parent["minimum"]
        else:
            price = dict(parent)
        if charge.get("min_amount_cents") is not None:
            cents = _cents(f"{at}.min_amount_cents", charge["min_amount_cents"])
            if model == "percentage" and cents:
                raise Invalid(f"{at}.min_amount_cents", "a period minimum is not supported on percentage charges")
            price.pop("minimum", None)
            if cents:
                price["minimum"] = str(cents_to_amount(cents, plan.currency))
        usage[meter] = price
    return PlanOverrides(usage, fixed, trial_days)


# --- output -----------------------------------------------------------------------------------------


def _int_or_text(value: Any) -> int | str | None:
    if value is None:
        return None
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else str(number)


def _ranges_out(tiers: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out, start = [], 0
    for tier in tiers:
        end = _int_or_text(tier.get("up_to"))
        out.append({"from_value": start, "to_value": end, "flat_amount": str(tier.get("flat_amount", "0")),
                    "per_unit_amount": str(tier.get("unit_amount", "0"))})  # fmt: skip
        start = end + 1 if isinstance(end, int) else end  # type: ignore[assignment]
    return out


def _shown_cents(amount: Any, currency: str) -> int:
    """A usage price's amount in minor units for display (a price may hold more decimals than the currency:
    rounded half away from zero, as invoice lines are)."""
    if not amount:
        return 0
    return amount_to_cents(round_money(Decimal(str(amount)), currency), currency)


def charge_from_price(price: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(Lago charge_model, properties) of a canonical price, or None when Lago has no such model."""
    model = price.get("model")
    if model == "unit":
        return "standard", {"amount": str(price.get("unit_amount"))}
    if model in ("graduated", "volume"):
        return model, {f"{model}_ranges": _ranges_out(list(price.get("tiers") or []))}
    if model == "package":
        return "package", {"amount": str(price.get("package_amount")), "package_size": _int_or_text(
            price.get("package_size")), "free_units": _int_or_text(price.get("free_units", 0))}  # fmt: skip
    if model == "percentage":
        props = {"rate": str(price.get("rate")), "fixed_amount": str(price.get("fixed_amount", "0")),
                 "free_units_per_events": None, "free_units_per_total_aggregation": None,
                 "per_transaction_min_amount": price.get("min_amount"),
                 "per_transaction_max_amount": price.get("max_amount")}  # fmt: skip
        return "percentage", props
    return None


MetricInfo = Callable[[str], tuple[str, ...] | None]  # meter code -> (metric lago_id, ...) of its billable metric


def plan_object(doc: PlanVersionDoc, metric: MetricInfo, active_subscriptions: int = 0) -> dict[str, Any]:
    """Lago's plan object of a plan version (`lago_id` stable per tenant and code; amounts in cents)."""
    created = format_time(doc.published_at) if doc.published_at is not None else None
    fee = next((f for f in doc.fixed if f.code == FEE_CODE), doc.fixed[0] if doc.fixed else None)
    charges = []
    for meter, price in doc.usage.items():
        shape = charge_from_price(price)
        if shape is None:
            continue  # priced by a model Lago cannot show (made through Meterstream's own API)
        model, props = shape
        info = metric(meter)
        minimum = price.get("minimum")
        charges.append({
            "lago_id": lago_uuid(doc.tenant, "plan", doc.code, "charge", meter),
            "lago_billable_metric_id": info[0] if info else None, "billable_metric_code": meter, "code": meter,
            "created_at": created, "charge_model": model, "pay_in_advance": False, "invoiceable": True,
            "prorated": False, "regroup_paid_fees": None, "invoice_display_name": None,
            "min_amount_cents": _shown_cents(minimum, doc.currency),
            "properties": props, "filters": [], "taxes": [],
        })  # fmt: skip
    commitment = None
    if doc.minimum_commitment is not None:
        commitment = {"lago_id": lago_uuid(doc.tenant, "plan", doc.code, "minimum_commitment"),
                      "amount_cents": amount_to_cents(doc.minimum_commitment, doc.currency),
                      "invoice_display_name": None, "interval": doc.interval, "taxes": [], "created_at": created,
                      "updated_at": created}  # fmt: skip
    return {
        "lago_id": lago_uuid(doc.tenant, "plan", doc.code), "name": doc.name, "invoice_display_name": None,
        "created_at": created, "code": doc.code, "interval": doc.interval, "description": None,
        "amount_cents": amount_to_cents(fee.amount, doc.currency) if fee else 0,
        "amount_currency": doc.currency, "trial_period": 0.0,
        "pay_in_advance": fee.timing == "advance" if fee else False, "bill_charges_monthly": None,
        "active_subscriptions_count": active_subscriptions, "draft_invoices_count": 0, "charges": charges,
        "minimum_commitment": commitment, "taxes": [], "usage_thresholds": [],
        "meterstream": {"version": doc.version, "rating_id": doc.rating_id},
    }  # fmt: skip
