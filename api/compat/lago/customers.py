"""Lago customers <-> the one customer table (pure): `CustomerDoc` in, Lago's customer object out.

Lago's `POST /customers` is an upsert by `external_id`: fields the request leaves out keep their stored
values (a new customer gets the defaults). Mapping: name (absent: firstname + lastname, else the
external id), legal_name, email, tax_identification_number -> tax_id, currency, timezone (absent: UTC),
country, address_line1/2, city, zipcode, state -> address, `billing_configuration.invoice_grace_period`
-> invoice_grace_days (the days after a period's end during which late usage still lands in the draft; the
billing run finalizes after them), net_payment_term -> payment_terms_days, metadata `[{key, value}]` ->
metadata. `tax_codes` (codes of Lago `taxes`) are the customer's own taxes, stored apart from the customer
document (entities/tax_objects.py: `tax_codes_from_lago` here, answered as the customer's `taxes`); a customer
with tax codes is taxed with them instead of the automatic VAT/sales-tax rules (docs/taxes.md).
Fields with no Meterstream meaning are refused when set (payment providers, integrations, ...)
rather than accepted and forgotten; display-only ones Lago clients commonly send (phone, url, logo_url,
legal_number, customer_type, document_locale) are ignored and come back null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.entities.common import Invalid
from meterstream.schemas.entities import Address, CustomerDoc
from meterstream.schemas.event import format_time

_TEXT = {"name": "name", "legal_name": "legal_name", "email": "email", "tax_identification_number": "tax_id",
         "currency": "currency", "timezone": "timezone", "country": "country"}  # fmt: skip
_ADDRESS = {"address_line1": "line1", "address_line2": "line2", "city": "city", "zipcode": "postal_code",
            "state": "state"}  # fmt: skip
_REFUSED = ("integration_customers", "shipping_address", "invoice_custom_section_codes",
            "billing_entity_code")  # fmt: skip
_REFUSED_BILLING = (
    "payment_provider",
    "payment_provider_code",
    "provider_customer_id",
    "subscription_invoice_issuing_date_anchor",
    "subscription_invoice_issuing_date_adjustment",
)


def _text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string (got {type(value).__name__})")
    return value.strip() or None


def _days(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(field, f"whole days (got {value!r})")
    return value


def customer_from_lago(raw: Any, tenant: str, stored: CustomerDoc | None) -> CustomerDoc:
    """The customer document a Lago `customer` body makes, over the stored one (None: a new customer).
    Raises `Invalid(field, reason)`; the store validates the rest (entities.plan_rules.validate_customer)."""
    if not isinstance(raw, Mapping):
        raise Invalid("customer", "must be a JSON object")
    external_id = raw.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        raise Invalid("external_id", "required, a non-empty string")
    for name in _REFUSED:
        if raw.get(name):
            raise Invalid(name, f"{name} is not supported")
    changes: dict[str, Any] = {}
    for lago, ours in _TEXT.items():
        if lago in raw:
            value = _text(lago, raw[lago])
            if lago in ("currency", "country") and value is not None:
                value = value.upper()
            changes[ours] = value
    if changes.get("name") is None:  # absent or empty: firstname + lastname, else the stored (or external id)
        full = " ".join(p for p in (_text(n, raw.get(n)) for n in ("firstname", "lastname")) if p)
        if full:
            changes["name"] = full
        else:
            changes.pop("name", None)
    if "timezone" in changes and changes["timezone"] is None:
        changes["timezone"] = "UTC"
    address_changes = {ours: _text(lago, raw[lago]) for lago, ours in _ADDRESS.items() if lago in raw}
    if "net_payment_term" in raw and raw["net_payment_term"] is not None:
        changes["payment_terms_days"] = _days("net_payment_term", raw["net_payment_term"])
    billing = raw.get("billing_configuration")
    if billing is not None:
        if not isinstance(billing, Mapping):
            raise Invalid("billing_configuration", "must be a JSON object")
        for name in _REFUSED_BILLING:
            if billing.get(name):
                raise Invalid(f"billing_configuration.{name}", f"{name} is not supported")
        grace = billing.get("invoice_grace_period")
        if grace is not None:
            changes["invoice_grace_days"] = _days("billing_configuration.invoice_grace_period", grace)
    if "metadata" in raw:
        changes["metadata"] = _metadata(raw["metadata"])

    if stored is None:
        base = CustomerDoc(tenant=tenant, external_id=external_id, name=external_id, version=0)
    else:
        base = stored
    address = base.address or Address()
    if address_changes:
        address = msgspec.structs.replace(address, **address_changes)
    has_address = any(getattr(address, f) is not None for f in ("line1", "line2", "city", "postal_code", "state",
                                                                "country"))  # fmt: skip
    return msgspec.structs.replace(base, **changes, address=address if has_address else None)


def tax_codes_from_lago(raw: Any) -> list[str] | None:
    """The customer's `tax_codes` (None: not sent, the stored ones stay; [] removes them); `Invalid` naming
    `tax_codes` when it is not an array of codes."""
    if not isinstance(raw, Mapping) or raw.get("tax_codes") is None:
        return None
    codes = raw["tax_codes"]
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise Invalid("tax_codes", "an array of tax codes (taxes created with POST /taxes)")
    return codes


def _metadata(raw: Any) -> dict[str, str]:
    """Lago metadata `[{key, value, display_in_invoice}]` (or a plain object) as key -> value."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        items = [{"key": k, "value": v} for k, v in raw.items()]
    elif isinstance(raw, list):
        items = raw
    else:
        raise Invalid("metadata", "an array of {key, value} objects")
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) or not item["key"]:
            raise Invalid(f"metadata[{i}].key", "required, a non-empty string")
        value = item.get("value")
        if value is None:
            continue
        if not isinstance(value, str):
            raise Invalid(f"metadata[{i}].value", f"a string (got {type(value).__name__})")
        out[item["key"]] = value
    return out


def customer_object(
    doc: CustomerDoc, created_at: datetime, updated_at: datetime, taxes: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Lago's customer object (lago_id stable per tenant and external id); `taxes`: its own tax objects."""
    address = doc.address or Address()
    return {
        "lago_id": lago_uuid(doc.tenant, "customer", doc.external_id), "external_id": doc.external_id,
        "name": doc.name, "firstname": None, "lastname": None, "customer_type": None, "legal_name": doc.legal_name,
        "legal_number": None, "tax_identification_number": doc.tax_id, "email": doc.email, "phone": None,
        "url": None, "logo_url": None, "address_line1": address.line1, "address_line2": address.line2,
        "city": address.city, "zipcode": address.postal_code, "state": address.state, "country": doc.country,
        "currency": doc.currency, "timezone": doc.timezone, "applicable_timezone": doc.timezone,
        "net_payment_term": doc.payment_terms_days, "created_at": format_time(created_at),
        "updated_at": format_time(updated_at),
        "billing_configuration": {"invoice_grace_period": doc.invoice_grace_days, "payment_provider": None,
                                  "document_locale": None},
        "metadata": [
            {"lago_id": lago_uuid(doc.tenant, "customer", doc.external_id, "metadata", k), "key": k, "value": v,
             "display_in_invoice": False, "created_at": None}
            for k, v in sorted(doc.metadata.items())
        ],
        "integration_customers": [], "taxes": list(taxes), "shipping_address": None,
        "meterstream": {"version": doc.version},
    }  # fmt: skip
