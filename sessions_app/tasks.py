"""Celery beat's jobs: one-line adapters over `sessions_app.services`.

Each is safe to run twice at once or again after a lost worker (`acks_late`): the services
re-check under row locks. Time limits leave the refresh sweep and the expiry check room to
finish the work they started; the sweep also stops taking candidates before its soft limit.
Schedules: `sessions_app.services.schedules`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from larkauth.backoff import TASK_RETRIES
from larkauth.errors import FeishuError
from sessions_app import services
from sessions_app.services import delivery

logger = logging.getLogger(__name__)

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
    return services.cleanup_run().total


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def check_refresh_token_expiry() -> dict[str, Any]:
    return services.refresh_token_expiry_check().as_dict()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def flush_token_audit() -> int:
    return services.token_audit_flush()


# --- The authorization card (services/delivery.py) ----------------------------------------

# Five retries, 1 s doubling to 30 s with jitter: about a minute, well inside the card's
# AUTH_SESSION_EXPIRY_SECONDS.
CARD_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=CARD_RETRIES, soft_time_limit=50, time_limit=60)
def send_auth_card(self: Any, session_id: str, reason: str | None, actor: str = "") -> None:
    try:
        delivery.card_send(session_id, reason, actor)
    except FeishuError as exc:
        if exc.retryable and self.request.retries < CARD_RETRIES:
            raise self.retry(countdown=TASK_RETRIES.delay(self.request.retries + 1)) from exc
        delivery.card_send_failed(session_id, exc)


@shared_task(bind=True, acks_late=True, max_retries=CARD_RETRIES, soft_time_limit=50, time_limit=60)
def show_auth_card(self: Any, message_id: str) -> None:
    try:
        delivery.card_show(message_id)
    except FeishuError as exc:
        if exc.retryable and self.request.retries < CARD_RETRIES:
            raise self.retry(countdown=TASK_RETRIES.delay(self.request.retries + 1)) from exc
        logger.warning("Card %s not updated: %s", message_id, exc)
