"""HTTP event delivery checked by lark-oapi's own dispatcher, card clicks, the inbox."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lark_oapi as lark
import pytest
import requests
from lark_oapi.core.model import RawRequest
from lark_oapi.core.utils.decryptor import AESCipher
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

from larkauth.sandbox import SandboxControlError
from tests.sandbox.helpers import card, send_card, tenant_token


@dataclass
class CallbackApp:
    """A local callback endpoint that hands requests to lark-oapi's EventDispatcherHandler."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    clicks: list[Any] = field(default_factory=list)
    answer: dict[str, Any] = field(
        default_factory=lambda: {"toast": {"type": "success", "content": "Thanks!"}}
    )


@pytest.fixture
def callback_app(sandbox) -> Iterator[CallbackApp]:
    app = CallbackApp()

    def on_click(data):
        app.clicks.append(data)
        return P2CardActionTriggerResponse(app.answer)

    dispatcher = (
        lark.EventDispatcherHandler.builder(
            sandbox.app["encrypt_key"], sandbox.app["verification_token"]
        )
        .register_p2_card_action_trigger(on_click)
        .register_p2_im_message_receive_v1(lambda data: app.clicks.append(data))
        .build()
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            app.requests.append({"headers": headers, "body": body})
            raw = RawRequest()
            raw.uri, raw.body, raw.headers = self.path, body, headers
            answer = dispatcher.do(raw)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.content or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_address[1]}/lark/events/"
    sandbox.add_app(**sandbox.app, event_callback_url=app.url)
    yield app
    server.shutdown()
    server.server_close()
    thread.join(5)


def card_action(sandbox, open_id: str, value: Any) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_type": "card.action.trigger"},
        "event": {
            "operator": {"open_id": open_id},
            "token": "c-test",
            "action": {"value": value, "tag": "button"},
            "context": {"open_message_id": "om_x"},
        },
    }


def test_an_encrypted_delivery_passes_lark_oapi_verification(sandbox, callback_app):
    result = sandbox.deliver_event(
        sandbox.app["app_id"], card_action(sandbox, sandbox.alice["open_id"], {"k": "v"})
    )

    assert result["status"] == 200
    assert result["encrypted"] is True
    assert result["body"] == {"toast": {"type": "success", "content": "Thanks!"}}
    [click] = callback_app.clicks
    assert click.event.operator.open_id == sandbox.alice["open_id"]
    assert click.event.action.value == {"k": "v"}
    assert click.header.token == sandbox.app["verification_token"]
    assert click.header.event_id == result["event_id"]


def test_the_wire_format_is_signed_and_aes_encrypted(sandbox, callback_app):
    sandbox.deliver_event(sandbox.app["app_id"], card_action(sandbox, "ou_a", 1))

    [request] = callback_app.requests
    headers, body = request["headers"], request["body"]
    key = sandbox.app["encrypt_key"]
    expected = hashlib.sha256(
        (headers["X-Lark-Request-Timestamp"] + headers["X-Lark-Request-Nonce"] + key).encode()
        + body
    ).hexdigest()
    assert headers["X-Lark-Signature"] == expected
    event = json.loads(AESCipher(key).decrypt_str(json.loads(body)["encrypt"]))
    assert event["schema"] == "2.0"
    assert event["header"]["event_type"] == "card.action.trigger"
    assert event["header"]["app_id"] == sandbox.app["app_id"]
    assert len(event["header"]["create_time"]) == 16


def test_a_plain_delivery_is_still_signed(sandbox, callback_app):
    event = {
        "header": {"event_type": "im.message.receive_v1"},
        "event": {"message": {"message_id": "om_1", "content": '{"text":"hi"}'}},
    }

    result = sandbox.deliver_event(sandbox.app["app_id"], event, encrypt=False)

    assert (result["status"], result["encrypted"]) == (200, False)
    assert result["body"] == {"msg": "success"}
    assert json.loads(callback_app.requests[0]["body"])["event"]["message"]["message_id"] == "om_1"


def test_a_wrong_signature_is_rejected_by_lark_oapi(sandbox, callback_app):
    result = sandbox.deliver_event(
        sandbox.app["app_id"], card_action(sandbox, "ou_a", 1), signature="0" * 64
    )

    assert result["status"] == 500
    assert "signature verification failed" in result["body"]["msg"]
    assert callback_app.clicks == []


