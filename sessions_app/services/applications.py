"""Writes and side effects. Views, admin actions, tasks and commands call these."""

from __future__ import annotations

from django.conf import settings

from sessions_app.models import Application


def application_ensure_default() -> Application | None:
    """Create or update the application named by LARK_APP_ID / LARK_APP_SECRET."""
    if not settings.LARK_APP_ID or not settings.LARK_APP_SECRET:
        return None
    domain = (
        Application.Domain.LARK
        if "larksuite.com" in settings.LARK_DOMAIN
        else Application.Domain.FEISHU
    )
    app, created = Application.objects.get_or_create(
        app_id=settings.LARK_APP_ID,
        defaults={
            "name": settings.LARK_APP_ID,
            "app_secret": settings.LARK_APP_SECRET,
            "encrypt_key": settings.LARK_ENCRYPT_KEY,
            "verification_token": settings.LARK_VERIFICATION_TOKEN,
            "domain": domain,
        },
    )
    if not created:
        wanted = {
            "app_secret": settings.LARK_APP_SECRET,
            "encrypt_key": settings.LARK_ENCRYPT_KEY,
            "verification_token": settings.LARK_VERIFICATION_TOKEN,
        }
        changed = [name for name, value in wanted.items() if getattr(app, name) != value]
        if changed:
            for name in changed:
                setattr(app, name, wanted[name])
            app.save(update_fields=[*changed, "updated_at"])
    return app
