from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver


@receiver(post_migrate)
def create_default_application(sender: AppConfig, **kwargs: Any) -> None:
    """LARK_* seeds the default application; an existing one is left as admin keeps it."""
    if sender.name != "sessions_app":
        return
    from sessions_app.services.applications import application_ensure_default

    application_ensure_default()


@receiver(post_migrate)
def create_default_beat_schedules(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    if sender.name != "sessions_app":
        return
    from sessions_app.services.schedules import beat_schedules_ensure

    beat_schedules_ensure(using=using)


@receiver(post_save, sender="sessions_app.Application")
@receiver(post_delete, sender="sessions_app.Application")
def forget_cached_applications(**kwargs: Any) -> None:
    from sessions_app.selectors import applications_forget

    applications_forget()
