"""Rows for tests, built through the real models."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from sessions_app.models import Application, SessionState, UserAuthSession

_seq = itertools.count(1)


def make_app(**fields: Any) -> Application:
    n = next(_seq)
    values: dict[str, Any] = {
        "app_id": f"cli_app_{n}",
        "name": f"App {n}",
        "app_secret": f"app-secret-{n}",
    }
    values.update(fields)
    return Application.objects.create(**values)


def make_authorization(app: Application, **fields: Any) -> UserAuthSession:
    """A completed authorization with tokens."""
    now = timezone.now()
    n = next(_seq)
    values: dict[str, Any] = {
        "app": app,
        "open_id": f"ou_{n:032x}",
        "user_id": f"u{n}",
        "user_name": f"User {n}",
        "state": SessionState.COMPLETED,
        "access_token": f"eyJaccess.{n}.token",
        "refresh_token": f"eyJrefresh.{n}.token",
        "token_expires_at": now + timedelta(hours=2),
        "refresh_token_expires_at": now + timedelta(days=7),
        "completed_at": now,
    }
    values.update(fields)
    return UserAuthSession.objects.create(**values)


def make_pending(app: Application, **fields: Any) -> UserAuthSession:
    n = next(_seq)
    values: dict[str, Any] = {
        "app": app,
        "open_id": f"ou_{n:032x}",
        "state": SessionState.PENDING,
        "expires_at": timezone.now() + timedelta(minutes=10),
    }
    values.update(fields)
    return UserAuthSession.objects.create(**values)
