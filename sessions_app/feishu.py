"""One Feishu client per application, built from its row and reused across requests."""

from __future__ import annotations

import hashlib
import logging
import threading

from django.conf import settings
from django_cryptography.utils.crypto import InvalidToken

from larkauth.feishu import FeishuClient
from larkauth.ratelimit import default_limiter
from sessions_app.models import Application

logger = logging.getLogger(__name__)

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


def client_if_readable(app: Application) -> FeishuClient | None:
    """The application's client, or None when no key of LARKAUTH_ENCRYPTION_KEYS decrypts
    its secret (logged): a job over all applications skips this one and goes on. Load the
    row with its secrets deferred, so that the failure comes here and not when listing."""
    try:
        return client_for(app)
    except InvalidToken:
        logger.error(
            "Application %s skipped: no key of LARKAUTH_ENCRYPTION_KEYS decrypts its secret "
            "(restore the key it was written under, or set the secret again in admin)",
            app.app_id,
        )
        return None
