"""Authorization sessions: open one (a card or a link), request again, expire.

Every state change happens under the session's row lock and checks the state it expects,
so a second listener, a double click or a concurrent beat never acts twice. The OAuth part
of a session's life (start, callback, decline) is `oauth.py`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from larkauth import cards
from larkauth.errors import AuthFlowError, FeishuError, RateLimitedError, UnknownUserError
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
            recent = selectors.card_sent_since_last_grant(app, open_id, now)
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
        reason = reason or selectors.reauth_reason(app, open_id)
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


EXPIRE_PAGE = 500  # what one `sessions_expire_stale` call handles at most


def sessions_expire_all_stale() -> int:
    """Expire every pending session past its time (cards updated), a page at a time."""
    total = 0
    while True:
        expired = sessions_expire_stale()
        total += expired
        if expired < EXPIRE_PAGE:
            break
    logger.log(logging.INFO if total else logging.DEBUG, "Expired %d pending sessions", total)
    return total


# --- Card buttons -------------------------------------------------------------------------


def card_recipient_check(
    session: UserAuthSession | None, app: Application | None, operator_open_id: str
) -> UserAuthSession:
    """A card button acts only on a session of the application the click came through
    (`app`; None: any), and only for the card's recipient: `not_found`, `not_recipient`."""
    if session is None or (app is not None and session.app_id != app.pk):
        raise AuthFlowError("not_found")
    if not operator_open_id or session.open_id != operator_open_id:
        raise AuthFlowError("not_recipient")
    return session


_REQUESTABLE_AGAIN = (SessionState.EXPIRED, SessionState.REJECTED, SessionState.FAILED)


def auth_request_again(
    session_id: Any, operator_open_id: str, actor: str = "", *, app: Application | None = None
) -> UserAuthSession:
    """*Request again* on an expired, declined or failed card: a new session for the same
    user that takes over the same card, patched to a fresh request (no new message).

    Raises `AuthFlowError` with the reason the button cannot act: `not_found` (also a
    session of another application than `app`), `not_recipient` (someone else clicked a
    forwarded card), `still_pending` (the card's
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
        old = card_recipient_check(old, app, operator_open_id)
        if not old.message_id:
            raise AuthFlowError("not_found")
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
