"""Pydantic models of /v1/add_ons (docs/add-ons.md): the edge.

The amount is a decimal string in the currency's major units ("150.00"; a JSON number is refused: a float cannot
carry a decimal exactly). The tenant is never in a body: it is the API key's. The store (entities/add_ons.py)
checks the rest (digits of the currency, ISO 4217, the tenant's tax codes) and answers errors naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from meterstream.api.entities_models import Code, Money, Name, _In
from meterstream.entities.add_ons import AddOn

TaxCode = Annotated[str, Field(min_length=1, max_length=128)]
Currency = Annotated[str, Field(min_length=3, max_length=3, description="ISO 4217 (EUR, USD, JPY...).")]


class AddOnCreate(_In):
    code: Code
    name: Name
    invoice_display_name: str | None = Field(default=None, min_length=1, max_length=256,
                                             description="The line's name on invoices (absent: the name).")  # fmt: skip
    description: str | None = Field(default=None, max_length=1024)
    amount: Money = Field(description="The default unit amount, in `currency` (never more digits than it has).")
    currency: Currency
    tax_codes: list[TaxCode] = Field(default_factory=list, max_length=32,
                                     description="Codes of the tenant's taxes (taxes: Lago's /taxes).")  # fmt: skip

    def to_kwargs(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "amount": self.amount, "currency": self.currency,
                "invoice_display_name": self.invoice_display_name, "description": self.description,
                "tax_codes": tuple(self.tax_codes)}  # fmt: skip


class AddOnPatch(_In):
    """Only the fields sent change; null clears `invoice_display_name` and `description`. `code` renames it."""

    code: Code | None = None
    name: Name | None = None
    invoice_display_name: str | None = Field(default=None, min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=1024)
    amount: Money | None = None
    currency: Currency | None = None
    tax_codes: list[TaxCode] | None = Field(default=None, max_length=32)

    def to_kwargs(self) -> dict[str, Any]:
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        if "code" in sent:
            sent["new_code"] = sent.pop("code")
        if sent.get("tax_codes") is not None:
            sent["tax_codes"] = tuple(sent["tax_codes"])
        return sent


class AddOnOut(BaseModel):
    id: str
    code: str
    name: str
    invoice_display_name: str | None
    description: str | None
    amount: str = Field(description="Decimal string in `currency`, with its digits: 150.00.")
    currency: str
    tax_codes: list[str]
    created_at: datetime
    updated_at: datetime


class AddOnList(BaseModel):
    items: list[AddOnOut]
    page: int
    per_page: int
    total: int


def add_on_out(a: AddOn) -> dict[str, Any]:
    return {
        "id": a.add_on_id, "code": a.code, "name": a.name, "invoice_display_name": a.invoice_display_name,
        "description": a.description, "amount": str(a.amount), "currency": a.currency,
        "tax_codes": list(a.tax_codes), "created_at": a.created_at, "updated_at": a.updated_at,
    }  # fmt: skip
