"""OAuth for a session: start (state and PKCE), the callback (exchange the code once, store
the tokens), and declining, on Feishu's page or on the card.

The state is stored hashed and single-use; the PKCE verifier is taken under the row lock,
so a replayed or concurrent callback never exchanges a code twice.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from larkauth import cards
from larkauth.errors import AuthFlowError, FeishuError
from larkauth.feishu import pkce
from sessions_app import metrics
from sessions_app.feishu import client_for
from sessions_app.models import Application, SessionState, TokenEvent, UserAuthSession
from sessions_app.services.audit import record_event
from sessions_app.services.delivery import card_show_later
from sessions_app.services.sessions import card_recipient_check, session_expire


def callback_url() -> str:
    return settings.LARKAUTH_PUBLIC_URL + reverse("oauth-callback")


def start_url(session: UserAuthSession) -> str:
    return cards.oauth_start_url(settings.LARKAUTH_PUBLIC_URL, str(session.pk))


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def authorization_start(session_id: Any) -> str:
    """Give the session a fresh single-use state and PKCE verifier; return Feishu's URL."""
    state = pkce.new_state()
    verifier = pkce.new_verifier()
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update(of=("self",))
            .select_related("app")
            .filter(pk=session_id)
            .first()
        )
        if session is None:
            raise AuthFlowError("not_found")
        blocked = _blocked_reason(session)
        if blocked is None:
            session.state_token = _hash_state(state)
            session.pkce_verifier = verifier
            session.version += 1
            session.save(update_fields=["state_token", "pkce_verifier", "version", "updated_at"])
    if blocked is not None:
        raise _blocked(session, blocked)
    return client_for(session.app).authorize_url(
        redirect_uri=callback_url(),
        state=state,
        code_challenge=pkce.challenge(verifier),
        scope=settings.AUTH_SCOPES,
    )


def _blocked_reason(session: UserAuthSession) -> str | None:
    """Why this session can no longer be authorized (the page to show), or None."""
    if session.state == SessionState.PENDING:
        if session.expires_at is not None and session.expires_at <= timezone.now():
            return "expired"
        return None
    return {
        SessionState.REJECTED: "declined",
        SessionState.EXPIRED: "expired",
    }.get(SessionState(session.state), "already_used")


def _blocked(session: UserAuthSession, reason: str) -> AuthFlowError:
    """Called after the row lock is released: a session found past its time expires now."""
    if reason == "expired":
        session_expire(session)
    return AuthFlowError(reason, session)


# Longest a callback takes from consuming the state to storing the tokens: the code exchange
# and the user-info call, each bounded by FEISHU_HTTP_TIMEOUT and their retries.
EXCHANGE_TIME = timedelta(minutes=2)


def _consume_state(state: str) -> tuple[UserAuthSession, str]:
    """Take the state's verifier exactly once: a replay or a concurrent callback finds it gone."""
    now = timezone.now()
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update(of=("self",))
            .select_related("app")
            .filter(state_token=_hash_state(state))
            .first()
        )
        if session is None:
            raise AuthFlowError("state_invalid")
        verifier = session.pkce_verifier
        blocked = "already_used" if verifier is None else _blocked_reason(session)
        if blocked is None:
            # From here the exchange finishes: expiry must not take the session meanwhile.
            session.pkce_verifier = None
            session.expires_at = max(session.expires_at or now, now + EXCHANGE_TIME)
            session.save(update_fields=["pkce_verifier", "expires_at", "updated_at"])
    if blocked is not None or verifier is None:
        raise _blocked(session, blocked or "already_used")
    return session, verifier


