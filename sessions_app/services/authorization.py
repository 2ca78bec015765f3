"""Authorization sessions: open one (card or link), start OAuth, complete or end it.

Every state change happens under the session's row lock and checks the state it expects,
so a replayed callback, a second listener or a concurrent beat never acts twice.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from larkauth import cards
from larkauth.errors import (
    AuthFlowError,
    FeishuError,
    RateLimitedError,
    UnknownUserError,
)
from larkauth.feishu import pkce
from sessions_app import metrics, selectors
from sessions_app.feishu import client_for
from sessions_app.models import (
    Application,
    AuthMethod,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from sessions_app.services.audit import record_event
from sessions_app.services.delivery import card_send_later, card_send_now, card_show_later

__all__ = ["record_event"]  # re-exported: imported from here by older modules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserRef:
    open_id: str = ""
    user_id: str = ""
    email: str = ""

    def __str__(self) -> str:
        return self.open_id or self.user_id or self.email


@dataclass(frozen=True)
class AuthRequestResult:
    session: UserAuthSession | None
    created: bool
    authorization: UserAuthSession | None = None


def callback_url() -> str:
    return settings.LARKAUTH_PUBLIC_URL + reverse("oauth-callback")


def start_url(session: UserAuthSession) -> str:
    return cards.oauth_start_url(settings.LARKAUTH_PUBLIC_URL, str(session.pk))


# --- Opening a session -------------------------------------------------------------------


def auth_request(
    app: Application,
    who: UserRef,
    *,
    method: str = AuthMethod.CARD,
    force: bool = False,
    prompted: bool = False,
    reason: cards.ReauthReason | None = None,
    actor: str = "",
    send_now: bool = False,
) -> AuthRequestResult:
    """Open an authorization session for a user, or return what already exists.

    The card says why it is sent: `reason`, else what happened to the user's last
    authorization (expired, revoked), else it is a first request.

    Already authorized (and not `force`): the authorization. A pending card session: that
    one, no second card. `prompted` (a token request asked for a card): at most one card per
    user per AUTH_REAUTH_CARD_INTERVAL, so a caller retrying in a loop never spams a user.

    The card is sent by a task once this commits; `send_now` (callers that are background
    jobs themselves) sends it in this call and raises `FeishuError` if it was not delivered.
    """
    open_id = user_resolve_open_id(app, who)
    now = timezone.now()
    if not force:
        existing = UserAuthSession.objects.filter(
            app=app, open_id=open_id, state=SessionState.COMPLETED
        ).first()
        if existing is not None:
            return AuthRequestResult(session=None, created=False, authorization=existing)

    sessions_expire_stale(app=app, open_id=open_id)
    if method == AuthMethod.CARD:
        pending = selectors.pending_card_get(app, open_id)
        if pending is not None:
            return AuthRequestResult(session=pending, created=False)
        if prompted:
            recent = _card_sent_since_last_grant(app, open_id, now)
            if recent is not None:
                return AuthRequestResult(session=recent, created=False)

    _check_rate_limit(app, open_id, now)
    try:
        with transaction.atomic():
            session = _session_create(
                app, open_id, user_id=who.user_id, email=who.email, method=method, now=now
            )
            record_event(session, TokenEvent.Kind.CREATED, actor, method=method)
    except IntegrityError:
        # Another process opened the card session for this user a moment ago: use it.
        pending = selectors.pending_card_get(app, open_id)
        if pending is None:
            raise
        return AuthRequestResult(session=pending, created=False)

    if method == AuthMethod.CARD:
        reason = reason or reauth_reason(app, open_id)
        if send_now:
            card_send_now(session, reason, actor)
        else:
            card_send_later(session, reason, actor)
    return AuthRequestResult(session=session, created=True)


def _session_create(
    app: Application,
    open_id: str,
    *,
    user_id: str,
    email: str,
    method: str,
    now: datetime,
    message_id: str = "",
) -> UserAuthSession:
    """A pending session; IntegrityError when the user already has a pending card."""
    return UserAuthSession.objects.create(
        app=app,
        open_id=open_id,
        user_id=user_id,
        email=email,
        auth_method=method,
        message_id=message_id,
        expires_at=now + timedelta(seconds=settings.AUTH_SESSION_EXPIRY_SECONDS),
    )


def _card_sent_since_last_grant(
    app: Application, open_id: str, now: datetime
) -> UserAuthSession | None:
    """A card delivered within AUTH_REAUTH_CARD_INTERVAL and after the user's last grant."""
    rows = UserAuthSession.objects.filter(app=app, open_id=open_id)
    since = now - timedelta(seconds=settings.AUTH_REAUTH_CARD_INTERVAL)
    last_grant = rows.aggregate(Max("completed_at"))["completed_at__max"]
    if last_grant is not None and last_grant > since:
        since = last_grant
    return (
        rows.filter(auth_method=AuthMethod.CARD, created_at__gt=since)
        .exclude(message_id="")  # only cards Feishu delivered count
        .order_by("-created_at")
        .first()
    )


