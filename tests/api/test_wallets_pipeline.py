"""The ongoing balance through the API with the real pipeline (`meterstream up` on free ports: its broker, the
processor, the sink, the API): after each event is accepted, how long until GET /v1/wallets/{id}/balance
shows it consumed. Prints p50/p99/max; asserts each event shows within 5 s and the figures by hand.

Demo catalog (deploy/demo_catalog.yaml): tenant cloudco is on cloud-standard, storage_gb_hours at 0.000137 USD,
so 10,000 GB-hours cost 1.37 USD per event."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pipeline_up import call, meterstream_up, post_storage_event

pytestmark = pytest.mark.kafka
EVENTS = 20


def test_the_balance_follows_the_events_within_a_second(tmp_path: Path) -> None:
    with meterstream_up(tmp_path) as up:
        base, key, err = up.base, up.key, up.err
        call(f"{base}/v1/customers/acme", key, "PUT", {"name": "Acme", "currency": "USD"})
        wallet = call(f"{base}/v1/customers/acme/wallets", key, "POST", {"paid_credits": "100.00"})
        balance_url = f"{base}/v1/wallets/{wallet['id']}/balance"
        latencies = []
        for i in range(EVENTS):
            sent = post_storage_event(up, i)
            expected = f"{137 * (i + 1) // 100}.{137 * (i + 1) % 100:02d}"  # 1.37 USD per event
            limit = 60 if i == 0 else 5  # the first event warms the pipeline up: not measured
            while (seen := call(balance_url, key))["consumed"] != expected:
                if time.monotonic() - sent > limit:
                    usage = call(f"{base}/v1/usage?customer=acme", key)
                    pytest.fail(f"event {i}: consumed {seen['consumed']}, expected {expected}; usage {usage}; "
                                f"balance {seen}; log {err.read_text()[-3000:]}")  # fmt: skip
                time.sleep(0.01)
            if i:
                latencies.append(time.monotonic() - sent)
        # 20 events x 1.37 = 27.40 USD consumed: 100.00 - 27.40 = 72.60 left
        assert (seen["consumed"], seen["balance"]) == ("27.40", "72.60")
        ordered = sorted(latencies)
        p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"\nwallet balance after an event (2..{EVENTS}): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
              f"max {ordered[-1] * 1000:.0f} ms over {len(ordered)} events")  # fmt: skip
