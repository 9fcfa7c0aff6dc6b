"""Compatibility layers: thin translations onto the one ingest path and the one query path."""
