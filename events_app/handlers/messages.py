"""`im.message.receive_v1`: a user writes "authorize" / "授权" to the bot in a p2p chat.

Sending the card is a Feishu call with retries, and the sender needs no answer, so it
goes to Celery. The task is queued inside the dedupe transaction: if queueing fails, the
event is not marked handled and Feishu delivers it again. A task that runs although the
transaction then failed is harmless: a second request reuses the pending card.
"""

from __future__ import annotations

import json
from typing import Any

from events_app import tasks, toasts
from events_app.envelope import Event
from sessions_app.models import Application

AUTHORIZE_WORDS = frozenset({"authorize", "授权"})


def acts_on(event: Event) -> bool:
    """A user's "authorize" in a p2p chat with the bot; every other message is ignored."""
    message = event.body.get("message")
    if not _sender_open_id(event.body) or not isinstance(message, dict):
        return False
    return (
        message.get("chat_type") == "p2p"
        and message.get("message_type") == "text"
        and is_authorize(message.get("content"))
    )


def handle(app: Application, event: Event) -> toasts.Answer:
    open_id = _sender_open_id(event.body)
    tasks.authorization_request_from_message.delay(app.app_id, open_id, event.event_id)
    return {}


def is_authorize(content: Any) -> bool:
    """`content` is the JSON string `{"text": "..."}` of a text message."""
    try:
        text = json.loads(content).get("text") if isinstance(content, str) else None
    except (ValueError, AttributeError):
        return False
    return isinstance(text, str) and text.strip().casefold() in AUTHORIZE_WORDS


def _sender_open_id(body: Any) -> str:
    sender = body.get("sender")
    if not isinstance(sender, dict) or sender.get("sender_type") != "user":
        return ""
    ids = sender.get("sender_id")
    open_id = ids.get("open_id") if isinstance(ids, dict) else None
    return open_id if isinstance(open_id, str) else ""
