"""Entitlements: what a customer may use of a feature, and how much is left (OpenMeter's features, entitlements and
grants; docs/entitlements.md). Pure: usage periods and grant expirations (`periods`), the grants' burn-down
(`burndown`). The stored entities are entities/entitlements.py; the API is api/compat/openmeter/entitlements.py."""
