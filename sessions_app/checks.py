"""Start-up checks: a bad setting stops the process with a message that names it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from sessions_app.encryption import KeyConfigError, validate_key


@register(Tags.security, deploy=False)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = [
        Error(message, id=f"larkauth.E001.{name}") for name, message in settings.SETTINGS_ERRORS
    ]
    errors += _check_encryption_keys()

    threshold = settings.AUTH_TOKEN_REFRESH_THRESHOLD
    if not 0 < threshold < 1:
        errors.append(
            Error(
                "AUTH_TOKEN_REFRESH_THRESHOLD must be between 0 and 1 (exclusive), "
                f"got {threshold}.",
                id="larkauth.E010",
            )
        )
    for name in (
        "AUTH_SESSION_EXPIRY_SECONDS",
        "AUTH_REQUEST_RATE_LIMIT",
        "AUTH_SESSION_RETENTION_DAYS",
        "FEISHU_RATE_LIMIT_PER_SECOND",
        "WEBSOCKET_APPS_RESCAN_SECONDS",
    ):
        if getattr(settings, name) <= 0:
            errors.append(
                Error(
                    f"{name} must be positive, got {getattr(settings, name)}.", id="larkauth.E011"
                )
            )
    for name in (
        "AUTH_REAUTH_CARD_INTERVAL",
        "AUTH_KEEPALIVE_MARGIN",
        "AUTH_WARM_WINDOW",
        "WEBSOCKET_MAX_RECONNECT_RETRIES",
    ):
        if getattr(settings, name) < 0:
            errors.append(
                Error(
                    f"{name} must not be negative, got {getattr(settings, name)}.",
                    id="larkauth.E012",
                )
            )
    if settings.LOG_FORMAT not in {"json", "console"}:
        errors.append(
            Error(
                f"LOG_FORMAT must be 'json' or 'console', got {settings.LOG_FORMAT!r}.",
                id="larkauth.E013",
            )
        )
    if len(settings.USER_INFO_SYNC_SCHEDULE.split()) != 5:
        errors.append(
            Error(
                "USER_INFO_SYNC_SCHEDULE must be a cron expression of five fields, "
                f"got {settings.USER_INFO_SYNC_SCHEDULE!r}.",
                id="larkauth.E014",
            )
        )
    for name in ("LARKAUTH_PUBLIC_URL", "LARK_DOMAIN", "LARK_ACCOUNTS_DOMAIN"):
        url = urlparse(getattr(settings, name))
        if url.scheme not in {"http", "https"} or not url.netloc:
            errors.append(
                Error(
                    f"{name} must be an http(s) URL, got {getattr(settings, name)!r}.",
                    id="larkauth.E015",
                )
            )
    if not settings.DEBUG and settings.SECRET_KEY.startswith("dev-only-"):
        errors.append(
            Error("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false.", id="larkauth.E016")
        )
    if not settings.DEBUG and not settings.METRICS_TOKEN:
        errors.append(
            Warning(
                "METRICS_TOKEN is not set: /metrics (database counts on every scrape) answers "
                "anyone who can reach it.",
                hint="Set a long random METRICS_TOKEN; Prometheus sends it as a bearer token.",
                id="larkauth.W001",
            )
        )
    if bool(settings.LARK_APP_ID) != bool(settings.LARK_APP_SECRET):
        errors.append(
            Error("LARK_APP_ID and LARK_APP_SECRET must be set together.", id="larkauth.E017")
        )
    return errors


def _check_encryption_keys() -> list[CheckMessage]:
    keys = settings.LARKAUTH_ENCRYPTION_KEYS
    if not keys:
        return [
            Error(
                "LARKAUTH_ENCRYPTION_KEYS is not set: tokens cannot be stored encrypted.",
                hint='Generate one with: python -c "import base64, os; '
                'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"',
                id="larkauth.E002",
            )
        ]
    errors: list[CheckMessage] = []
    for position, key in enumerate(keys, start=1):
        try:
            validate_key(key)
        except KeyConfigError as exc:
            errors.append(
                Error(
                    f"LARKAUTH_ENCRYPTION_KEYS: key {position} is malformed ({exc}).",
                    hint="Each key is 32 random bytes, url-safe base64 encoded (44 characters).",
                    id="larkauth.E003",
                )
            )
    return errors
