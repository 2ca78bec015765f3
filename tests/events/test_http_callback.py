"""`POST /lark/events/`: requests built by the sandbox's own signing and encryption code,
byte for byte what it (and Feishu) would send."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection

from events_app import callback
from larkauth import jsonparse
from larkauth.sandbox.delivery import encrypt as encrypt_body
from sessions_app.encryption import generate_key
from sessions_app.models import (
    Application,
    ProcessedEvent,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from tests.events.helpers import (
    card_title,
    decline,
    message,
    open_card,
    post,
    signed_request,
    unsigned_request,
)
from tests.factories import make_app
from tests.fixtures.sandbox import TEST_APP

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_it_declines_a_card_over_http(lark, encrypt):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), encrypt=encrypt)
    assert (b'"encrypt"' in body) is encrypt

    response = post(lark.client, body, headers)

    assert response.status_code == 200, response.content
    assert response.json()["toast"]["type"] == "success"
    assert "card" not in response.json()
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert card_title(lark.sandbox, session.message_id).startswith("已拒绝")
    assert ProcessedEvent.objects.get().channel == "http"


def test_a_replayed_request_is_acted_on_once(lark):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session))

    first = post(lark.client, body, headers)
    replay = post(lark.client, body, headers)

    assert first.status_code == replay.status_code == 200
    assert first.json()["toast"]["type"] == "success"
    assert replay.json()["toast"]["content"] == "已处理 · Already handled"
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert len(lark.sandbox.calls(api="message_patch")) == 1


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_bad_signature_is_refused_and_changes_nothing(lark, encrypt):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), encrypt=encrypt, signature="0" * 64)

    response = post(lark.client, body, headers)

    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"
    _assert_untouched(session)


def test_a_body_changed_after_signing_is_refused(lark):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), encrypt=False)

    response = post(lark.client, body.replace(b"decline", b"Decline"), headers)

    assert (response.status_code, response.json()["code"]) == (401, "bad_signature")
    _assert_untouched(session)


@pytest.mark.parametrize("age", [-400, 400])
def test_a_timestamp_more_than_five_minutes_off_is_refused(lark, age):
    session = open_card(lark, lark.sandbox.alice)
    # Correctly signed, but with a timestamp outside the window: a captured old request.
    body, headers, _ = signed_request(decline(session), timestamp=str(int(time.time()) - age))

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, "stale_timestamp")
    _assert_untouched(session)


def test_a_timestamp_within_five_minutes_is_accepted(lark):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), timestamp=str(int(time.time()) - 200))

    assert post(lark.client, body, headers).status_code == 200


def test_a_wrong_verification_token_is_refused(lark):
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session)
    event["header"]["token"] = "not-the-token"
    body, headers, _ = signed_request(event)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, "invalid_token")
    _assert_untouched(session)


def test_an_unknown_app_is_refused(lark):
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session)
    event["header"]["app_id"] = "cli_somebody_else"
    body, headers, _ = signed_request(event, encrypt=False)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (404, "unknown_app")
    _assert_untouched(session)


def test_an_inactive_app_is_refused(lark):
    session = open_card(lark, lark.sandbox.alice)
    lark.app.is_active = False
    lark.app.save()
    body, headers, _ = signed_request(decline(session))

    response = post(lark.client, body, headers)

    assert response.status_code == 401
    _assert_untouched(session)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"encrypt": 5}', b'{"encrypt": "bm90IGNpcGhlcnRleHQ="}'],
)
def test_a_malformed_body_is_a_400_with_json(lark, body):
    response = post(lark.client, *signed(lark, body))

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_body"
    assert ProcessedEvent.objects.count() == 0


def test_an_event_without_an_event_id_is_refused(lark):
    event = {"schema": "2.0", "header": {"event_type": "x", "app_id": "cli_test_app"}}

    response = post(lark.client, *signed(lark, json.dumps(event).encode()))

    assert (response.status_code, response.json()["code"]) == (400, "malformed_body")


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("X-Lark-Signature", "é" * 64, "bad_signature"),
        ("X-Lark-Signature", "签名", "bad_signature"),
        ("X-Lark-Request-Nonce", "é", "bad_signature"),
        ("X-Lark-Request-Timestamp", "é", "bad_signature"),
    ],
    ids=["signature-latin1", "signature-cjk", "nonce", "timestamp"],
)
def test_non_ascii_headers_are_refused_and_change_nothing(lark, encrypt, header, value, code):
    # A WSGI server hands header bytes over as latin-1 text: any byte can arrive.
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), encrypt=encrypt)
    headers[header] = value

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, code)
    _assert_untouched(session)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("kind", ["huge", "fullwidth-now", "negative"])
def test_a_signed_but_absurd_timestamp_is_refused(lark, encrypt, kind):
    now = str(int(time.time()))
    timestamp = {
        "huge": "9" * 400,
        "fullwidth-now": now.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        "negative": "-" + now,
    }[kind]
    session = open_card(lark, lark.sandbox.alice)
    # Signed over the absurd value, so only the timestamp check can refuse it.
    body, headers, _ = signed_request(decline(session), encrypt=encrypt, timestamp=timestamp)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, "stale_timestamp")
    _assert_untouched(session)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b"{" * 100_000, b'{"a":' * 100_000, b"[" * 65 + b"]" * 65],
    ids=["arrays", "braces", "objects", "65-levels"],
)
def test_deeply_nested_json_is_a_400_and_changes_nothing(lark, body):
    response = post(lark.client, *signed(lark, body))

    assert (response.status_code, response.json()["code"]) == (400, "malformed_body")
    assert "nested deeper than" in response.json()["detail"]
    assert ProcessedEvent.objects.count() == 0


def test_a_body_over_the_size_limit_is_a_413_with_json(lark, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session)
    event["event"]["action"]["value"]["padding"] = "x" * 1000
    body, headers, _ = signed_request(event)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    _assert_untouched(session)


def test_a_deeply_nested_body_inside_the_encryption_is_a_400(lark):
    inner = b'{"schema": "2.0", "header": ' * 10_000
    body = json.dumps({"encrypt": encrypt_body(lark.app.encrypt_key, inner)}).encode()

    response = post(lark.client, *signed(lark, body))

    assert (response.status_code, response.json()["code"]) == (400, "malformed_body")
    assert ProcessedEvent.objects.count() == 0


def test_an_event_nested_as_deep_as_allowed_is_read(lark):
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session)
    nested: dict = {}
    for _ in range(jsonparse.MAX_DEPTH - 5):  # under envelope.event.action.value.extra
        nested = {"n": nested}
    event["event"]["action"]["value"]["extra"] = nested
    body, headers, _ = signed_request(event)

    response = post(lark.client, body, headers)

    assert response.status_code == 200, response.content
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_the_url_check_echoes_the_challenge(lark, encrypt):
    check = {"type": "url_verification", "challenge": "ch-123", "token": "test-verification-token"}
    # Feishu does not sign the URL check (docs/feishu.md §7).
    body, headers = unsigned_request(check, encrypt=encrypt)

    response = post(lark.client, body, headers)

    assert response.status_code == 200, response.content
    assert response.json() == {"challenge": "ch-123"}


def test_the_url_check_with_a_wrong_token_is_refused(lark):
    check = {"type": "url_verification", "challenge": "ch-123", "token": "guess"}
    body, headers = unsigned_request(check, encrypt=False)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, "invalid_token")


def test_an_unsigned_encrypted_event_is_refused(lark):
    session = open_card(lark, lark.sandbox.alice)
    full = signed_request(decline(session))[2]
    body, headers = unsigned_request(full, encrypt=True)

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (401, "bad_signature")
    _assert_untouched(session)


def test_get_is_a_405_with_json(lark):
    response = lark.client.get("/lark/events/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_an_event_nobody_handles_is_acknowledged(lark):
    event = {"schema": "2.0", "header": {"event_type": "contact.user.created_v3"}, "event": {}}
    body, headers, _ = signed_request(event)

    response = post(lark.client, body, headers)

    assert response.status_code == 200
    assert response.json() == {"msg": "success"}
    assert ProcessedEvent.objects.count() == 0


# --- messages to the bot ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["authorize", "  Authorize ", "授权", "AUTHORIZE\n"])
def test_a_user_who_writes_authorize_gets_a_card(lark, text):
    alice = lark.sandbox.alice
    body, headers, _ = signed_request(message(alice["open_id"], text))

    response = post(lark.client, body, headers)

    assert response.status_code == 200
    session = UserAuthSession.objects.get(open_id=alice["open_id"])
    assert session.state == SessionState.PENDING
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    assert card["message_id"] == session.message_id
    assert TokenEvent.objects.get(session=session, kind="created").actor == (
        f"user:{alice['open_id']}"
    )


@pytest.mark.parametrize(
    ("text", "chat_type"), [("hello", "p2p"), ("please authorize", "p2p"), ("authorize", "group")]
)
def test_other_messages_send_nothing(lark, text, chat_type):
    alice = lark.sandbox.alice
    body, headers, _ = signed_request(message(alice["open_id"], text, chat_type))

    assert post(lark.client, body, headers).status_code == 200
    assert lark.sandbox.messages(open_id=alice["open_id"]) == []
    assert not UserAuthSession.objects.exists()
    assert ProcessedEvent.objects.count() == 0  # nothing to do twice: no dedupe row written


def test_a_redelivered_authorize_message_is_acted_on_once(lark):
    alice = lark.sandbox.alice
    body, headers, _ = signed_request(message(alice["open_id"], "authorize"))
    for _ in range(2):
        assert post(lark.client, body, headers).status_code == 200

    assert ProcessedEvent.objects.count() == 1
    assert TokenEvent.objects.filter(kind="created").count() == 1
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1


def test_asking_again_keeps_the_pending_card(lark):
    alice = lark.sandbox.alice
    for _ in range(2):
        body, headers, _ = signed_request(message(alice["open_id"], "authorize"))
        assert post(lark.client, body, headers).status_code == 200

    assert UserAuthSession.objects.filter(open_id=alice["open_id"]).count() == 1
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1


def test_an_authorized_user_is_told_so_rather_than_asked_again(lark):
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    body, headers, _ = signed_request(message(alice["open_id"], "authorize"))

    assert post(lark.client, body, headers).status_code == 200

    assert UserAuthSession.objects.filter(open_id=alice["open_id"]).count() == 1
    newest = lark.sandbox.messages(open_id=alice["open_id"])[0]
    assert newest["content"]["header"]["title"]["content"].startswith("已授权")


def _assert_untouched(session: UserAuthSession) -> None:
    session.refresh_from_db()
    assert session.state == SessionState.PENDING
    assert ProcessedEvent.objects.count() == 0
    assert not TokenEvent.objects.filter(kind="rejected").exists()


def signed(lark, body: bytes) -> tuple[bytes, dict[str, str]]:
    """Any body, correctly signed with the app's encrypt key."""
    timestamp = str(int(time.time()))
    headers = {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": "nonce",
        "X-Lark-Signature": callback.sign(timestamp, "nonce", lark.app.encrypt_key, body),
    }
    return body, headers


