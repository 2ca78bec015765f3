"""Reads. Writes live in `sessions_app.services`."""

from __future__ import annotations

import threading
import time

from django.db.models import Q, QuerySet

from sessions_app.models import Application, AuthMethod, SessionState, UserAuthSession

SECRET_FIELDS = ("app_secret", "encrypt_key", "verification_token")
# What handing out a token reads; the refresh path re-reads the whole row under its lock.
TOKEN_READ_FIELDS = (
    "app_id",
    "open_id",
    "user_id",
    "user_name",
    "state",
    "access_token",
    "scope",
    "token_expires_at",
    "last_refreshed_at",
    "last_used_at",
    "completed_at",
)


# Every API request names an application; rows change rarely. A change made in another
# process shows here within this time (this process's own saves clear it at once).
APPLICATION_CACHE_SECONDS = 10.0
_applications: dict[str, tuple[float, Application]] = {}
_applications_lock = threading.Lock()


def application_get(app_id: str | None) -> Application:
    """The named active application; unnamed: the LARK_APP_ID one, else the only one."""
    key = app_id or ""
    now = time.monotonic()
    with _applications_lock:
        cached = _applications.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    app = _application_lookup(app_id)
    with _applications_lock:
        _applications[key] = (now + APPLICATION_CACHE_SECONDS, app)
    return app


def applications_forget() -> None:
    with _applications_lock:
        _applications.clear()


def _application_lookup(app_id: str | None) -> Application:
    from sessions_app.services.applications import application_ensure_default

    if app_id:
        # Secrets are loaded (and decrypted) only when a Feishu call needs them.
        return Application.objects.defer(*SECRET_FIELDS).get(app_id=app_id, is_active=True)
    default = application_ensure_default()
    if default is not None and default.is_active:
        return default
    active = list(Application.objects.defer(*SECRET_FIELDS).filter(is_active=True)[:2])
    if len(active) == 1:
        return active[0]
    raise Application.DoesNotExist("No app_id given and no single default application")


def user_filter(open_id: str = "", user_id: str = "", email: str = "") -> Q:
    if open_id:
        return Q(open_id=open_id)
    if user_id:
        return Q(user_id=user_id)
    return Q(email__iexact=email)


def authorization_get(app: Application, who: Q) -> UserAuthSession | None:
    """The user's authorization: the completed row, else the latest that needs the user."""
    rows = UserAuthSession.objects.filter(who, app=app).only(*TOKEN_READ_FIELDS)
    completed = rows.filter(state=SessionState.COMPLETED).first()
    if completed is not None:
        return completed
    return rows.filter(state__in=[SessionState.NEEDS_REAUTH, SessionState.REVOKED]).first()


def authorizations_list(app: Application) -> QuerySet[UserAuthSession]:
    return UserAuthSession.objects.filter(
        app=app, state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH]
    ).order_by("user_name", "open_id")


def pending_card_get(app: Application, open_id: str) -> UserAuthSession | None:
    """The user's open card session (at most one: uq_auth_session_one_pending_card)."""
    return UserAuthSession.objects.filter(
        app=app, open_id=open_id, state=SessionState.PENDING, auth_method=AuthMethod.CARD
    ).first()
