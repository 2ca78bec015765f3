"""Reads. Writes live in `sessions_app.services`."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from sessions_app.models import Application, SessionState, UserAuthSession


def application_get(app_id: str | None) -> Application:
    """The named active application; unnamed: the LARK_APP_ID one, else the only one."""
    from sessions_app.services.applications import application_ensure_default

    if app_id:
        return Application.objects.get(app_id=app_id, is_active=True)
    default = application_ensure_default()
    if default is not None and default.is_active:
        return default
    active = list(Application.objects.filter(is_active=True)[:2])
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
    rows = UserAuthSession.objects.filter(who, app=app)
    completed = rows.filter(state=SessionState.COMPLETED).first()
    if completed is not None:
        return completed
    return rows.filter(state__in=[SessionState.NEEDS_REAUTH, SessionState.REVOKED]).first()


def authorizations_list(app: Application) -> QuerySet[UserAuthSession]:
    return UserAuthSession.objects.filter(
        app=app, state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH]
    ).order_by("user_name", "open_id")


def pending_session_get(app: Application, open_id: str) -> UserAuthSession | None:
    return UserAuthSession.objects.filter(
        app=app, open_id=open_id, state=SessionState.PENDING
    ).first()
