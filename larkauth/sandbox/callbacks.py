"""A person clicks a callback button: `card.action.trigger` goes to the app (docs/feishu.md §6).

Over the long connection when the app has a live client (as an `event` frame unless told
otherwise), else by HTTP to its callback URL. The app must answer within
`callback_timeout_ms` (3 s); its answer's toast is what the person sees, and a `card` in
it replaces the card. Failures carry the Feishu client's error codes (2003xx / 2006xx).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from larkauth.sandbox import util
from larkauth.sandbox.common import Runtime
from larkauth.sandbox.delivery import complete_event, deliver
from larkauth.sandbox.openapi import MessageError, replace_card
from larkauth.sandbox.state import CardToken

NO_CALLBACK = 200340
CALLBACK_TIMEOUT = 200341
CONNECT_FAILED = 200342
BAD_STATUS = 200671
BAD_BODY = 200672
BAD_CARD = 200673
CARD_TOKEN_TTL = 30 * 60


@dataclass
class ClickResult:
    channel: str | None
    ok: bool
    event_id: str
    response: Any = None
    toast: dict[str, Any] | None = None
    card_updated: bool = False
    error_code: int | None = None
    error: str | None = None
    ws_message_id: str | None = None
    http_status: int | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class ClickError(ValueError):
    """The click itself is impossible (unknown message, someone else's card)."""


async def click(
    rt: Runtime,
    open_id: str,
    message_id: str,
    value: Any,
    *,
    channel: str = "auto",
    frame_type: str = "event",
    name: str | None = None,
    form_value: dict[str, Any] | None = None,
) -> ClickResult:
    state = rt.state
    with state.lock:
        message = state.messages.get(message_id)
        if message is None:
            raise ClickError(f"unknown message {message_id}")
        if message.open_id != open_id:
            raise ClickError("the card was not sent to this user")
        app = state.apps.get(message.app_id)
        user = state.users.get(open_id)
        if app is None or user is None:
            raise ClickError("the app or the user no longer exists")
        now = state.now()
        expires_at = now + CARD_TOKEN_TTL
        token = CardToken(util.new_card_token(), app.app_id, message_id, open_id, expires_at)
        state.card_tokens[token.token] = token
        timeout_ms = state.config.callback_timeout_ms
    action: dict[str, Any] = {"value": value, "tag": "button", "timezone": "Asia/Shanghai"}
    if name:
        action["name"] = name
    if form_value is not None:
        action["form_value"] = form_value
    event = complete_event(
        app,
        {
            "schema": "2.0",
            "header": {"event_type": "card.action.trigger"},
            "event": {
                "operator": {
                    "tenant_key": util.TENANT_KEY,
                    "user_id": user.user_id,
                    "open_id": user.open_id,
                    "union_id": user.union_id,
                },
                "token": token.token,
                "action": action,
                "host": "im_message",
                "context": {"open_message_id": message_id, "open_chat_id": message.chat_id},
            },
        },
        now,
    )
    event_id = event["header"]["event_id"]
    if channel == "auto":
        channel = "ws" if rt.hub.live(app.app_id) else "http"
    if channel == "ws":
        push = await rt.hub.push(app.app_id, event, frame_type=frame_type, want_ack=True)
        if push is None:
            return ClickResult("ws", False, event_id, error_code=NO_CALLBACK, error="no client")
        ack = await rt.hub.wait_ack(push.message_id, timeout_ms / 1000)
        result = ClickResult("ws", False, event_id, ws_message_id=push.message_id)
        if ack is None:
            result.error_code, result.error = CALLBACK_TIMEOUT, "no ack within the time limit"
            return result
        if ack.get("code") != 200:
            result.error_code, result.error = BAD_STATUS, f"ack code {ack.get('code')}"
            return result
        # An ack without data means the handler returned None: keep the card as it is.
        result.response = ack.get("data") if ack.get("data") is not None else {}
    elif channel == "http":
        if not app.event_callback_url:
            return ClickResult("http", False, event_id, error_code=NO_CALLBACK, error="no URL")
        delivery = await deliver(rt.session, app, event, timeout_ms=timeout_ms)
        result = ClickResult("http", False, event_id, http_status=delivery.status)
        if delivery.status is None:
            timed_out = delivery.error == "timeout"
            result.error_code = CALLBACK_TIMEOUT if timed_out else CONNECT_FAILED
            result.error = delivery.error
            return result
        if delivery.status != 200:
            result.error_code, result.error = BAD_STATUS, f"HTTP {delivery.status}"
            result.response = delivery.body
            return result
        result.response = delivery.body
    else:
        raise ClickError("channel must be auto, ws or http")
    return _apply_response(rt, result, message_id)


def _apply_response(rt: Runtime, result: ClickResult, message_id: str) -> ClickResult:
    response = result.response
    if not isinstance(response, dict):
        result.error_code, result.error = BAD_BODY, "the callback answer is not a JSON object"
        return result
    toast = response.get("toast")
    result.toast = toast if isinstance(toast, dict) else None
    card = response.get("card")
    if card is not None:
        if not isinstance(card, dict) or card.get("type") not in ("raw", "template"):
            result.error_code, result.error = BAD_CARD, "card must be {type: raw|template, data}"
            return result
        data = card.get("data")
        new_card = data if card["type"] == "raw" else {"type": "template", "data": data}
        state = rt.state
        try:
            with state.lock:
                message = state.messages[message_id]
                replace_card(state, message, json.dumps(new_card), "callback", check_shared=False)
        except MessageError as error:
            result.error_code, result.error = BAD_CARD, error.msg
            return result
        result.card_updated = True
    result.ok = True
    return result
