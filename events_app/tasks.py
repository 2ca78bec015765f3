"""Celery tasks of the event channels: slow work that must not hold up the 3 s answer."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from larkauth.backoff import TASK_RETRIES
from larkauth.errors import FeishuError, RateLimitedError
from sessions_app import services
from sessions_app.models import Application

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=3)
def authorization_request_from_message(self: Any, app_id: str, open_id: str, event_id: str) -> None:
    app = Application.objects.get(app_id=app_id, is_active=True)
    try:
        services.auth_request_by_user(app, open_id, reply_key=event_id)
    except RateLimitedError:
        logger.info("User %s asked to authorize too often; no card sent", open_id)
    except FeishuError as exc:
        if exc.permanent:
            raise
        raise self.retry(exc=exc, countdown=TASK_RETRIES.delay(self.request.retries + 1)) from exc
