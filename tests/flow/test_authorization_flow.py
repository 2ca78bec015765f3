"""The flow of PRODUCT.md: token request → card → consent → callback → card updated → token."""

from __future__ import annotations

import pytest
from django.db import connection

from larkauth.feishu import FeishuClient
from sessions_app import services
from sessions_app.models import SessionState, TokenEvent, UserAuthSession

pytestmark = pytest.mark.django_db


def _card_text(message: dict) -> str:
    return str(message["content"])


def test_a_user_authorizes_from_the_card_and_the_service_gets_a_token(lark) -> None:
    alice = lark.sandbox.alice

    first = lark.request_token(open_id=alice["open_id"], prompt=True)
    assert first.status_code == 404
    assert first.json()["code"] == "authorization_required"
    session_id = first.json()["auth_session"]["id"]
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    assert "Authorize" in _card_text(card)

    page = lark.authorize(session_id, alice["open_id"])
    assert page.status_code == 200
    assert "Authorized" in page.content.decode()

    [updated] = lark.sandbox.messages(open_id=alice["open_id"])  # the same card, no second one
    assert updated["message_id"] == card["message_id"]
    assert [entry["source"] for entry in updated["history"]] == ["create", "patch"]
    assert alice["name"] in _card_text(updated)

    served = lark.request_token(open_id=alice["open_id"])
    assert served.status_code == 200
    assert served["Cache-Control"] == "no-store"
    body = served.json()
    assert (body["open_id"], body["name"], body["token_type"]) == (
        alice["open_id"],
        alice["name"],
        "Bearer",
    )
    feishu = FeishuClient("cli_test_app", "test-app-secret", domain=lark.sandbox.url)
    assert feishu.get_user_info(body["access_token"]).open_id == alice["open_id"]

    services.token_audit_flush()  # hand-outs reach the audit log in batches
    kinds = list(TokenEvent.objects.order_by("created_at").values_list("kind", flat=True))
    assert kinds == ["created", "card_sent", "completed", "token_issued"]
    assert TokenEvent.objects.get(kind="token_issued").actor.endswith("test-service")


