"""Hostile input, as an attacker or a broken client sends it: a 4xx JSON answer from the API
(a friendly page for people), and nothing written or sent."""

from __future__ import annotations

import json

import pytest

from sessions_app.models import SessionState, TokenEvent, UserAuthSession

pytestmark = pytest.mark.django_db

WRITE_PATHS = ["/api/v1/tokens/", "/api/v1/auth-sessions/"]


def send(lark, method: str, path: str, body: bytes | str = b"", content_type: str = ""):
    """A request with the API key and exactly this body (none for GET)."""
    key = {"HTTP_AUTHORIZATION": f"Api-Key {lark.api_key}"}
    if method == "get":
        return lark.client.get(path, **key)
    extra = {"content_type": content_type} if content_type else {}
    return getattr(lark.client, method)(path, body, **key, **extra)


def assert_nothing_happened(lark, sessions_before: int = 0) -> None:
    assert UserAuthSession.objects.count() == sessions_before
    assert lark.sandbox.calls(api="message_create") == []


@pytest.fixture
def authorized(lark) -> UserAuthSession:
    """Alice, authorized through the real flow; the sandbox's call log cleared after."""
    open_id = lark.sandbox.alice["open_id"]
    assert lark.authorize(lark.open_card_session(open_id), open_id).status_code == 200
    lark.sandbox.clear_calls()
    return UserAuthSession.objects.get(open_id=open_id, state=SessionState.COMPLETED)


# --- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"open_id": ' * 100_000, b'{"open_id": "ou_x", "x": ' + b"[" * 65],
    ids=["arrays", "objects", "65-levels"],
)
def test_deeply_nested_json_is_a_400_and_changes_nothing(lark, path, body):
    response = send(lark, "post", path, body, "application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "nested deeper than" in response.json()["detail"]
    assert_nothing_happened(lark)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_body_over_the_size_limit_is_a_413_and_changes_nothing(lark, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"open_id": lark.sandbox.alice["open_id"]}) + " " * 1000

    response = send(lark, "post", path, body, "application/json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert_nothing_happened(lark)


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", "open_id={open_id}"),
        (
            "multipart/form-data; boundary=B0undary",
            '--B0undary\r\nContent-Disposition: form-data; name="open_id"\r\n\r\n'
            "{open_id}\r\n--B0undary--\r\n",
        ),
        ("text/plain", '{{"open_id": "{open_id}"}}'),
    ],
    ids=["form", "multipart", "text"],
)
def test_a_body_that_is_not_json_is_a_415_and_changes_nothing(lark, path, content_type, body):
    body = body.format(open_id=lark.sandbox.alice["open_id"])

    response = send(lark, "post", path, body, content_type)

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert_nothing_happened(lark)


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    "body",
    [
        '{"open_id": "ou_\\u0000"}',
        '{"user_id": "\\u0000"}',
        '{"email": "a\\u0000@example.com"}',
        '{"app_id": "cli_test_app\\u0000", "open_id": "ou_x"}',
        '{"open_id": "\\ud800"}',
        '{"open_id": "ou_x", "wait": NaN}',
    ],
)
def test_nul_and_broken_text_in_a_body_is_a_400_and_changes_nothing(lark, path, body):
    response = send(lark, "post", path, body, "application/json")

    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_request", "parse_error"}
    assert_nothing_happened(lark)


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/authorizations/?app_id=%00"),
        ("get", "/api/v1/authorizations/?app_id=cli_test_app%00"),
        ("delete", "/api/v1/authorizations/cli_test_app/{open_id}%00/"),
        ("delete", "/api/v1/authorizations/cli_test_app%00/{open_id}/"),
        ("get", "/api/v1/auth-sessions/{session}/?%00=1"),
        ("post", "/api/v1/tokens/?app_id=%00"),
    ],
)
def test_a_nul_in_the_url_is_a_400_and_changes_nothing(lark, authorized, method, path):
    path = path.format(open_id=authorized.open_id, session=authorized.pk)

    response = send(lark, method, path, '{"open_id": "ou_x"}', "application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    authorized.refresh_from_db()
    assert authorized.state == SessionState.COMPLETED
    assert authorized.access_token
    assert_nothing_happened(lark, sessions_before=1)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/auth-sessions/not-a-uuid/", "/api/v1/nothing-here", "/api/v1/tokens/extra/"],
)
def test_an_unknown_api_url_is_a_json_404(lark, path):
    response = send(lark, "get", path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


def test_a_wrong_method_is_a_json_405_that_names_the_allowed_ones(lark):
    response = send(lark, "get", "/api/v1/tokens/")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]


def test_a_nul_in_the_api_key_is_a_401(lark):
    response = lark.api("get", "/api/v1/authorizations/", key="abc\x00.def")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


# --- Feishu's answers about the user ------------------------------------------------------


def test_a_user_outside_the_apps_availability_fails_the_session_not_the_request(lark):
    """The card is sent after the request (services/delivery.py): the request succeeds, and
    the session says why no card arrived. Never a 502."""
    # The sandbox, like Feishu, answers 230013 to a message for a user the app cannot reach.
    response = lark.api("post", "/api/v1/auth-sessions/", {"open_id": "ou_not_in_this_tenant"})

    assert response.status_code == 201
    session = lark.api("get", f"/api/v1/auth-sessions/{response.json()['id']}/").json()
    assert (session["state"], session["failure_reason"]) == ("failed", "user_unreachable")


def test_a_token_prompt_for_an_unreachable_user_is_authorization_required(lark):
    response = lark.request_token(open_id="ou_not_in_this_tenant", prompt=True)

    assert (response.status_code, response.json()["code"]) == (404, "authorization_required")


# --- the browser's OAuth pages ------------------------------------------------------------


def test_a_nul_in_the_callbacks_code_shows_the_invalid_link_page_and_keeps_the_state(lark):
    open_id = lark.sandbox.alice["open_id"]
    session_id = lark.open_card_session(open_id)
    callback = lark.consent(session_id, open_id)
    tampered = callback.replace("code=", "code=%00", 1)

    response = lark.client.get(tampered)

    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()
    assert lark.sandbox.calls(api="oauth_token") == []
    # The state was not consumed: the untouched link still completes the authorization.
    assert lark.client.get(callback).status_code == 200
    assert UserAuthSession.objects.get(pk=session_id).state == SessionState.COMPLETED


@pytest.mark.parametrize(
    "query",
    ["state=%00&code=x", "state=abc&code=%00", "state=%00&error=access_denied", "state=%00"],
)
def test_a_nul_in_the_callback_link_shows_the_invalid_link_page(lark, query):
    response = lark.client.get(f"/oauth/callback?{query}")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "This link is not valid" in response.content.decode()
    assert not TokenEvent.objects.exists()


@pytest.mark.parametrize("path", ["/oauth/start/%00", "/oauth/start/not-a-uuid"])
def test_a_garbage_start_link_shows_the_not_found_page(lark, path):
    response = lark.client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