@pytest.mark.django_db(transaction=True)
def test_a_click_in_the_sandbox_reaches_the_view_over_http(lark, live_server, monkeypatch):
    # End to end: the sandbox posts the click as Feishu would (encrypted, signed) to a
    # running server, and shows the person the toast from the answer.
    # The server's request threads close their connections after each request (the
    # sandbox keeps its HTTP connection alive, and the test database must be droppable).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    lark.sandbox.add_app(**TEST_APP, event_callback_url=f"{live_server.url}/lark/events/")
    session = open_card(lark, lark.sandbox.alice)

    result = lark.sandbox.card_click(
        session.open_id,
        session.message_id,
        {"action": "decline", "session_id": str(session.pk)},
        channel="http",
    )

    assert result["ok"] is True, result
    assert (result["channel"], result["http_status"]) == ("http", 200)
    assert result["toast"]["type"] == "success"
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert card_title(lark.sandbox, session.message_id).startswith("已拒绝")


def test_the_endpoint_is_off_when_http_fallback_is_disabled(lark, settings):
    settings.WEBSOCKET_FALLBACK_TO_HTTP = False
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session))

    response = post(lark.client, body, headers)

    assert (response.status_code, response.json()["code"]) == (404, "http_events_disabled")
    _assert_untouched(session)


def test_an_application_no_key_decrypts_does_not_stop_the_others_events(lark, settings):
    """One application's secrets written under a dropped key: the others' events are still
    checked and acted on."""
    other = make_app(app_id="cli_aaa_lost_key")  # first by app_id
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    Application.objects.filter(pk=other.pk).update(encrypt_key="written-under-a-lost-key")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys
    callback.forget_apps()
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session), encrypt=True)

    response = post(lark.client, body, headers)

    assert response.status_code == 200, response.content
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
