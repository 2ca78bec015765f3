"""How long to wait before reconnection attempt n: 1, 2, 4, 8 … s (capped), with jitter so
that many listeners restarted together do not reconnect in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2  # ± this fraction

    def delay(self, attempt: int) -> float:
        """Seconds before attempt number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return ceiling * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - jitter


# After a transient failure (network, timeout, Feishu busy).
TRANSIENT = Backoff()
# After Feishu refused the application (credentials, connection limit, app disabled):
# 30 s, 1, 2, 4, 8 and then every 10 min.
SLOW = Backoff(base=30.0, cap=600.0)