def authorization_complete(state: str, code: str) -> UserAuthSession:
    """The OAuth callback: exchange the code once, check the user, store tokens, update card."""
    if not state:
        raise AuthFlowError("state_invalid")
    session, verifier = _consume_state(state)
    if not code:
        raise _fail(session, "missing_code")
    client = client_for(session.app)
    try:
        token = client.exchange_code(code, code_verifier=verifier, redirect_uri=callback_url())
    except FeishuError as exc:
        raise _fail(session, "code_expired" if exc.code_dead else "feishu_error") from exc
    if not token.refresh_token:
        raise _fail(session, "no_refresh_token")
    try:
        info = client.get_user_info(token.access_token)
    except FeishuError as exc:
        raise _fail(session, "feishu_error") from exc
    if session.open_id and info.open_id != session.open_id:
        raise _fail(session, "wrong_user")

    now = timezone.now()
    with transaction.atomic():
        session = (
            UserAuthSession.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=session.pk)
        )
        if session.state != SessionState.PENDING:
            raise AuthFlowError("already_used", session)
        _supersede_previous(session.app, info.open_id, keep=session)
        session.open_id = info.open_id
        session.user_id = info.user_id or session.user_id
        session.union_id = info.union_id or ""
        session.user_name = info.name or ""
        session.email = info.email or session.email
        session.mobile = info.mobile or ""
        session.avatar_url = info.avatar_url or ""
        session.state = SessionState.COMPLETED
        session.access_token = token.access_token
        session.refresh_token = token.refresh_token
        session.scope = token.scope
        session.token_expires_at = token.expires_at
        session.refresh_token_expires_at = token.refresh_token_expires_at
        session.completed_at = now
        session.last_refreshed_at = None
        session.failure_reason = ""
        session.version += 1
        session.save()
        record_event(session, TokenEvent.Kind.COMPLETED, f"user:{info.open_id}")
        card_show_later(session)
    metrics.AUTH_SESSIONS.labels(session.app.app_id, "completed").inc()
    metrics.AUTH_SESSION_DURATION.observe((now - session.created_at).total_seconds())
    return session


def _supersede_previous(app: Application, open_id: str, keep: UserAuthSession) -> None:
    UserAuthSession.objects.filter(
        app=app,
        open_id=open_id,
        state__in=[SessionState.COMPLETED, SessionState.NEEDS_REAUTH],
    ).exclude(pk=keep.pk).update(
        state=SessionState.SUPERSEDED, access_token=None, refresh_token=None
    )


def authorization_reject(
    state: str = "",
    session_id: Any = None,
    actor: str = "",
    *,
    app: Application | None = None,
    operator_open_id: str | None = None,
) -> UserAuthSession:
    """The user declined, on Feishu's page (by state) or on the card (by session id; with
    `operator_open_id`, only the card's recipient may, on a session of `app`)."""
    if not state:
        # A click on a card whose session is gone or already decided changes nothing: answer
        # it without the row lock (a session never returns to pending).
        seen = UserAuthSession.objects.select_related("app").filter(pk=session_id).first()
        if seen is None or seen.state != SessionState.PENDING:
            if operator_open_id is not None:
                card_recipient_check(seen, app, operator_open_id)
            if seen is None:
                raise AuthFlowError("not_found")
            raise _blocked(seen, _blocked_reason(seen) or "already_used")
    with transaction.atomic():
        query = UserAuthSession.objects.select_for_update(of=("self",)).select_related("app")
        session = (
            query.filter(state_token=_hash_state(state)).first()
            if state
            else query.filter(pk=session_id).first()
        )
        if session is None:
            raise AuthFlowError("state_invalid" if state else "not_found")
        if operator_open_id is not None:
            card_recipient_check(session, app, operator_open_id)
        blocked = _blocked_reason(session)
        if blocked is None:
            session.state = SessionState.REJECTED
            session.failure_reason = "user_rejected"
            session.pkce_verifier = None
            session.version += 1
            session.save()
            record_event(session, TokenEvent.Kind.REJECTED, actor or f"user:{session.open_id}")
            card_show_later(session)
    if blocked is not None:
        raise _blocked(session, blocked)
    metrics.AUTH_SESSIONS.labels(session.app.app_id, "rejected").inc()
    metrics.AUTH_FAILURES.labels("user_rejected").inc()
    return session


def session_fail(session: UserAuthSession, reason: str, *, detail: str = "") -> AuthFlowError:
    """Mark the session failed (if still pending) and return the error to raise."""
    with transaction.atomic():
        locked = UserAuthSession.objects.select_for_update().get(pk=session.pk)
        if locked.state == SessionState.PENDING:
            locked.state = SessionState.FAILED
            locked.failure_reason = reason
            locked.pkce_verifier = None
            locked.version += 1
            locked.save()
            record_event(locked, TokenEvent.Kind.FAILED, "", reason=reason, detail=detail)
            card_show_later(locked)
    metrics.AUTH_SESSIONS.labels(session.app.app_id, "failed").inc()
    metrics.AUTH_FAILURES.labels(_METRIC_REASONS.get(reason, "unknown_error")).inc()
    return AuthFlowError(reason, session)


_fail = session_fail


_METRIC_REASONS = {
    **{r: r for r in ("code_expired", "missing_code", "state_invalid", "wrong_user")},
    **dict.fromkeys(("feishu_error", "card_send_failed", "user_unreachable"), "feishu_error"),
}
