"""One tenant/app token cache per FeishuClient, inside lark-oapi's token manager.

lark-oapi's `TokenManager` fetches and caches app and tenant access tokens (until 10
minutes before they expire) in one class-level cache keyed by app id only, so two clients
for the same app id (another domain, a rotated secret, a reset sandbox) would share
tokens. `sdk.install_patches()` swaps that cache for a `ScopedCache`, which forwards to
the `TokenStore` of the client making the call, chosen through a context variable; calls
outside any client's scope keep using lark-oapi's own cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

_current_store: ContextVar[TokenStore | None] = ContextVar("larkauth_token_store", default=None)


class Cache(Protocol):
    """lark-oapi's `ICache`."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, expire: int) -> None: ...


class TokenStore:
    """The app/tenant tokens of one client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires_at = entry
            if expires_at <= time.time():
                del self._entries[key]
                return None
            return value

    def set(self, key: str, value: str, expire: int) -> None:
        """`expire` is a Unix time in seconds, as lark-oapi passes it."""
        with self._lock:
            self._entries[key] = (value, float(expire))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class ScopedCache:
    def __init__(self, fallback: Cache) -> None:
        self.fallback = fallback

    def get(self, key: str) -> str | None:
        value: str | None = (_current_store.get() or self.fallback).get(key)
        return value

    def set(self, key: str, value: str, expire: int) -> None:
        (_current_store.get() or self.fallback).set(key, value, expire)


@contextmanager
def using(store: TokenStore) -> Iterator[None]:
    """lark-oapi calls made inside use `store` for app/tenant tokens."""
    token = _current_store.set(store)
    try:
        yield
    finally:
        _current_store.reset(token)
