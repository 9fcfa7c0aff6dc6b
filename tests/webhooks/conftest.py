"""Fixtures of the webhook tests: the entity tests' stores (every test taking `sf` runs on SQLite AND on
PostgreSQL, tests/entities/conftest.py), and a local HTTP receiver that records what it is sent."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_receiver import Receiver

_ENTITIES = Path(__file__).resolve().parents[1] / "entities"
sys.path.insert(0, str(_ENTITIES))  # invoice_helpers (the session PostgreSQL cluster is tests/conftest.py pg_cluster)

_spec = importlib.util.spec_from_file_location("webhooks_entities_fixtures", _ENTITIES / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

pg_store_url = _fixtures.pg_store_url
db_url = _fixtures.db_url
engine = _fixtures.engine
sf = _fixtures.sf


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
