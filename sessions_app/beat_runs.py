"""The last run of each beat-scheduled task (`BeatRun`), recorded from Celery's
`task_success` / `task_failure` signals for the admin overview.

One row per task, overwritten by each run: `flush_token_audit` runs every 10 s, so this is
one UPDATE per run, never a growing table. Recording never fails the task: a database that
cannot take the row is logged and the next run writes again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery.signals import task_failure, task_success
from django.utils import timezone

from larkauth.redaction import redact

logger = logging.getLogger(__name__)

# The tasks celery beat runs (`sessions_app.services.schedules.default_schedules`); the card
# tasks run per card and are not "runs" of anything.
BEAT_TASKS = frozenset(
    f"sessions_app.tasks.{name}"
    for name in (
        "refresh_expiring_tokens",
        "sync_user_info",
        "expire_pending_sessions",
        "flush_token_audit",
        "cleanup_auth_sessions",
        "check_refresh_token_expiry",
    )
)


def short_name(task: str) -> str:
    return task.rpartition(".")[2]


def _summary(value: Any, limit: int) -> str:
    try:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record(task: str, succeeded: bool, result: str) -> None:
    from sessions_app.models import BeatRun

    now = timezone.now()
    limit = BeatRun._meta.get_field("result").max_length or 300
    fields = ["succeeded", "result", "finished_at"] + (["last_success_at"] if succeeded else [])
    BeatRun.objects.bulk_create(
        [
            BeatRun(
                task=task,
                succeeded=succeeded,
                result=_summary(result, limit),
                finished_at=now,
                last_success_at=now if succeeded else None,
            )
        ],
        update_conflicts=True,
        unique_fields=["task"],
        update_fields=fields,
    )


def _safely(task: str, succeeded: bool, result: str) -> None:
    try:
        record(task, succeeded, result)
    except Exception as exc:  # never fail the task over its record
        logger.warning("Could not record the run of %s: %s", short_name(task), exc)


@task_success.connect
def beat_task_succeeded(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
    name = getattr(sender, "name", "")
    if name in BEAT_TASKS:
        _safely(name, True, _summary(result, 1000))


@task_failure.connect
def beat_task_failed(
    sender: Any = None, exception: BaseException | None = None, **kwargs: Any
) -> None:
    name = getattr(sender, "name", "")
    if name in BEAT_TASKS:
        _safely(name, False, f"{type(exception).__name__}: {exception}")