def reauth_reason(app: Application, open_id: str) -> cards.ReauthReason | None:
    previous = (
        UserAuthSession.objects.filter(
            app=app, open_id=open_id, state__in=[SessionState.NEEDS_REAUTH, SessionState.REVOKED]
        )
        .order_by("-updated_at")
        .values_list("state", flat=True)
        .first()
    )
    if previous == SessionState.NEEDS_REAUTH:
        return cards.ReauthReason.EXPIRED
    if previous == SessionState.REVOKED:
        return cards.ReauthReason.REVOKED
    return None


def user_resolve_open_id(app: Application, who: UserRef) -> str:
    if who.open_id:
        return who.open_id
    known = (
        UserAuthSession.objects.filter(app=app)
        .filter(**({"user_id": who.user_id} if who.user_id else {"email__iexact": who.email}))
        .exclude(open_id="")
        .values_list("open_id", flat=True)
        .first()
    )
    if known:
        return known
    if who.user_id:
        try:
            return client_for(app).get_contact_user(who.user_id, user_id_type="user_id").open_id
        except FeishuError as exc:
            if exc.retryable:
                raise
    raise UnknownUserError(str(who))


def _check_rate_limit(app: Application, open_id: str, now: datetime) -> None:
    window_start = now - timedelta(minutes=1)
    recent = list(
        UserAuthSession.objects.filter(app=app, open_id=open_id, created_at__gt=window_start)
        .order_by("created_at")
        .values_list("created_at", flat=True)[: settings.AUTH_REQUEST_RATE_LIMIT]
    )
    if len(recent) >= settings.AUTH_REQUEST_RATE_LIMIT:
        retry_after = max(1, int((recent[0] - window_start).total_seconds()) + 1)
        raise RateLimitedError(retry_after=retry_after)


# --- OAuth --------------------------------------------------------------------------------


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
    state: str = "", session_id: Any = None, actor: str = ""
) -> UserAuthSession:
    """The user declined, on Feishu's page (by state) or on the card (by session id)."""
    with transaction.atomic():
        query = UserAuthSession.objects.select_for_update(of=("self",)).select_related("app")
        session = (
            query.filter(state_token=_hash_state(state)).first()
            if state
            else query.filter(pk=session_id).first()
        )
        if session is None:
            raise AuthFlowError("state_invalid" if state else "not_found")
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


# --- Expiry -------------------------------------------------------------------------------


def session_expire(session: UserAuthSession) -> bool:
    """Pending past its time → expired, card updated with a Request again button."""
    now = timezone.now()
    with transaction.atomic():
        # The same predicate as the caller's: a callback that consumed the state meanwhile
        # moved expires_at on, and is left to finish.
        updated = UserAuthSession.objects.filter(
            pk=session.pk, state=SessionState.PENDING, expires_at__lte=now
        ).update(
            state=SessionState.EXPIRED, pkce_verifier=None, failure_reason="expired", updated_at=now
        )
        if updated:
            record_event(session, TokenEvent.Kind.EXPIRED, "system")
            card_show_later(session)
    if updated:
        metrics.AUTH_SESSIONS.labels(session.app.app_id, "expired").inc()
    return bool(updated)


