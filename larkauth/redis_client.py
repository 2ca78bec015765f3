"""The Redis client larkauth's optional Redis uses (rate limit, token audit buffer)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def fail_fast_redis(url: str, timeout: float = 0.5) -> redis.Redis:
    """No retries and short timeouts: callers fall back to working without Redis rather
    than stall a request on an unreachable server."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
