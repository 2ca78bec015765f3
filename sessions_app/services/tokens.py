"""Handing out user access tokens, refreshing them single-flight, revoking them.

Feishu refresh tokens are single-use: two processes refreshing the same authorization at
once would kill it. Every refresh therefore runs under the authorization's row lock and
re-checks, after taking the lock, whether another process already refreshed.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from larkauth.errors import (
    ROTATED_CODES,
    AuthenticationRequiredError,
    Failure,
    FeishuError,
    TokenRefreshFailedError,
)
from larkauth.feishu import UserToken
from sessions_app import metrics, selectors
from sessions_app.feishu import client_for
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.policy import needs_refresh
from sessions_app.services import audit
from sessions_app.services.attention import application_flag, application_unflag
from sessions_app.services.audit import record_event

logger = logging.getLogger(__name__)

# last_used_at feeds the warm-refresh window; writing it on every read would cost a write
# per token request for no gain.
LAST_USED_RESOLUTION = timedelta(minutes=5)


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


class RefreshOutcome(enum.StrEnum):
    REFRESHED = "refreshed"
    NOT_DUE = "not_due"  # another process refreshed while we waited for the lock
    BUSY = "busy"  # another process holds the lock past our wait
    FAILED = "failed"


@dataclass(frozen=True)
class RefreshResult:
    outcome: RefreshOutcome
    session: UserAuthSession | None = None
    failure: Failure | None = None
    error: FeishuError | None = None

    def session_or_raise(self, now: datetime) -> UserAuthSession:
        """The session to serve from, or the error a caller of `token_refresh` gets."""
        session = self.session
        if self.outcome is RefreshOutcome.BUSY or session is None:
            raise TokenRefreshFailedError("Another process is refreshing this token; retry")
        if self.outcome is not RefreshOutcome.FAILED:
            return session
        if self.failure is Failure.GRANT_DEAD:
            raise AuthenticationRequiredError(
                app_id=session.app.app_id, open_id=session.open_id, reason="needs_reauth"
            )
        if session.token_valid_at(now):
            return session  # the refresh failed, but the token it would replace still works
        raise TokenRefreshFailedError(str(self.error))


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
        # Wait for a refresh in flight elsewhere (the token it replaces dies a minute after,
        # docs/feishu.md §2.1), but not past the lock wait: then a token that still works is served.
        refresh = authorization_refresh(session.pk, actor=actor)
        if refresh.outcome is not RefreshOutcome.BUSY or not session.token_valid_at(now):
            session = refresh.session_or_raise(now)
            result = "refreshed" if refresh.outcome is RefreshOutcome.REFRESHED else "served"
    elif not session.token_valid_at(now):
        metrics.TOKEN_REQUESTS.labels("expired").inc()
        raise TokenRefreshFailedError("The access token has expired and auto_refresh is off")

    if session.last_used_at is None or now - session.last_used_at > LAST_USED_RESOLUTION:
        _touch_last_used(session.pk, now)
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


def _touch_last_used(pk: UUID, now: datetime) -> None:
    """A hint for the warm window: skipped, not waited for, while a refresh holds the row."""
    with transaction.atomic():
        if UserAuthSession.objects.select_for_update(skip_locked=True).filter(pk=pk).exists():
            UserAuthSession.objects.filter(pk=pk).update(last_used_at=now)


def token_refresh(
    session_pk: UUID | str, *, force: bool = False, actor: str = ""
) -> UserAuthSession:
    """Refresh one authorization once; raise what the caller must act on.

    `AuthenticationRequiredError` when the grant is dead, `TokenRefreshFailedError` when no
    valid token is left (or another process holds the refresh past the lock wait). Any other
    failure keeps the authorization and returns it with its still-valid token.
    """
    return authorization_refresh(session_pk, force=force, actor=actor).session_or_raise(
        timezone.now()
    )


def authorization_refresh(
    session_pk: UUID | str, *, force: bool = False, actor: str = ""
) -> RefreshResult:
    """Refresh one authorization exactly once, however many processes ask at the same time.

    Feishu refresh tokens are single-use, so the call is made holding the row lock (the one
    Feishu call larkauth makes inside a transaction) and bounded twice: by the Feishu
    timeout, and by REFRESH_LOCK_WAIT_SECONDS for those waiting on the lock. What a failure
    does depends on its class (`Failure`); only a dead grant ends the authorization.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            _bound_lock_wait()
            session = (
                # NO KEY UPDATE: audit rows (a foreign key to this row) can still be written.
                UserAuthSession.objects.select_for_update(of=("self",), no_key=True)
                .select_related("app")
                .get(pk=session_pk)
            )
            if session.state != SessionState.COMPLETED or session.refresh_token is None:
                raise AuthenticationRequiredError(
                    app_id=session.app.app_id, open_id=session.open_id, reason=session.state
                )
            if not force and not needs_refresh(session, now):
                return RefreshResult(RefreshOutcome.NOT_DUE, session)
            try:
                token = client_for(session.app).refresh_user_token(session.refresh_token)
            except FeishuError as exc:
                failure = _record_refresh_failure(session, exc, actor)
                return RefreshResult(RefreshOutcome.FAILED, session, failure, exc)
            _store_refreshed(session, token, now, actor)
            return RefreshResult(RefreshOutcome.REFRESHED, session)
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        metrics.TOKEN_REFRESH.labels("lock_busy").inc()
        return RefreshResult(RefreshOutcome.BUSY)


