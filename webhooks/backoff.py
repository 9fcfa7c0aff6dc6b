"""The retry schedule of a webhook delivery (pure): exponential steps with jitter, then a dead letter.

Attempt 1 goes out as soon as the dispatcher reads the event. After failed attempt k (k = 1, 2, ...) the next
one waits `SCHEDULE[k - 1]` seconds, each multiplied by a random factor in [1 - JITTER, 1 + JITTER] so that
the retries of many deliveries to one recovering receiver do not arrive in one burst. After `MAX_ATTEMPTS`
failed attempts (1 + len(SCHEDULE) = 8, about 19 hours after the first) the delivery is dead: no more tries
until `meterstream webhooks replay` puts it back.
"""

from __future__ import annotations

import random

SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 3600, 6 * 3600, 12 * 3600)  # 5 s, 30 s, 2 min, 10 min, 1 h, 6 h, 12 h
MAX_ATTEMPTS = len(SCHEDULE) + 1
JITTER = 0.2


def retry_delay(
    failed_attempts: int,
    rng: random.Random | None = None,
    schedule: tuple[float, ...] = SCHEDULE,
    jitter: float = JITTER,
) -> float | None:
    """Seconds to wait after `failed_attempts` failures (>= 1) before the next attempt; None: no attempt is
    left (the delivery is dead)."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts: at least 1 (the first attempt is not delayed)")
    if failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    factor = (rng or random).uniform(1 - jitter, 1 + jitter) if jitter else 1.0
    return base * factor


__all__ = ["JITTER", "MAX_ATTEMPTS", "SCHEDULE", "retry_delay"]
