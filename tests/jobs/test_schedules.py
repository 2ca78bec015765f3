"""Beat schedules exist after migrate, once, and stay as the operator edited them."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app as celery_app
from sessions_app.services.schedules import default_schedules

pytestmark = pytest.mark.django_db

EXPECTED = {
    "refresh_expiring_tokens": "every 5 minutes",
    "expire_pending_sessions": "every minute",
    "flush_token_audit": "every 10 seconds",
    "cleanup_auth_sessions": "every 60 minutes",
    "check_refresh_token_expiry": "0 9,21 * * * (m/h/dM/MY/d) Asia/Shanghai",
    "sync_user_info": "30 3 * * * (m/h/dM/MY/d) Asia/Shanghai",
}


def _schedules() -> dict[str, str]:
    return {
        task.name: str(task.interval or task.crontab)
        for task in PeriodicTask.objects.select_related("interval", "crontab")
    }


def test_the_default_schedules_exist_after_migrate_and_after_a_second_migrate(settings) -> None:
    settings.USER_INFO_SYNC_ENABLED = True
    settings.USER_INFO_SYNC_SCHEDULE = "30 3 * * *"
    PeriodicTask.objects.all().delete()

    call_command("migrate", verbosity=0)
    assert _schedules() == EXPECTED
    call_command("migrate", verbosity=0)
    assert _schedules() == EXPECTED
    assert PeriodicTask.objects.count() == len(EXPECTED)


def test_a_redeploy_keeps_what_the_operator_changed(settings) -> None:
    call_command("migrate", verbosity=0)
    refresh = PeriodicTask.objects.get(name="refresh_expiring_tokens")
    refresh.interval, _ = IntervalSchedule.objects.get_or_create(
        every=10, period=IntervalSchedule.MINUTES
    )
    refresh.save()
    PeriodicTask.objects.filter(name="cleanup_auth_sessions").update(enabled=False)

    call_command("migrate", verbosity=0)

    assert str(PeriodicTask.objects.get(name="refresh_expiring_tokens").interval) == (
        "every 10 minutes"
    )
    assert not PeriodicTask.objects.get(name="cleanup_auth_sessions").enabled


def test_user_info_sync_is_scheduled_only_when_enabled(settings) -> None:
    settings.USER_INFO_SYNC_ENABLED = False
    assert "sync_user_info" not in {schedule.name for schedule in default_schedules()}


def test_every_scheduled_task_is_a_registered_task(settings) -> None:
    settings.USER_INFO_SYNC_ENABLED = True
    celery_app.loader.import_default_modules()
    for schedule in default_schedules():
        assert schedule.task in celery_app.tasks, schedule.task
