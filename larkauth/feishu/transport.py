"""Kept-alive connections for lark-oapi's calls.

lark-oapi 1.7 sends every API call with the module function `requests.request`: a new
session, so a new TCP and TLS connection to Feishu, per call. It has no setting for an
HTTP client, so `install()` gives its transport module a stand-in for `requests` whose
`request()` goes through one `requests.Session` per thread (sessions are not documented
as thread-safe; urllib3's pool behind each is). Nothing else of lark-oapi is touched.
"""

from __future__ import annotations

import threading
from typing import Any

import lark_oapi.core.http.transport as lark_transport
import requests


class PooledRequests:
    """The part of the `requests` module lark-oapi's transport uses, on kept-alive sessions."""

    def __init__(self) -> None:
        self._local = threading.local()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session.request(method, url, **kwargs)


def install() -> None:
    if not isinstance(lark_transport.requests, PooledRequests):
        lark_transport.requests = PooledRequests()  # type: ignore[assignment,unused-ignore]
