"""One Feishu client per application, built from its row and reused across requests."""

from __future__ import annotations

import hashlib
import threading

from django.conf import settings

from larkauth.feishu import FeishuClient
from larkauth.ratelimit import default_limiter
from sessions_app.models import Application

_clients: dict[tuple[str, ...], FeishuClient] = {}
_lock = threading.Lock()


def client_for(app: Application) -> FeishuClient:
    # The secret is part of the key (hashed) so a secret changed in admin takes effect.
    key = (
        app.app_id,
        hashlib.sha256(app.app_secret.encode()).hexdigest(),
        app.api_base_url,
        app.accounts_base_url,
        str(settings.FEISHU_HTTP_TIMEOUT),
    )
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = FeishuClient(
                app.app_id,
                app.app_secret,
                domain=app.api_base_url,
                accounts_domain=app.accounts_base_url,
                timeout=settings.FEISHU_HTTP_TIMEOUT,
                rate_limiter=default_limiter(),
            )
            _clients[key] = client
        return client
