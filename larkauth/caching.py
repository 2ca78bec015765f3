"""Per-process caches of rows read on every request and changed rarely, one lifetime each.

Each lifetime below is how long a change made in another process takes to apply here; a
save or delete of an application in this process clears the application caches at once
(`sessions_app/signals.py`, `events_app/apps.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

# A verified API key (sessions_app/api/permissions.py): a revoked key stops working
# everywhere within this time.
API_KEY_SECONDS = 10.0
# An application row of the API (sessions_app/selectors.py): a deactivated application
# stops working within this time.
APPLICATION_SECONDS = 10.0
# The active applications with their decrypted keys, for /lark/events/
# (events_app/callback.py): a changed encrypt key or verification token applies within it.
CALLBACK_APPLICATIONS_SECONDS = 30.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A thread-safe `cachetools.TTLCache` that loads what it misses (outside its lock)."""

    def __init__(self, seconds: float, maxsize: int = 1024) -> None:
        self.seconds = seconds
        self._cache: cachetools.TTLCache[K, V] = cachetools.TTLCache(
            maxsize, seconds, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[], V], *, reload: bool = False) -> V:
        if not reload:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
        value = load()
        with self._lock:
            self._cache[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
