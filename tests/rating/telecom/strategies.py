"""Hypothesis strategies the telecom session property tests share (test_max_duration.py,
test_sessions_properties.py): call starts over 2025, bundle minutes already used, and band caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

YEAR = datetime(2025, 1, 1, tzinfo=UTC)
# any microsecond of 2025 (UTC)
starts = st.integers(0, 365 * 86400 * 1_000_000 - 1).map(lambda us: YEAR + timedelta(microseconds=us))
# nothing of the NAT_MIN bundle (plans.py, 600 s) used yet, or 0..700 s of it (over 600: spent)
used = st.one_of(st.just({}), st.integers(0, 700).map(lambda n: {"NAT_MIN": Decimal(n)}))
# up to three session cost caps, per band or for all (band None), each stopping the charge or the call
caps = st.lists(
    st.fixed_dictionaries(
        {
            "band": st.sampled_from([None, "peak", "offpeak", "weekend"]),
            "amount": st.decimals(0, 4, places=2),
            "strategy": st.sampled_from(["stop_charging", "disconnect"]),
        }
    ),
    max_size=3,
)