def sessions_expire_stale(app: Application | None = None, open_id: str = "") -> int:
    rows = UserAuthSession.objects.select_related("app").filter(
        state=SessionState.PENDING, expires_at__lte=timezone.now()
    )
    if app is not None:
        rows = rows.filter(app=app, open_id=open_id)
    return sum(session_expire(session) for session in rows[:500])


# --- Request again (a card button) --------------------------------------------------------

_REQUESTABLE_AGAIN = (SessionState.EXPIRED, SessionState.REJECTED, SessionState.FAILED)


def auth_request_again(session_id: Any, operator_open_id: str, actor: str = "") -> UserAuthSession:
    """*Request again* on an expired, declined or failed card: a new session for the same
    user that takes over the same card, patched to a fresh request (no new message).

    Raises `AuthFlowError` with the reason the button cannot act: `not_found`,
    `not_recipient` (someone else clicked a forwarded card), `still_pending` (the card's
    request is still open), `already_requested` (a double click), `already_authorized`,
    `already_used`, `pending_elsewhere` (another card is waiting); `RateLimitedError` past
    AUTH_REQUEST_RATE_LIMIT. The card is patched once this commits (services/delivery.py).
    """
    with transaction.atomic():
        # The old row stays locked until the new session exists: a double click waits,
        # then finds the new session pending and opens no second one.
        old = (
            UserAuthSession.objects.select_for_update(of=("self",))
            .select_related("app")
            .filter(pk=session_id)
            .first()
        )
        if old is None or not old.message_id:
            raise AuthFlowError("not_found")
        if not old.open_id or old.open_id != operator_open_id:
            raise AuthFlowError("not_recipient", old)
        app, open_id = old.app, old.open_id
        if old.state == SessionState.PENDING:
            stale = old.expires_at is not None and old.expires_at <= timezone.now()
            if not stale:
                raise AuthFlowError("still_pending", old)
        elif old.state == SessionState.COMPLETED:
            raise AuthFlowError("already_authorized", old)
        elif old.state not in _REQUESTABLE_AGAIN:
            raise AuthFlowError("already_used", old)
        sessions_expire_stale(app=app, open_id=open_id)
        if UserAuthSession.objects.filter(
            app=app, open_id=open_id, state=SessionState.COMPLETED
        ).exists():
            raise AuthFlowError("already_authorized", old)
        pending = selectors.pending_card_get(app, open_id)
        if pending is not None:
            same_card = pending.message_id == old.message_id
            raise AuthFlowError("already_requested" if same_card else "pending_elsewhere", old)
        now = timezone.now()
        _check_rate_limit(app, open_id, now)
        try:
            with transaction.atomic():
                session = _session_create(
                    app,
                    open_id,
                    user_id=old.user_id,
                    email=old.email,
                    method=AuthMethod.CARD,
                    now=now,
                    message_id=old.message_id,
                )
        except IntegrityError:
            # A token request sent this user a card a moment ago.
            raise AuthFlowError("pending_elsewhere", old) from None
        record_event(session, TokenEvent.Kind.CREATED, actor, method="card", replaces=str(old.pk))
        record_event(session, TokenEvent.Kind.CARD_SENT, actor, reused_message=True)
        card_show_later(session)
    return session


# --- The user asks the bot ----------------------------------------------------------------


def auth_request_by_user(app: Application, open_id: str, *, reply_key: str) -> AuthRequestResult:
    """The user messaged the bot to authorize: a card (or the pending one is kept).

    Already authorized: the "authorized" card, so the user gets an answer rather than a
    second authorization. `reply_key` (stable per incoming message) makes Feishu drop a
    repeated reply.
    """
    result = auth_request(app, UserRef(open_id=open_id), actor=f"user:{open_id}")
    authorization = result.authorization
    if authorization is not None and authorization.completed_at is not None:
        when = timezone.localtime(authorization.completed_at)
        client_for(app).send_card(
            open_id,
            cards.authorized(user_name=authorization.user_name, when=when),
            dedupe_key=hashlib.sha256(reply_key.encode()).hexdigest()[:32],
        )
    return result
