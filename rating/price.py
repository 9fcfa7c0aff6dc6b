"""The canonical price shape (pydantic v2, frozen) and `parse_price`, which validates it.

A parsed price carries its compiled form (`price.pricer`), built once at parse time, so the hot path
never touches pydantic. Amounts are Decimals; floats are rejected (write "0.10", not 0.10).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from meterstream.rating.money import CURRENCY_MINOR_UNITS, EXACT, ZERO, to_decimal
from meterstream.rating.pricer import (
    FlatCore,
    ModelCore,
    PackageCore,
    PercentagePricer,
    Pricer,
    UnitCore,
    UsagePricer,
    conversion,
)
from meterstream.rating.tiers import GraduatedTable, VolumeTable

__all__ = [
    "MODELS",
    "FlatPrice",
    "GraduatedPrice",
    "PackagePrice",
    "PercentagePrice",
    "Price",
    "PriceBase",
    "PriceError",
    "Tier",
    "UnitPrice",
    "VolumePrice",
    "parse_price",
]


class PriceError(ValueError):
    """An invalid price. The message names the field path and the reason, e.g.
    `tiers[1].up_to: bounds must increase (5 after 10)`; `problems` lists every (path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" if path else reason for path, reason in problems))


def _problem(field: str, reason: str) -> PydanticCustomError:
    """A validation error for `field` (a path relative to the model raising it)."""
    return PydanticCustomError("price_field", "{field}: {reason}", {"field": field, "reason": reason})


# --- field types ---------------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal:
    """money.to_decimal (floats refused), reported as a validation error of the field."""
    try:
        return to_decimal(value)
    except (TypeError, ValueError) as exc:
        raise PydanticCustomError("decimal", "{reason}", {"reason": str(exc)}) from None


def _non_negative(value: Decimal) -> Decimal:
    if value < ZERO:
        raise PydanticCustomError("negative", "must not be negative (got {value})", {"value": str(value)})
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= ZERO:
        raise PydanticCustomError("not_positive", "must be greater than 0 (got {value})", {"value": str(value)})
    return value


Amount = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_non_negative)]
PositiveQty = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_positive)]
StrictInt = Annotated[int, Field(strict=True)]


# --- models --------------------------------------------------------------------------------------------


class PriceBase(BaseModel):
    """Fields and behaviour shared by every price model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    currency: str

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, code: str) -> str:
        if code not in CURRENCY_MINOR_UNITS:
            raise PydanticCustomError("currency", f"unknown currency {code!r} (expected an active ISO 4217 code)")
        return code

    def model_post_init(self, context: Any, /) -> None:
        self.pricer  # noqa: B018 - compile at parse time: errors surface here and the hot path never waits

    @cached_property
    def pricer(self) -> Pricer:
        """The compiled form used by quote/delta."""
        with localcontext(EXACT):
            return self._compile()

    def _compile(self) -> Pricer:
        raise NotImplementedError

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> PriceBase:
        """Copies are re-validated (and recompiled): a price is never in an unchecked state."""
        return type(self).model_validate({**self.model_dump(), **(update or {})})


class UsagePrice(PriceBase):
    """A usage model: conversion -> free units -> model -> period minimum/maximum (see rating.pricer)."""

    free_units: Amount | None = None
    minimum: Amount | None = None
    maximum: Amount | None = None
    divide_by: PositiveQty | None = None
    multiply_by: PositiveQty | None = None
    conversion_rounding: Literal["up", "down", "half_up"] = "up"
    conversion_precision: Annotated[StrictInt, Field(ge=0, le=18)] = 0

    @model_validator(mode="after")
    def _min_below_max(self) -> UsagePrice:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise _problem("maximum", f"must be >= minimum ({self.maximum} < {self.minimum})")
        return self

    def _usage(self, core: ModelCore) -> UsagePricer:
        convert = None
        if self.divide_by is not None or self.multiply_by is not None:
            convert = conversion(self.divide_by, self.multiply_by, self.conversion_rounding, self.conversion_precision)
        return UsagePricer(
            core, convert=convert, free_units=self.free_units, minimum=self.minimum, maximum=self.maximum
        )


class Tier(BaseModel):
    """One tier: up_to inclusive (None = open); per-unit or per-block pricing, plus optional flat amount."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: PositiveQty | None
    unit_amount: Amount | None = None
    flat_amount: Amount | None = None
    block_size: PositiveQty | None = None
    block_amount: Amount | None = None

    @model_validator(mode="after")
    def _one_pricing(self) -> Tier:
        blocks = self.block_size is not None or self.block_amount is not None
        if self.unit_amount is not None and blocks:
            raise _problem("unit_amount", "a tier prices per unit or per block (block_size/block_amount), not both")
        if blocks and self.block_size is None:
            raise _problem("block_size", "required with block_amount")
        if blocks and self.block_amount is None:
            raise _problem("block_amount", "required with block_size")
        if self.unit_amount is None and not blocks and self.flat_amount is None:
            raise _problem("unit_amount", "a tier needs unit_amount, block_size + block_amount, or flat_amount")
        return self


