"""Meterstream: streaming usage metering, rating and billing.

One distribution, one import namespace: the top-level folders of the repository (`ingest/`,
`processor/`, `rating/`, `aggregation/`, `invoice_emitter/`, `schemas/`, `deploy/`) are installed as
`meterstream.ingest`, `meterstream.processor`, ... (see `[tool.setuptools.package-dir]`).
"""

__version__ = "0.2.0"