def test_a_click_on_a_sent_card_goes_to_the_callback_url(sandbox, callback_app):
    message_id = send_card(
        sandbox, sandbox.bob["open_id"], card("Authorize", button_value={"a": 1})
    )

    result = sandbox.card_click(sandbox.bob["open_id"], message_id, {"action": "approve"})

    assert result["ok"] is True
    assert result["channel"] == "http"
    assert result["toast"] == {"type": "success", "content": "Thanks!"}
    [click] = callback_app.clicks
    assert click.event.operator.open_id == sandbox.bob["open_id"]
    assert click.event.operator.user_id == "bob"
    assert click.event.action.value == {"action": "approve"}
    assert click.event.context.open_message_id == message_id
    assert click.event.token.startswith("c-")


def test_a_card_in_the_callback_answer_replaces_the_card(sandbox, callback_app):
    message_id = send_card(sandbox, sandbox.bob["open_id"], card("Authorize", button_value={}))
    callback_app.answer = {"card": {"type": "raw", "data": card("Done")}}

    result = sandbox.card_click(sandbox.bob["open_id"], message_id, {})

    assert result["card_updated"] is True
    message = sandbox.message(message_id)
    assert message["content"]["header"]["title"]["content"] == "Done"
    assert [h["source"] for h in message["history"]] == ["create", "callback"]


def test_the_callback_token_allows_two_delayed_updates(sandbox, callback_app):
    message_id = send_card(sandbox, sandbox.bob["open_id"], card("Authorize", button_value={}))
    sandbox.card_click(sandbox.bob["open_id"], message_id, {})
    token = callback_app.clicks[0].event.token
    headers = {"Authorization": f"Bearer {tenant_token(sandbox)}"}

    def update(title: str) -> int:
        response = requests.post(
            sandbox.url + "/open-apis/interactive/v1/card/update",
            json={"token": token, "card": card(title)},
            headers=headers,
            timeout=10,
        )
        code: int = response.json()["code"]
        return code

    assert [update("One"), update("Two"), update("Three")] == [0, 0, 230001]
    assert sandbox.message(message_id)["content"]["header"]["title"]["content"] == "Two"


def test_a_click_without_any_callback_reports_200340(sandbox):
    message_id = send_card(sandbox, sandbox.bob["open_id"], card("Authorize", button_value={}))

    result = sandbox.card_click(sandbox.bob["open_id"], message_id, {})

    assert (result["ok"], result["error_code"]) == (False, 200340)


def test_a_click_on_someone_elses_card_is_refused(sandbox):
    message_id = send_card(sandbox, sandbox.bob["open_id"], card("Authorize", button_value={}))

    with pytest.raises(SandboxControlError, match="not sent to this user"):
        sandbox.card_click(sandbox.alice["open_id"], message_id, {})


def test_the_inbox_shows_the_card_and_its_buttons_post_back(sandbox, callback_app):
    message_id = send_card(
        sandbox, sandbox.alice["open_id"], card("Please authorize", button_value={"session": "s1"})
    )
    inbox_url = f"{sandbox.url}/_sandbox/inbox/{sandbox.alice['open_id']}"

    page = requests.get(inbox_url, timeout=10).text
    assert "Please authorize" in page
    assert 'href="https://example.com/docs"' in page
    assert f'action="/_sandbox/inbox/{sandbox.alice["open_id"]}/click"' in page
    clicked = requests.post(
        inbox_url + "/click",
        data={"message_id": message_id, "value": json.dumps({"session": "s1"}), "name": ""},
        allow_redirects=False,
        timeout=10,
    )
    assert clicked.status_code == 303
    after = requests.get(sandbox.url + clicked.headers["Location"], timeout=10).text

    assert "Thanks!" in after
    assert callback_app.clicks[0].event.action.value == {"session": "s1"}


def test_the_index_links_every_inbox(sandbox):
    page = requests.get(sandbox.url + "/_sandbox/", timeout=10).text

    for user in (sandbox.alice, sandbox.bob):
        assert f"/_sandbox/inbox/{user['open_id']}" in page
    assert sandbox.app["app_id"] in page