class _TieredPrice(UsagePrice):
    tiers: Annotated[tuple[Tier, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _bounds(self) -> _TieredPrice:
        last = len(self.tiers) - 1
        previous: Decimal | None = None
        for index, tier in enumerate(self.tiers):
            if tier.up_to is None:
                if index != last:
                    raise _problem(f"tiers[{index}].up_to", "only the last tier may be open (null)")
                continue
            if index == last:
                raise _problem(f"tiers[{index}].up_to", f"the last tier must be open (null), got {tier.up_to}")
            if previous is not None and tier.up_to <= previous:
                raise _problem(f"tiers[{index}].up_to", f"bounds must increase ({tier.up_to} after {previous})")
            previous = tier.up_to
        return self


class UnitPrice(UsagePrice):
    model: Literal["unit"] = "unit"
    unit_amount: Amount

    def _compile(self) -> Pricer:
        return self._usage(UnitCore(self.unit_amount))


class GraduatedPrice(_TieredPrice):
    model: Literal["graduated"] = "graduated"

    def _compile(self) -> Pricer:
        return self._usage(GraduatedTable(self.tiers))


class VolumePrice(_TieredPrice):
    model: Literal["volume"] = "volume"

    def _compile(self) -> Pricer:
        return self._usage(VolumeTable(self.tiers))


class PackagePrice(UsagePrice):
    model: Literal["package"] = "package"
    package_amount: Amount
    package_size: PositiveQty
    rounding: Literal["up", "down"] = "up"

    def _compile(self) -> Pricer:
        return self._usage(PackageCore(self.package_amount, self.package_size, self.rounding))


class FlatPrice(PriceBase):
    """A fixed fee. `quote(price, n)` prices n periods (or seats, or a proration fraction): amount x n.
    Scheduling helpers (proration, one-time, installments) are in rating.fees."""

    model: Literal["flat"] = "flat"
    amount: Amount
    billing: Literal["in_advance", "in_arrears"] = "in_advance"
    cadence: Literal["recurring", "one_time"] = "recurring"
    installments: Annotated[StrictInt, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _installments_one_time(self) -> FlatPrice:
        if self.installments > 1 and self.cadence != "one_time":
            raise _problem("installments", "installment plans apply to one_time fees")
        return self

    def _compile(self) -> Pricer:
        return UsagePricer(FlatCore(self.amount))


class PercentagePrice(PriceBase):
    """A per-event fee on an event value: value x rate% + fixed_amount, clamped to [min_amount, max_amount]"""

    model: Literal["percentage"] = "percentage"
    rate: Annotated[Amount, AfterValidator(lambda v: v if v <= 100 else _raise_rate(v))]
    fixed_amount: Amount | None = None
    min_amount: Amount | None = None
    max_amount: Amount | None = None

    @model_validator(mode="after")
    def _min_below_max(self) -> PercentagePrice:
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise _problem("max_amount", f"must be >= min_amount ({self.max_amount} < {self.min_amount})")
        return self

    def _compile(self) -> Pricer:
        return PercentagePricer(self.rate, self.fixed_amount, self.min_amount, self.max_amount)


def _raise_rate(value: Decimal) -> Decimal:
    raise PydanticCustomError("rate", "is a percentage between 0 and 100 (got {value})", {"value": str(value)})


Price = UnitPrice | GraduatedPrice | VolumePrice | PackagePrice | FlatPrice | PercentagePrice
MODELS: dict[str, type[PriceBase]] = {
    "unit": UnitPrice,
    "graduated": GraduatedPrice,
    "volume": VolumePrice,
    "package": PackagePrice,
    "flat": FlatPrice,
    "percentage": PercentagePrice,
}


# --- parsing -------------------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(exc: ValidationError, model: str) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        path, reason = _path(error["loc"]), error["msg"]
        if error["type"] == "price_field":
            ctx = error["ctx"]
            path = f"{path}.{ctx['field']}" if path else ctx["field"]
            reason = ctx["reason"]
        elif error["type"] == "extra_forbidden":
            reason = f"unknown field for the {model} model"
        problems.append((path, reason))
    return problems


def parse_price(obj: Mapping[str, Any] | PriceBase, *, currency: str | None = None) -> Price:
    """Validate a price in the canonical shape (or pass a parsed one through) and compile it.

    `currency` is the plan's default, used when the price has none; a different explicit one is an error.
    Raises PriceError naming the field path and the reason.
    """
    if isinstance(obj, PriceBase):
        if currency is not None and obj.currency != currency:
            raise PriceError([("currency", f"{obj.currency} differs from the plan currency {currency}")])
        return obj  # type: ignore[return-value]
    if not isinstance(obj, Mapping):
        raise PriceError([("", f"a price must be a mapping, got {type(obj).__name__}")])
    data = dict(obj)
    if currency is not None:
        given = data.setdefault("currency", currency)
        if given != currency:
            raise PriceError([("currency", f"{given} differs from the plan currency {currency}")])
    model = data.get("model")
    if model is None:
        raise PriceError([("model", f"required (one of {', '.join(MODELS)})")])
    cls = MODELS.get(model) if isinstance(model, str) else None
    if cls is None:
        raise PriceError([("model", f"unknown model {model!r} (expected one of {', '.join(MODELS)})")])
    try:
        return cls.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise PriceError(_problems(exc, model)) from None
