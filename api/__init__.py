"""The HTTP API: own v1, OpenMeter- and Lago-compatible layers over one ingest and one query path."""