# A refresh holds the row lock for at most one token call (FEISHU_HTTP_TIMEOUT). Those
# waiting behind it give up sooner: a token request gets a clear 503 rather than a queue.
REFRESH_LOCK_WAIT_SECONDS = 3
LOCK_NOT_AVAILABLE = "55P03"


def _bound_lock_wait() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{REFRESH_LOCK_WAIT_SECONDS}s'")


def _store_refreshed(session: UserAuthSession, token: UserToken, now: datetime, actor: str) -> None:
    session.access_token = token.access_token
    session.refresh_token = token.refresh_token or session.refresh_token
    session.scope = token.scope or session.scope
    session.token_expires_at = token.expires_at
    if token.refresh_token_expires_at is not None:
        session.refresh_token_expires_at = token.refresh_token_expires_at
    session.last_refreshed_at = now
    session.refresh_failures = 0
    session.failure_reason = ""
    session.version += 1
    session.save()
    record_event(session, TokenEvent.Kind.REFRESHED, actor)
    application_unflag(session.app)
    metrics.TOKEN_REFRESH.labels("success").inc()


# A refresh that got no answer (a timeout, a dropped connection) may have been carried out
# by Feishu: the rotated refresh token it answered with is lost.
UNANSWERED = "refresh_unanswered"
LOST_ROTATION = "lost_rotation"


def _record_refresh_failure(session: UserAuthSession, exc: FeishuError, actor: str) -> Failure:
    """Store what the failure means for this authorization (README "What happens when…")."""
    failure = exc.failure
    code = exc.code or exc.http_status
    if failure is Failure.GRANT_DEAD:
        lost = exc.code in ROTATED_CODES and session.failure_reason == UNANSWERED
        session.state = SessionState.NEEDS_REAUTH
        session.failure_reason = LOST_ROTATION if lost else f"refresh_failed:{code}"
        session.access_token = None
        session.refresh_token = None
        session.version += 1
        session.save()
        record_event(session, TokenEvent.Kind.NEEDS_REAUTH, actor, code=exc.code)
        metrics.TOKEN_REFRESH.labels(LOST_ROTATION if lost else "needs_reauth").inc()
        logger.warning("Authorization %s needs re-authorization: %s", session.pk, exc)
        return failure
    record_event(session, TokenEvent.Kind.REFRESH_FAILED, actor, code=exc.code, failure=failure)
    if failure is Failure.APP_MISCONFIGURED:
        # Nothing is wrong with this authorization: leave it exactly as it is.
        application_flag(session.app, exc)
        metrics.TOKEN_REFRESH.labels("app_misconfigured").inc()
        return failure
    session.refresh_failures += 1
    if failure is Failure.USER_UNAVAILABLE:
        session.failure_reason = f"user_unavailable:{code}"
        metrics.TOKEN_REFRESH.labels("user_unavailable").inc()
    else:
        if exc.code is None and exc.http_status is None:
            session.failure_reason = UNANSWERED
        if failure is not Failure.TRANSIENT:
            logger.error("Unexpected answer to the refresh of %s: %s", session.pk, exc)
        metrics.TOKEN_REFRESH.labels("transient_failure").inc()
    session.save(update_fields=["refresh_failures", "failure_reason", "updated_at"])
    return failure


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
