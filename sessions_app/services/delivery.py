"""The authorization card in Feishu: sent and updated after the state change commits, by
Celery, off the request and event path.

A request or a card click only changes rows; `card_send_later` / `card_show_later` queue the
Feishu call once the transaction commits, so a slow or failing message API never holds a
row lock, a web worker or the 3 s event answer. The tasks retry transient failures with
back-off. Both are idempotent: a send carries the session id as Feishu's `uuid` (a resend is
dropped), and an update renders the card from the current state of the newest session that
owns the message, so updates that run twice or out of order still end on the right card.

A card counts as sent only once Feishu gave it a `message_id`; a send that finally fails
marks the session failed, so the next prompt sends a new card.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from larkauth import cards
from larkauth.errors import Failure, FeishuError
from sessions_app import selectors
from sessions_app.feishu import client_for
from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from sessions_app.services.audit import record_event

logger = logging.getLogger(__name__)


def card_send_later(
    session: UserAuthSession, reason: cards.ReauthReason | None, actor: str = ""
) -> None:
    from sessions_app import tasks

    args = (str(session.pk), reason.value if reason else None, actor)
    transaction.on_commit(lambda: _enqueue(tasks.send_auth_card, args, fallback=_send_once))


def card_show_later(session: UserAuthSession) -> None:
    """Update the session's card to its state, once that state has committed."""
    if not session.message_id:
        return
    from sessions_app import tasks

    args = (session.message_id,)
    transaction.on_commit(lambda: _enqueue(tasks.show_auth_card, args, fallback=card_show))


def card_send_now(
    session: UserAuthSession, reason: cards.ReauthReason | None, actor: str = ""
) -> None:
    """Send the card in this call (a background job's own sends). Raises `FeishuError`."""
    try:
        card_send(str(session.pk), reason.value if reason else None, actor)
    except FeishuError as exc:
        card_send_failed(str(session.pk), exc)
        raise


def _enqueue(task: Any, args: tuple[Any, ...], *, fallback: Callable[..., None]) -> None:
    """Queue the task; with the broker down, do the work once in a thread of this process so
    the user still gets the card."""
    try:
        task.apply_async(args, retry=False)
    except Exception as exc:  # kombu/redis errors: the broker is unreachable
        logger.warning("Broker unavailable (%s): running %s in-process", exc, task.name)
        threading.Thread(target=_in_thread, args=(fallback, args), daemon=True).start()


def _send_once(session_id: str, reason: str | None, actor: str = "") -> None:
    try:
        card_send(session_id, reason, actor)
    except FeishuError as exc:
        card_send_failed(session_id, exc)


def _in_thread(work: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        work(*args)
    except Exception:
        logger.exception("In-process card work failed")
    finally:
        connections.close_all()


def card_send(session_id: str, reason: str | None, actor: str = "") -> None:
    """Send the pending session's card and keep its message_id. Raises `FeishuError`."""
    session = UserAuthSession.objects.select_related("app").filter(pk=session_id).first()
    if session is None or session.message_id or session.state != SessionState.PENDING:
        return  # delivered already (a redelivered task), or nothing to authorize any more
    card = cards.authorization_request_from_settings(
        str(session.pk), reason=cards.ReauthReason(reason) if reason else None
    )
    sent = client_for(session.app).send_card(session.open_id, card, dedupe_key=str(session.pk))
    with transaction.atomic():
        stored = UserAuthSession.objects.filter(pk=session.pk, message_id="").update(
            message_id=sent.message_id, updated_at=timezone.now()
        )
        if stored:
            session.message_id = sent.message_id
            record_event(session, TokenEvent.Kind.CARD_SENT, actor)
            # Expired or declined while the card was on its way: show that at once.
            if (
                UserAuthSession.objects.filter(pk=session.pk)
                .exclude(state=SessionState.PENDING)
                .exists()
            ):
                card_show_later(session)


def card_send_failed(session_id: str, exc: FeishuError) -> None:
    """The card could not be delivered: the session fails, and does not count as a card."""
    from sessions_app.services.oauth import session_fail

    session = UserAuthSession.objects.select_related("app").filter(pk=session_id).first()
    if session is None or session.message_id:
        return
    reason = "user_unreachable" if exc.failure is Failure.USER_UNAVAILABLE else "card_send_failed"
    logger.warning("Card of session %s not delivered: %s", session_id, exc)
    session_fail(session, reason, detail=str(exc.code or exc.http_status or ""))


def card_show(message_id: str) -> None:
    """Patch the card to the state of the newest session that owns it. Raises `FeishuError`."""
    session = (
        UserAuthSession.objects.select_related("app")
        .filter(message_id=message_id)
        .order_by("-created_at")
        .first()
    )
    card = card_for(session) if session is not None else None
    if session is not None and card is not None:
        client_for(session.app).patch_card(message_id, card)


def card_for(session: UserAuthSession) -> cards.Card | None:
    """What the session's card shows in its current state (None: leave the card as it is)."""
    session_id = str(session.pk)
    if session.state == SessionState.PENDING:
        return cards.authorization_request_from_settings(
            session_id, reason=selectors.reauth_reason(session.app, session.open_id)
        )
    if session.state == SessionState.COMPLETED and session.completed_at is not None:
        when = timezone.localtime(session.completed_at)
        return cards.authorized(user_name=session.user_name, when=when)
    if session.state == SessionState.REJECTED:
        return cards.declined(session_id=session_id)
    if session.state == SessionState.EXPIRED:
        return cards.expired(session_id=session_id)
    if session.state == SessionState.FAILED:
        if session.failure_reason == "wrong_user":
            return cards.wrong_user(session_id)
        return cards.failed(session_id=session_id, reason=session.failure_reason)
    return None
