"""Exponential backoff: the one formula behind every retry in larkauth.

Attempt n (1-based) waits `base * 2**(n-1)` seconds, capped at `cap`. Jitter keeps many
waiters (processes restarted together, tasks failed by the same outage) from retrying in
step: full jitter (`jitter=None`, any time up to the delay) where only the average matters,
a spread of ± `jitter` of the delay where a delay should stay near its nominal value, none
(`jitter=0`) where the delay is read back from the database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float
    jitter: float | None = None  # None: full jitter; else ± this share of the delay
    attempts: int = 1  # tries in all, for callers that give up

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if attempt <= 0:
            return 0.0
        ceiling = min(self.cap, self.base * 2 ** min(attempt - 1, 32))
        if self.jitter is None:
            return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
        return ceiling * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311


# Celery tasks that call Feishu (cards, the reply to "authorize"): 1 s doubling to 30 s.
TASK_RETRIES = Backoff(base=1.0, cap=30.0)
