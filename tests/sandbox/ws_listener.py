"""A stock lark-oapi long-connection client, run as a subprocess by the sandbox tests.

    python ws_listener.py <domain> <app_id> <app_secret>

It answers card.action.trigger with a toast naming the operator and prints one JSON line
per handled callback on stdout, prefixed with `HANDLED ` (lark-oapi logs to stdout too).
lark-oapi's ws module binds an asyncio loop at import and `start()` never returns, hence
a process of its own.
"""

import json
import sys

import lark_oapi as lark
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)


def on_card_action(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
    event = data.event
    assert event is not None
    assert event.operator is not None
    assert event.action is not None
    line = {
        "event_id": data.header.event_id if data.header else None,
        "open_id": event.operator.open_id,
        "value": event.action.value,
        "open_message_id": event.context.open_message_id if event.context else None,
        "token": event.token,
    }
    print("HANDLED " + json.dumps(line), flush=True)
    return P2CardActionTriggerResponse(
        {"toast": {"type": "success", "content": f"handled for {event.operator.open_id}"}}
    )


def main() -> None:
    domain, app_id, app_secret = sys.argv[1:4]
    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_card_action_trigger(on_card_action)
        .build()
    )
    client = lark.ws.Client(
        app_id, app_secret, event_handler=handler, domain=domain, log_level=lark.LogLevel.DEBUG
    )
    client.start()


if __name__ == "__main__":
    main()
