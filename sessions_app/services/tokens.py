"""Handing out user access tokens, refreshing them single-flight, revoking them.

Feishu refresh tokens are single-use: two processes refreshing the same authorization at
once would kill it. Every refresh therefore runs under the authorization's row lock and
re-checks, after taking the lock, whether another process already refreshed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from larkauth.errors import AuthenticationRequiredError, FeishuError, TokenRefreshFailedError
from larkauth.feishu import UserToken
from sessions_app import metrics, selectors
from sessions_app.feishu import client_for
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.services import audit
from sessions_app.services.authorization import record_event

logger = logging.getLogger(__name__)

# last_used_at feeds the warm-refresh window; writing it on every read would cost a write
# per token request for no gain.
LAST_USED_RESOLUTION = timedelta(minutes=5)
DEFAULT_ACCESS_TOKEN_LIFETIME = timedelta(hours=2)


@dataclass(frozen=True)
class ActiveToken:
    access_token: str
    token_type: str
    expires_at: datetime
    scope: str
    open_id: str
    user_id: str
    name: str

    def __repr__(self) -> str:
        return f"ActiveToken(open_id={self.open_id!r}, expires_at={self.expires_at!r})"

    def as_json(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "scope": self.scope,
            "open_id": self.open_id,
            "user_id": self.user_id,
            "name": self.name,
        }


def needs_refresh(session: UserAuthSession, now: datetime) -> bool:
    """Past AUTH_TOKEN_REFRESH_THRESHOLD of the access token's lifetime."""
    if session.token_expires_at is None:
        return True
    issued_at = session.last_refreshed_at or session.completed_at
    lifetime = session.token_expires_at - issued_at if issued_at else DEFAULT_ACCESS_TOKEN_LIFETIME
    remaining = session.token_expires_at - now
    return remaining <= lifetime * (1 - settings.AUTH_TOKEN_REFRESH_THRESHOLD)


def token_issue(
    app: Application,
    *,
    open_id: str = "",
    user_id: str = "",
    email: str = "",
    auto_refresh: bool = True,
    actor: str = "",
) -> ActiveToken:
    """A valid access token for the user, refreshed first when it is expiring."""
    session = selectors.authorization_get(app, open_id=open_id, user_id=user_id, email=email)
    if session is None or session.state != SessionState.COMPLETED:
        metrics.TOKEN_REQUESTS.labels("authorization_required").inc()
        raise AuthenticationRequiredError(
            app_id=app.app_id,
            open_id=session.open_id if session else open_id,
            user_id=user_id,
            email=email,
            reason=session.state if session else "not_authorized",
        )
    now = timezone.now()
    result = "served"
    if auto_refresh and needs_refresh(session, now):
        session = token_refresh(session.pk, actor=actor)
        result = "refreshed"
    elif not session.token_valid_at(now):
        metrics.TOKEN_REQUESTS.labels("expired").inc()
        raise TokenRefreshFailedError("The access token has expired and auto_refresh is off")

    if session.last_used_at is None or now - session.last_used_at > LAST_USED_RESOLUTION:
        UserAuthSession.objects.filter(pk=session.pk).update(last_used_at=now)
    audit.token_issued(session, actor)
    metrics.TOKEN_REQUESTS.labels(result).inc()
    assert session.access_token is not None
    assert session.token_expires_at is not None
    return ActiveToken(
        access_token=session.access_token,
        token_type="Bearer",  # noqa: S106
        expires_at=session.token_expires_at,
        scope=session.scope,
        open_id=session.open_id,
        user_id=session.user_id,
        name=session.user_name,
    )


def token_refresh(
    session_pk: UUID | str, *, force: bool = False, actor: str = ""
) -> UserAuthSession:
    """Refresh one authorization exactly once, however many processes ask at the same time.

    A transient failure keeps the authorization and its still-valid token (served if any
    time is left); a permanent one moves it to `needs_reauth`. The failure is recorded in
    the transaction and raised only after it commits.
    """
    now = timezone.now()
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=session_pk)
        )
        if session.state != SessionState.COMPLETED or session.refresh_token is None:
            raise AuthenticationRequiredError(
                app_id=session.app.app_id, open_id=session.open_id, reason=session.state
            )
        if not force and not needs_refresh(session, now):
            return session  # another process refreshed while we waited for the lock
        try:
            token = client_for(session.app).refresh_user_token(session.refresh_token)
        except FeishuError as exc:
            error = _record_refresh_failure(session, exc, now, actor)
        else:
            _store_refreshed(session, token, now, actor)
            error = None
    if error is not None:
        raise error
    return session


def _store_refreshed(session: UserAuthSession, token: UserToken, now: datetime, actor: str) -> None:
    session.access_token = token.access_token
    session.refresh_token = token.refresh_token or session.refresh_token
    session.scope = token.scope or session.scope
    session.token_expires_at = token.expires_at
    if token.refresh_token_expires_at is not None:
        session.refresh_token_expires_at = token.refresh_token_expires_at
    session.last_refreshed_at = now
    session.refresh_failures = 0
    session.version += 1
    session.save()
    record_event(session, TokenEvent.Kind.REFRESHED, actor)
    metrics.TOKEN_REFRESH.labels("success").inc()


def _record_refresh_failure(
    session: UserAuthSession, exc: FeishuError, now: datetime, actor: str
) -> Exception | None:
    """Store what the failure means; return the error for the caller, None to serve on."""
    if exc.permanent:
        session.state = SessionState.NEEDS_REAUTH
        session.failure_reason = f"refresh_failed:{exc.code or exc.http_status}"
        session.access_token = None
        session.refresh_token = None
        session.version += 1
        session.save()
        record_event(session, TokenEvent.Kind.NEEDS_REAUTH, actor, code=exc.code)
        metrics.TOKEN_REFRESH.labels("needs_reauth").inc()
        logger.warning("Authorization %s needs re-authorization: %s", session.pk, exc)
        return AuthenticationRequiredError(
            app_id=session.app.app_id, open_id=session.open_id, reason="needs_reauth"
        )
    session.refresh_failures += 1
    session.save(update_fields=["refresh_failures", "updated_at"])
    record_event(session, TokenEvent.Kind.REFRESH_FAILED, actor, code=exc.code)
    metrics.TOKEN_REFRESH.labels("transient_failure").inc()
    if session.token_valid_at(now):
        return None
    return TokenRefreshFailedError(str(exc))


def authorization_revoke(app: Application, open_id: str, actor: str = "") -> bool:
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update()
            .filter(
                app=app,
                open_id=open_id,
                state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH],
            )
            .first()
        )
        if session is None:
            return False
        session.state = SessionState.REVOKED
        session.access_token = None
        session.refresh_token = None
        session.version += 1
        session.save()
        record_event(session, TokenEvent.Kind.REVOKED, actor)
    return True


def get_active_token(
    app_id: str | None,
    user_id: str | None = None,
    open_id: str | None = None,
    raise_if_missing: bool = True,
    auto_refresh: bool = True,
) -> str | None:
    """In-process API for services: the user's valid access token.

    Raises `AuthenticationRequiredError` (with what is needed to send a card) when the user
    has not authorized or must authorize again, `TokenRefreshFailedError` when Feishu could
    not refresh an expired token. With `raise_if_missing=False` those return None.
    """
    app = selectors.application_get(app_id)
    try:
        return token_issue(
            app,
            open_id=open_id or "",
            user_id=user_id or "",
            auto_refresh=auto_refresh,
            actor="python",
        ).access_token
    except (AuthenticationRequiredError, TokenRefreshFailedError):
        if raise_if_missing:
            raise
        return None
