"""Outbound rate limit per Feishu application and API, shared by every process through Redis.

A sliding window log in Redis (one sorted set per app and API, changed by one Lua script,
timed by Redis's own clock) allows at most `rate` calls in any `window`. Without Redis (no
`REDIS_URL`, or Redis unreachable) each process limits itself to the same rate: one warning
is logged, and Redis is tried again at most once per `redis_retry_interval`.

Why our own rather than the `limits` library: `limits` has the same Redis moving window
(`MovingWindowRateLimiter` over `RedisStorage`), but it only answers "allowed or not", has
no fallback to a local window when Redis fails (flask-limiter adds that, not `limits`), and
its Redis storage keeps its own connection pool with the library's timeouts and retries. We
need a caller that *waits* for its permit (the wait is the script's answer), a local window
while Redis is down, and the 0.5 s timeouts and 15 s pause of `OptionalRedis` that every
Redis use in larkauth shares. With `limits` that is a wrapper of about the size of this
module around a dependency; this is one 12-line script and one small class.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque

import redis

from larkauth.errors import LarkauthError
from larkauth.redis_client import OptionalRedis

logger = logging.getLogger(__name__)

_SLIDING_WINDOW = """
local key, limit, window, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  return 0
end
local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
return math.max(oldest + window - now, 1)
"""  # returns the microseconds to wait before trying again, 0 when the call may go


class RateLimitTimeout(LarkauthError):
    """No permit within the allowed wait: too many calls to Feishu for this app right now."""


class _LocalWindow:
    """The same sliding window, for this process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def try_acquire(self, key: str, limit: int, window: float) -> float:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) < limit:
                calls.append(now)
                return 0.0
            return max(calls[0] + window - now, 0.000_001)


class RateLimiter:
    """`acquire(app_id)` blocks until a call to Feishu for that app is allowed."""

    def __init__(
        self,
        rate: int,
        redis_url: str = "",
        *,
        window: float = 1.0,
        max_wait: float = 10.0,
        key_prefix: str = "larkauth:feishu-rate:",
        redis_timeout: float = 0.5,
        redis_retry_interval: float = 15.0,
    ) -> None:
        self.rate = rate
        self.window = window
        self.max_wait = max_wait
        self.key_prefix = key_prefix
        # An unreachable Redis means per-process limits, not stalls.
        self._redis = OptionalRedis(
            redis_url, timeout=redis_timeout, retry_interval=redis_retry_interval
        )
        self._script: redis.commands.core.Script | None = None
        self._local = _LocalWindow()
        self._lock = threading.Lock()
        self._degraded_warned = False

    @classmethod
    def from_settings(cls) -> RateLimiter:
        from django.conf import settings

        return cls(settings.FEISHU_RATE_LIMIT_PER_SECOND, settings.REDIS_URL)

    @property
    def shared(self) -> bool:
        """True while the limit is shared through Redis."""
        return self._redis.available

    def acquire(self, app_id: str, *, max_wait: float | None = None) -> float:
        """Wait for a permit; returns the seconds waited. Raises `RateLimitTimeout`."""
        if self.rate <= 0:
            return 0.0
        started = time.monotonic()
        deadline = started + (self.max_wait if max_wait is None else max_wait)
        while True:
            wait = self._try_acquire(app_id)
            now = time.monotonic()
            if wait == 0:
                return now - started
            if now + wait > deadline:
                raise RateLimitTimeout(
                    f"Feishu rate limit for {app_id}: no permit within "
                    f"{deadline - started:.1f}s ({self.rate} calls per {self.window:g}s)"
                )
            # A little jitter so waiting processes do not all retry in the same instant.
            time.sleep(wait + random.uniform(0, 0.005))  # noqa: S311 - not for security

    def _try_acquire(self, app_id: str) -> float:
        script = self._redis_script()
        if script is not None:
            try:
                wait_us = script(
                    keys=[self.key_prefix + app_id],
                    args=[self.rate, int(self.window * 1_000_000), uuid.uuid4().hex],
                )
            except redis.RedisError as exc:
                self._redis_failed(exc)
            else:
                self._redis_ok()
                return int(wait_us) / 1_000_000
        return self._local.try_acquire(app_id, self.rate, self.window)

    def _redis_script(self) -> redis.commands.core.Script | None:
        if not self._redis.url:
            self._warn_degraded("REDIS_URL is not set")
            return None
        client = self._redis.client()
        if client is None:
            return None
        with self._lock:
            if self._script is None:
                self._script = client.register_script(_SLIDING_WINDOW)
            return self._script

    def _redis_failed(self, exc: redis.RedisError) -> None:
        self._redis.failed()
        self._warn_degraded(f"Redis is unreachable ({type(exc).__name__})")

    def _redis_ok(self) -> None:
        if self._degraded_warned:
            self._degraded_warned = False
            logger.info("Feishu rate limit is shared through Redis again")

    def _warn_degraded(self, reason: str) -> None:
        if not self._degraded_warned:
            self._degraded_warned = True
            logger.warning(
                "%s: limiting Feishu calls per process (%d per %gs each), not across processes",
                reason,
                self.rate,
                self.window,
            )


_default: RateLimiter | None = None
_default_lock = threading.Lock()


def default_limiter() -> RateLimiter:
    """The process-wide limiter built from settings (`FEISHU_RATE_LIMIT_PER_SECOND`)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RateLimiter.from_settings()
        return _default
