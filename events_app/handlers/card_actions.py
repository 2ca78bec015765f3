"""`card.action.trigger`: the Decline and Request again buttons of the authorization card.

Only the card's recipient may act: a forwarded card clicked by someone else gets a toast
and changes nothing. The answer is always a toast (see `toasts`).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from events_app import metrics, toasts
from events_app.envelope import Event
from larkauth.errors import AuthFlowError, RateLimitedError
from sessions_app import services
from sessions_app.models import Application, SessionState, UserAuthSession

logger = logging.getLogger(__name__)

DECLINE = "decline"
REQUEST_AGAIN = "request_again"


def acts_on(event: Event) -> bool:
    """Every click is answered with a toast, and may change a session: all are claimed."""
    return True


def handle(app: Application, event: Event) -> toasts.Answer:
    value = _action_value(event.body)
    action = value.get("action")
    metrics.CARD_ACTIONS.labels(action if action in (DECLINE, REQUEST_AGAIN) else "other").inc()
    if action not in (DECLINE, REQUEST_AGAIN):
        return toasts.UNKNOWN_ACTION
    operator = _operator_open_id(event.body)
    session_id = _session_id(value.get("session_id"))
    actor = f"user:{operator}"
    try:
        if session_id is None:
            raise AuthFlowError("not_found")
        # Both check, under the row lock, that the operator is the card's recipient.
        if action == DECLINE:
            services.authorization_reject(
                session_id=session_id, actor=actor, app=app, operator_open_id=operator
            )
            answer = toasts.DECLINED
        else:
            services.auth_request_again(session_id, operator, actor=actor, app=app)
            answer = toasts.REQUESTED_AGAIN
    except AuthFlowError as exc:
        logger.info("Card action %s on session %s by %s: %s", action, session_id, actor, exc.reason)
        return _not_acted(exc)
    except RateLimitedError as exc:
        return toasts.rate_limited(exc.retry_after)
    logger.info("Card action %s on session %s by %s", action, session_id, actor)
    return answer


def _not_acted(exc: AuthFlowError) -> toasts.Answer:
    session = exc.session
    if isinstance(session, UserAuthSession) and session.state == SessionState.COMPLETED:
        return toasts.NOT_ACTED["already_authorized"]
    return toasts.NOT_ACTED.get(exc.reason, toasts.STALE)


def _action_value(body: Any) -> dict[str, Any]:
    """`action.value` may be an object or a JSON string (docs/feishu.md §6.1)."""
    action = body.get("action")
    value = action.get("value") if isinstance(action, dict) else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _operator_open_id(body: Any) -> str:
    operator = body.get("operator")
    open_id = operator.get("open_id") if isinstance(operator, dict) else None
    return open_id if isinstance(open_id, str) else ""


def _session_id(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None
