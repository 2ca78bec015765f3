"""The default Celery beat schedules (PRODUCT.md), created for the operator after `migrate`.

A schedule is created only when none of that name exists, and never changed afterwards: the
operator owns it in the admin (interval, enabled, ...), and a re-deploy neither duplicates
nor resets it. A deleted default comes back on the next migrate: disable it instead. The
settings below give a new database its defaults; later changes to them apply to schedules
created later only. `sync_user_info` is created once USER_INFO_SYNC_ENABLED is on, and
checks the setting again each time it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connections
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

logger = logging.getLogger(__name__)

TASK_PREFIX = "sessions_app.tasks."


@dataclass(frozen=True)
class DefaultSchedule:
    name: str  # the PeriodicTask's name, also the task's short name
    description: str
    every_seconds: int = 0  # an interval schedule, or
    cron: str = ""  # "minute hour day-of-month month day-of-week" in TIME_ZONE
    # A run that waited longer than this in the queue (workers down) is dropped: the next one
    # does the same work.
    expire_seconds: int | None = None

    @property
    def task(self) -> str:
        return TASK_PREFIX + self.name


def default_schedules() -> list[DefaultSchedule]:
    schedules = [
        DefaultSchedule(
            "refresh_expiring_tokens",
            "Keep-alive and warm refresh of user access tokens.",
            every_seconds=5 * 60,
            expire_seconds=5 * 60,
        ),
        DefaultSchedule(
            "expire_pending_sessions",
            "Pending authorization cards past their time: expired, card updated.",
            every_seconds=60,
            expire_seconds=60,
        ),
        DefaultSchedule(
            "flush_token_audit",
            "Write the audit rows of tokens handed out, buffered in Redis, into the audit log.",
            every_seconds=10,
            expire_seconds=10,
        ),
        DefaultSchedule(
            "cleanup_auth_sessions",
            "Delete sessions older than AUTH_SESSION_RETENTION_DAYS (authorizations stay).",
            every_seconds=60 * 60,
            expire_seconds=60 * 60,
        ),
        DefaultSchedule(
            "check_refresh_token_expiry",
            "Warn application admins of authorizations ending within 7 and 3 days, and ended.",
            cron="0 9,21 * * *",
            expire_seconds=6 * 60 * 60,
        ),
    ]
    if settings.USER_INFO_SYNC_ENABLED:
        schedules.append(
            DefaultSchedule(
                "sync_user_info",
                "Update authorized users' names, emails, mobiles and ids from the directory.",
                cron=settings.USER_INFO_SYNC_SCHEDULE,
                expire_seconds=6 * 60 * 60,
            )
        )
    return schedules


def beat_schedules_ensure(using: str = "default") -> list[str]:
    """Create the default schedules that do not exist yet; returns the names created."""
    if PeriodicTask._meta.db_table not in connections[using].introspection.table_names():
        return []  # django_celery_beat is not migrated (yet) on this database
    created = []
    for schedule in default_schedules():
        if PeriodicTask.objects.using(using).filter(name=schedule.name).exists():
            continue
        _, was_created = PeriodicTask.objects.using(using).get_or_create(
            name=schedule.name,
            defaults={
                "task": schedule.task,
                "description": schedule.description,
                "expire_seconds": schedule.expire_seconds,
                **_when(schedule, using),
            },
        )
        if was_created:
            created.append(schedule.name)
    if created:
        logger.info("Created beat schedules: %s", ", ".join(created))
    return created


def _when(schedule: DefaultSchedule, using: str) -> dict[str, object]:
    if schedule.every_seconds:
        every = {"every": schedule.every_seconds, "period": IntervalSchedule.SECONDS}
        if schedule.every_seconds % 60 == 0:
            every = {"every": schedule.every_seconds // 60, "period": IntervalSchedule.MINUTES}
        intervals = IntervalSchedule.objects.using(using)
        interval = intervals.filter(**every).first() or intervals.create(**every)
        return {"interval": interval}
    minute, hour, day_of_month, month_of_year, day_of_week = schedule.cron.split()
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
        "timezone": ZoneInfo(settings.TIME_ZONE),
    }
    crontab = CrontabSchedule.objects.using(using).filter(
        **fields
    ).first() or CrontabSchedule.objects.using(using).create(**fields)
    return {"crontab": crontab}
