"""Celery beat's jobs: one-line adapters over `sessions_app.services`.

Each is safe to run twice at once or again after a lost worker (`acks_late`): the services
re-check under row locks. Time limits leave the refresh sweep and the expiry check room to
finish the work they started; the sweep also stops taking candidates before its soft limit.
Schedules: `sessions_app.services.schedules`.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from sessions_app import services

REFRESH_TIME_BUDGET = 200  # seconds of candidates per run; the rest is the next run's
SYNC_TIME_BUDGET = 3000  # seconds of users per sync run; the next run resumes


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def refresh_expiring_tokens() -> dict[str, Any]:
    return services.tokens_refresh_expiring(time_budget=REFRESH_TIME_BUDGET).as_dict()


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def sync_user_info() -> dict[str, Any]:
    if not settings.USER_INFO_SYNC_ENABLED:
        return {"skipped": "USER_INFO_SYNC_ENABLED is off"}
    return services.users_sync_info(time_budget=SYNC_TIME_BUDGET).as_dict()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def expire_pending_sessions() -> int:
    return services.sessions_expire_all_stale()


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def cleanup_auth_sessions() -> int:
    return services.auth_sessions_delete_old() + services.processed_events_delete_old()


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def check_refresh_token_expiry() -> dict[str, Any]:
    return services.refresh_token_expiry_check().as_dict()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def flush_token_audit() -> int:
    return services.token_audit_flush()
