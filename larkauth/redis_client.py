"""The Redis larkauth can work without (rate limit, token audit buffer): fail fast, then
leave it alone for a while, so an outage costs one timeout per interval, not one per call."""

from __future__ import annotations

import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def fail_fast_redis(url: str, timeout: float = 0.5) -> redis.Redis:
    """No retries and short timeouts: callers fall back to working without Redis rather
    than stall a request on an unreachable server."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


class OptionalRedis:
    """A fail-fast client, built on first use, that is not offered for `retry_interval`
    seconds after a caller reports it `failed()`. No URL: never offered."""

    def __init__(self, url: str, *, timeout: float = 0.5, retry_interval: float = 15.0) -> None:
        self.url = url
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return bool(self.url) and time.monotonic() >= self._down_until

    def client(self) -> redis.Redis | None:
        if not self.available:
            return None
        with self._lock:
            if self._client is None:
                self._client = fail_fast_redis(self.url, self.timeout)
            return self._client

    def failed(self) -> None:
        self._down_until = time.monotonic() + self.retry_interval
