"""Lago-compatible API at /compat/lago/."""
