"""Fixtures of the document tests (the documents themselves: invoice_samples.py, data/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoice_samples import DATA

from meterstream.schemas.invoice import InvoiceDoc, decode


@pytest.fixture
def example_doc() -> InvoiceDoc:
    """tests/documents/data/invoice_v2_example.json, checked by hand (docs/invoices.md shows it):

    api calls, graduated: 10,000 x 0 + 990,000 x 0.00002 (19.80) + 250,000 x 0.00001 (2.50) + flat 25 = 47.30,
    shared 750,000 : 500,000 -> 28.38 + 18.92; storage 1,000,000 x 0.000137 = 137.00; platform 99.00;
    onboarding 250.00. Subtotal 533.30; WELCOME10 10 % = 53.33 (4.73 + 13.70 + 9.90 + 25.00 by line);
    taxable 479.97, reverse charge 0 % -> total 479.97; credits 20.00 -> amount due 459.97.
    """
    return decode((DATA / "invoice_v2_example.json").read_bytes())


@pytest.fixture
def v1_path() -> Path:
    """An invoice written by `meterstream demo` (document version 1, catalog file close, Nov 2026)."""
    return DATA / "v1_cloudco_org-000.json"
