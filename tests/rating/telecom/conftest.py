"""Fixtures: the hand-computable test plan from ``plans.py``."""

from __future__ import annotations

import pytest

from meterstream.rating.telecom import TelecomPlan, parse_telecom_plan

from .plans import section


@pytest.fixture(scope="session")
def plan() -> TelecomPlan:
    return parse_telecom_plan(section(), currency="EUR")
