"""One dispatcher for both channels (WebSocket and HTTP): each event acted on exactly once.

Only events a handler acts on are claimed: an event it has nothing to do with (most of a
bot's messages) is answered without touching the database, as there is nothing it could do
twice. Insert-first dedupe: the event's `ProcessedEvent` row is inserted in the same transaction
as the handler's writes. A second delivery (Feishu's redelivery, the other channel,
another listener) finds the unique `event_id` taken and is answered without acting; if it
arrives while the first is still running, PostgreSQL makes its insert wait for the first
transaction, so it never acts early. A handler that raises rolls the row back with its
writes, and Feishu's redelivery is then handled afresh.

A handler only changes rows: the card updates it causes are queued once this transaction
commits (sessions_app/services/delivery.py), so the answer never waits for the message
API and a failed commit leaves no card ahead of the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from events_app import metrics, toasts
from events_app.envelope import Event
from events_app.handlers import card_actions, messages
from larkauth.requestid import request_id_var
from sessions_app.models import Application, ProcessedEvent

logger = logging.getLogger(__name__)

Handler = Callable[[Application, Event], toasts.Answer]


@dataclass(frozen=True)
class Route:
    acts_on: Callable[[Event], bool]  # cheap, no I/O: is this event one to act on?
    handle: Handler


HANDLERS: dict[str, Route] = {
    "card.action.trigger": Route(card_actions.acts_on, card_actions.handle),
    "im.message.receive_v1": Route(messages.acts_on, messages.handle),
}
# What a duplicate delivery is answered with (an event without an entry: nothing).
DUPLICATE_ANSWERS: dict[str, toasts.Answer] = {"card.action.trigger": toasts.ALREADY_HANDLED}


def dispatch(app: Application, event: Event, channel: str) -> toasts.Answer:
    """Act on the event once and return the channel's answer (a toast, or `{}`).

    Raises whatever the handler raised; the event is then not marked handled.
    """
    route = HANDLERS.get(event.event_type)
    if route is None or not route.acts_on(event):
        metrics.EVENTS.labels(event.event_type if route else "other", "ignored").inc()
        return {}
    token = request_id_var.set(event.event_id)
    try:
        with transaction.atomic():
            if not ProcessedEvent.objects.claim(event.event_id, event.event_type, channel):
                metrics.EVENTS.labels(event.event_type, "duplicate").inc()
                logger.info("Event %s (%s) already handled", event.event_id, event.event_type)
                return DUPLICATE_ANSWERS.get(event.event_type, {})
            answer = route.handle(app, event)
    except Exception:
        metrics.EVENTS.labels(event.event_type, "failed").inc()
        logger.exception("Event %s (%s) failed", event.event_id, event.event_type)
        raise
    finally:
        request_id_var.reset(token)
    metrics.EVENTS.labels(event.event_type, "handled").inc()
    return answer
