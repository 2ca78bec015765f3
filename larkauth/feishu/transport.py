"""HTTP sessions for every call to Feishu: kept alive, with the environment read once.

lark-oapi 1.7 sends every API call with the module function `requests.request`: a new
session, so a new TCP and TLS connection to Feishu, per call. It has no setting for an
HTTP client, so `sdk.install_patches()` gives its transport module `PooledRequests`, a
stand-in for `requests` whose `request()` goes through one session per thread (sessions
are not documented as thread-safe; urllib3's pool behind each is).

A plain `requests.Session` re-reads the environment on every call: it walks `os.environ`
about six times for the proxy variables and looks for `~/.netrc`, which cost more CPU
than the rest of the call here. `session()` reads the proxies once per origin and the CA
bundle once per session; netrc is not consulted (its credentials would replace the
`Authorization` header Feishu calls carry).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies


class _Session(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("proxies") is None:
            parts = urlsplit(url if isinstance(url, str) else url.decode())
            kwargs["proxies"] = environ_proxies(parts.scheme, parts.netloc)
        return super().request(method, url, *args, **kwargs)


@functools.lru_cache(maxsize=64)
def environ_proxies(scheme: str, netloc: str) -> dict[str, str]:
    """`HTTP(S)_PROXY`/`NO_PROXY` as requests reads them, once per origin (per process)."""
    return get_environ_proxies(f"{scheme}://{netloc}")


def session() -> requests.Session:
    return _Session()


class PooledRequests:
    """The part of the `requests` module lark-oapi's transport uses, on kept-alive sessions."""

    def __init__(self) -> None:
        self._local = threading.local()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        http: requests.Session | None = getattr(self._local, "session", None)
        if http is None:
            http = self._local.session = session()
        return http.request(method, url, **kwargs)
