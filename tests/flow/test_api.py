"""The REST API as a calling service sees it: keys, errors, rate limits, long-polling."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from larkauth.redaction import RedactionFilter
from sessions_app.encryption import generate_key
from sessions_app.models import Application, ServiceClient, UserAuthSession

pytestmark = pytest.mark.django_db


def test_a_missing_or_wrong_key_is_a_401(lark) -> None:
    no_key = lark.client.post(
        "/api/v1/tokens/", {"open_id": "ou_x"}, content_type="application/json"
    )
    assert no_key.status_code == 401
    assert no_key.json()["code"] == "invalid_api_key"
    assert no_key["WWW-Authenticate"] == "Api-Key"
    wrong = lark.api("post", "/api/v1/tokens/", {"open_id": "ou_x"}, key="abcdefgh.not-the-key")
    assert wrong.status_code == 401


def test_a_revoked_key_is_refused(lark) -> None:
    ServiceClient.objects.update(revoked=True)
    assert lark.request_token(open_id="ou_x").status_code == 401


def test_a_key_for_another_app_is_a_403(lark) -> None:
    other = Application.objects.create(app_id="cli_other", app_secret="s")
    response = lark.request_token(app_id=other.app_id, open_id="ou_x")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert lark.api("get", "/api/v1/authorizations/?app_id=cli_other").status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"open_id": "ou_a", "user_id": "u_a"},
        {"open_id": "ou_a", "wait": 31},
        {"open_id": "ou_a", "prompt": "sometimes"},
        {"email": "not-an-email"},
    ],
)
def test_bad_input_is_a_400_with_a_code_and_changes_nothing(lark, body) -> None:
    response = lark.request_token(**body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert UserAuthSession.objects.count() == 0


def test_malformed_json_is_a_400(lark) -> None:
    response = lark.client.post(
        "/api/v1/tokens/",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Api-Key {lark.api_key}",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_an_unknown_app_is_a_404(lark) -> None:
    response = lark.request_token(app_id="cli_missing", open_id="ou_x")
    assert (response.status_code, response.json()["code"]) == (404, "unknown_app")


def test_an_unknown_user_id_is_a_404(lark) -> None:
    response = lark.api("post", "/api/v1/auth-sessions/", {"user_id": "nobody"})
    assert (response.status_code, response.json()["code"]) == (404, "unknown_user")


def test_a_user_id_is_resolved_through_the_directory(lark) -> None:
    alice = lark.sandbox.alice
    response = lark.api("post", "/api/v1/auth-sessions/", {"user_id": alice["user_id"]})
    assert response.status_code == 201
    assert response.json()["open_id"] == alice["open_id"]
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1


def test_opening_sessions_is_rate_limited_per_user(lark, settings) -> None:
    settings.AUTH_REQUEST_RATE_LIMIT = 3
    alice = lark.sandbox.alice
    body = {"open_id": alice["open_id"], "method": "link"}
    for _ in range(3):
        assert lark.api("post", "/api/v1/auth-sessions/", body).status_code == 201
    limited = lark.api("post", "/api/v1/auth-sessions/", body)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 61
    assert UserAuthSession.objects.count() == 3
    # Another user is not affected.
    other = {"open_id": lark.sandbox.bob["open_id"], "method": "link"}
    assert lark.api("post", "/api/v1/auth-sessions/", other).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_wait_returns_the_token_once_the_user_authorizes(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])

    def person_approves_soon() -> None:
        threading.Event().wait(0.5)
        try:
            lark.authorize(session_id, alice["open_id"])
        finally:
            connection.close()  # this thread's own connection

    approver = threading.Thread(target=person_approves_soon)
    approver.start()
    response = lark.request_token(open_id=alice["open_id"], prompt=True, wait=10)
    approver.join()
    assert response.status_code == 200, response.content
    assert response.json()["open_id"] == alice["open_id"]


def test_wait_gives_up_after_the_wait(lark) -> None:
    response = lark.request_token(open_id=lark.sandbox.alice["open_id"], prompt=True, wait=1)
    assert response.status_code == 404
    assert response.json()["auth_session"]["state"] == "pending"


def test_session_status_never_shows_tokens(lark) -> None:
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    lark.authorize(session_id, alice["open_id"])
    status = lark.api("get", f"/api/v1/auth-sessions/{session_id}/")
    assert status.status_code == 200
    assert status.json()["state"] == "completed"
    token = UserAuthSession.objects.get(pk=session_id).access_token
    assert token not in status.content.decode()
    assert (
        lark.api("get", "/api/v1/auth-sessions/00000000-0000-0000-0000-000000000000/").status_code
        == 404
    )


def test_authorizations_are_listed_and_revoked(lark) -> None:
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    listing = lark.api("get", "/api/v1/authorizations/?app_id=cli_test_app")
    assert [row["open_id"] for row in listing.json()] == [alice["open_id"]]
    assert "access_token" not in listing.json()[0]

    deleted = lark.api("delete", f"/api/v1/authorizations/cli_test_app/{alice['open_id']}/")
    assert deleted.status_code == 204
    session = UserAuthSession.objects.get(open_id=alice["open_id"])
    assert (session.state, session.access_token, session.refresh_token) == ("revoked", None, None)
    assert lark.request_token(open_id=alice["open_id"]).status_code == 404
    again = lark.api("delete", f"/api/v1/authorizations/cli_test_app/{alice['open_id']}/")
    assert again.status_code == 404


def test_the_openapi_schema_and_docs_are_served(lark) -> None:
    schema = lark.client.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert "/api/v1/tokens/" in schema.content.decode()
    assert lark.client.get("/api/v1/docs/").status_code == 200


def test_create_api_key_prints_a_working_key_on_its_last_line(lark, capsys) -> None:
    call_command("create_api_key", "report-bot", "--app", "cli_test_app")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert lark.api("get", "/api/v1/authorizations/", key=key).status_code == 200
    stored = ServiceClient.objects.get(name="report-bot")
    assert key not in (stored.hashed_key, stored.id)


def test_send_auth_card_command_sends_or_reuses(lark, capsys) -> None:
    alice = lark.sandbox.alice
    call_command("send_auth_card", "--open-id", alice["open_id"])
    call_command("send_auth_card", "--open-id", alice["open_id"])
    out = capsys.readouterr().out
    assert "Sent card" in out
    assert "already has a pending card" in out
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1


def test_no_secret_reaches_the_logs_at_debug(lark) -> None:
    """Through the handler configured in settings.LOGGING, with every logger at DEBUG."""
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactionFilter) for f in h.filters)
    ]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    loggers = [
        logging.getLogger(name) for name in ("", "Lark", "sessions_app", "larkauth", "urllib3")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        alice = lark.sandbox.alice
        callback = lark.consent(lark.open_card_session(alice["open_id"]), alice["open_id"])
        code = callback.split("code=")[1].split("&")[0]
        lark.client.get(callback)
        token = lark.request_token(open_id=alice["open_id"]).json()["access_token"]
        refresh = str(UserAuthSession.objects.get(state="completed").refresh_token)
    finally:
        handler.setStream(previous_stream)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    logs = buffer.getvalue()
    assert "/open-apis/" in logs  # the Feishu calls were logged at DEBUG
    for secret in (token, refresh, code, "test-app-secret", lark.api_key):
        assert secret not in logs


def test_a_token_no_key_decrypts_is_a_503_that_names_the_keys_and_keeps_the_row(
    lark, settings, caplog
) -> None:
    """An operator dropped the key the token was written under: the service says what is
    wrong (not a 500), and the authorization is untouched, so putting the key back heals it."""
    alice = lark.sandbox.alice
    lark.authorize(lark.open_card_session(alice["open_id"]), alice["open_id"])
    keys = list(settings.LARKAUTH_ENCRYPTION_KEYS)
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    UserAuthSession.objects.filter(open_id=alice["open_id"]).update(access_token="eyJ-lost")
    settings.LARKAUTH_ENCRYPTION_KEYS = keys

    response = lark.request_token(open_id=alice["open_id"])

    assert response.status_code == 503
    assert response.json()["code"] == "undecryptable"
    assert "LARKAUTH_ENCRYPTION_KEYS" in response.json()["detail"]
    assert "eyJ-lost" not in response.content.decode() + caplog.text
    row = UserAuthSession.objects.only("state").get(open_id=alice["open_id"], state="completed")
    assert row.state == "completed"