def test_tokens_are_not_stored_in_clear_text(lark) -> None:
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    token = lark.request_token(open_id=alice["open_id"]).json()["access_token"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM user_auth_sessions")
        raw = b"".join(bytes(value) for row in cursor.fetchall() for value in row if value)
    assert token.encode() not in raw
    assert UserAuthSession.objects.get(state="completed").access_token == token


def test_a_replayed_callback_exchanges_no_second_code(lark) -> None:
    alice = lark.sandbox.alice
    callback = lark.consent(lark.open_card_session(alice["open_id"]), alice["open_id"])
    assert lark.client.get(callback).status_code == 200
    replay = lark.client.get(callback)
    assert replay.status_code == 409
    assert "already used" in replay.content.decode()
    assert len(lark.sandbox.calls(api="oauth_token")) == 1


@pytest.mark.parametrize("state", ["", "forged-state-value", "a" * 43])
def test_a_tampered_or_missing_state_is_refused_without_a_token_call(lark, state) -> None:
    alice = lark.sandbox.alice
    callback = lark.consent(lark.open_card_session(alice["open_id"]), alice["open_id"])
    code = callback.split("code=")[1].split("&")[0]
    response = lark.client.get("/oauth/callback", {"code": code, "state": state})
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert lark.sandbox.calls(api="oauth_token") == []
    assert UserAuthSession.objects.get().state == SessionState.PENDING


def test_an_expired_session_gets_a_friendly_page_and_an_expired_card(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    UserAuthSession.objects.filter(pk=session_id).update(expires_at="2020-01-01T00:00:00Z")
    response = lark.start(session_id)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert UserAuthSession.objects.get(pk=session_id).state == SessionState.EXPIRED
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    assert "request_again" in _card_text(card)


def test_a_session_that_expires_between_start_and_callback_is_refused(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    callback = lark.consent(session_id, alice["open_id"])
    UserAuthSession.objects.filter(pk=session_id).update(expires_at="2020-01-01T00:00:00Z")
    assert lark.client.get(callback).status_code == 410
    assert lark.sandbox.calls(api="oauth_token") == []


def test_an_unknown_session_is_not_found(lark) -> None:
    response = lark.start("00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "could not find" in response.content.decode()


def test_another_user_approving_stores_nothing(lark) -> None:
    alice, bob = lark.sandbox.alice, lark.sandbox.bob
    session_id = lark.open_card_session(alice["open_id"])
    response = lark.authorize(session_id, bob["open_id"])
    assert response.status_code == 403
    assert "someone else" in response.content.decode()
    session = UserAuthSession.objects.get(pk=session_id)
    assert (session.state, session.failure_reason) == ("failed", "wrong_user")
    assert session.access_token is None
    assert session.open_id == alice["open_id"]
    assert not UserAuthSession.objects.filter(open_id=bob["open_id"]).exists()


def test_declining_on_feishus_page_marks_the_session_rejected(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    response = lark.authorize(session_id, alice["open_id"], decision="deny")
    assert response.status_code == 200
    assert "declined" in response.content.decode()
    assert UserAuthSession.objects.get(pk=session_id).state == SessionState.REJECTED
    [card] = lark.sandbox.messages(open_id=alice["open_id"])
    assert card["history"][-1]["source"] == "patch"
    assert lark.sandbox.calls(api="oauth_token") == []


def test_a_feishu_outage_during_the_exchange_fails_cleanly_without_retrying(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    callback = lark.consent(session_id, alice["open_id"])
    lark.sandbox.add_fault("oauth_token", http_status=500, code=20050)
    response = lark.client.get(callback)
    assert response.status_code == 502
    assert "try again" in response.content.decode()
    assert len(lark.sandbox.calls(api="oauth_token")) == 1  # a code is single-use: no retry
    session = UserAuthSession.objects.get(pk=session_id)
    assert (session.state, session.failure_reason, session.access_token) == (
        "failed",
        "feishu_error",
        None,
    )


def test_an_expired_code_gets_its_own_page(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    callback = lark.consent(session_id, alice["open_id"])
    lark.sandbox.advance_clock(301)
    response = lark.client.get(callback)
    assert response.status_code == 400
    assert "took too long" in response.content.decode()
    assert UserAuthSession.objects.get(pk=session_id).failure_reason == "code_expired"


def test_a_pending_card_is_reused_not_sent_twice(lark) -> None:
    alice = lark.sandbox.alice
    first = lark.request_token(open_id=alice["open_id"], prompt=True).json()["auth_session"]
    again = lark.request_token(open_id=alice["open_id"], prompt=True).json()["auth_session"]
    assert first["id"] == again["id"]
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1


def test_a_link_session_returns_an_authorize_url_and_sends_no_card(lark) -> None:
    alice = lark.sandbox.alice
    response = lark.api(
        "post", "/api/v1/auth-sessions/", {"open_id": alice["open_id"], "method": "link"}
    )
    assert response.status_code == 201
    url = response.json()["authorize_url"]
    assert url == f"http://testserver/oauth/start/{response.json()['id']}"
    assert lark.sandbox.messages(open_id=alice["open_id"]) == []
    assert lark.authorize(response.json()["id"], alice["open_id"]).status_code == 200


def test_an_authorized_user_is_not_asked_again_unless_forced(lark) -> None:
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    again = lark.api("post", "/api/v1/auth-sessions/", {"open_id": alice["open_id"]})
    assert again.status_code == 200
    assert again.json()["state"] == "completed"
    forced = lark.api(
        "post", "/api/v1/auth-sessions/", {"open_id": alice["open_id"], "force": True}
    )
    assert forced.status_code == 201
    # Completing the new one supersedes the old authorization in the same transaction.
    lark.authorize(forced.json()["id"], alice["open_id"])
    states = sorted(UserAuthSession.objects.values_list("state", flat=True))
    assert states == ["completed", "superseded"]
