"""The default application and the environment (`LARK_*`).

The environment seeds the default application; it never overwrites one. Once the row exists,
admin owns it: a secret or encrypt key set there stays, whatever `LARK_*` says. Applying the
environment to an existing row is an operator's explicit act (`manage.py apply_app_env`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from larkauth import domains
from sessions_app.models import Application

# Stored value ← setting. An empty setting never clears a stored value.
ENV_SECRETS = {
    "app_secret": "LARK_APP_SECRET",
    "encrypt_key": "LARK_ENCRYPT_KEY",
    "verification_token": "LARK_VERIFICATION_TOKEN",
}


@dataclass
class EnvApplied:
    """What `application_apply_env` did; names fields, never values."""

    app: Application
    created: bool = False
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # the setting is empty: stored value stays


def application_ensure_default() -> Application | None:
    """Create the application named by LARK_APP_ID / LARK_APP_SECRET if it does not exist.

    An existing row is returned as it is. Called at fixed points (`migrate`, `demo_setup`,
    the listener's start), never on the request path.
    """
    if not settings.LARK_APP_ID or not settings.LARK_APP_SECRET:
        return None
    app, _ = Application.objects.get_or_create(app_id=settings.LARK_APP_ID, defaults=_seed_values())
    return app


def application_apply_env() -> EnvApplied:
    """Write the non-empty `LARK_*` secrets into the default application, creating it if
    missing. Raises `ValueError` when LARK_APP_ID or LARK_APP_SECRET is unset."""
    if not settings.LARK_APP_ID or not settings.LARK_APP_SECRET:
        raise ValueError("LARK_APP_ID and LARK_APP_SECRET must be set")
    with transaction.atomic():
        app, created = Application.objects.select_for_update().get_or_create(
            app_id=settings.LARK_APP_ID, defaults=_seed_values()
        )
        result = EnvApplied(app=app, created=created)
        if created:
            return result
        for name, setting in ENV_SECRETS.items():
            wanted = getattr(settings, setting)
            if not wanted:
                result.kept.append(name)
            elif getattr(app, name) != wanted:
                setattr(app, name, wanted)
                result.changed.append(name)
        if result.changed:
            app.save(update_fields=[*result.changed, "updated_at"])
    return result


def _seed_values() -> dict[str, str]:
    lark = domains.is_lark(settings.LARK_DOMAIN)
    domain = Application.Domain.LARK if lark else Application.Domain.FEISHU
    return {
        "name": settings.LARK_APP_ID,
        "domain": domain,
        **{name: getattr(settings, setting) for name, setting in ENV_SECRETS.items()},
    }
