"""FeishuClient against the sandbox, over loopback: OAuth with PKCE, user info, contacts,
cards, and how it retries (or refuses to)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from prometheus_client import REGISTRY

from larkauth import cards
from larkauth.backoff import Backoff
from larkauth.errors import FeishuError
from larkauth.feishu import FeishuClient, UserToken, pkce, transport
from larkauth.ratelimit import RateLimiter
from larkauth.sandbox import SandboxControl
from larkauth.sandbox.server import SandboxServer
from tests.fixtures.sandbox import TEST_APP, TEST_CONFIG

REDIRECT_URI = "http://127.0.0.1:8000/oauth/callback"
TIMEOUT = 0.5
FAST_RETRIES = Backoff(base=0.01, cap=0.02, attempts=3)


def _client(url: str, **overrides: Any) -> FeishuClient:
    options: dict[str, Any] = {
        "domain": url,
        "timeout": TIMEOUT,
        "rate_limiter": RateLimiter(0),
        "retry": FAST_RETRIES,
    }
    options |= overrides
    app_secret = options.pop("app_secret", TEST_APP["app_secret"])
    return FeishuClient(TEST_APP["app_id"], app_secret, **options)


@pytest.fixture
def client(sandbox) -> FeishuClient:
    return _client(sandbox.url)


def _approve(client: FeishuClient, open_id: str, scope: str = "offline_access") -> tuple[str, str]:
    """Drive the consent page as the person would: returns (code, verifier)."""
    verifier, state = pkce.new_verifier(), pkce.new_state()
    url = client.authorize_url(REDIRECT_URI, state, pkce.challenge(verifier), scope=scope)
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    answer = requests.post(
        url, data={"open_id": open_id, "decision": "approve"}, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0], verifier


def _authorized(client: FeishuClient, open_id: str) -> UserToken:
    code, verifier = _approve(client, open_id)
    return client.exchange_code(code, verifier, REDIRECT_URI)


def _failure(call: Callable[[], Any]) -> FeishuError:
    with pytest.raises(FeishuError) as caught:
        call()
    return caught.value


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- OAuth ------------------------------------------------------------------------------


def test_it_exchanges_a_code_with_pkce(client, sandbox):
    code, verifier = _approve(client, sandbox.alice["open_id"])
    now = datetime(2026, 1, 20, 9, 30, tzinfo=UTC)

    token = client.exchange_code(code, verifier, REDIRECT_URI, now=now)

    assert token.access_token.startswith("eyJ")
    assert token.refresh_token
    assert token.refresh_token != token.access_token
    assert token.token_type == "Bearer"
    assert "offline_access" in token.scopes
    assert token.expires_at == now + timedelta(seconds=token.expires_in)
    assert token.refresh_token_expires_in
    assert token.refresh_token_expires_at == now + timedelta(seconds=token.refresh_token_expires_in)
    assert token.access_token not in repr(token)
    assert token.refresh_token not in repr(token)
    assert client.get_user_info(token.access_token).open_id == sandbox.alice["open_id"]
    [call] = sandbox.calls("oauth_token")
    assert call["status"] == 200


def test_a_wrong_verifier_kills_the_code(client, sandbox):
    code, _ = _approve(client, sandbox.alice["open_id"])
    wrong_verifier = pkce.new_verifier()

    error = _failure(lambda: client.exchange_code(code, wrong_verifier, REDIRECT_URI))

    assert error.code == 20049
    assert error.code_dead
    assert error.permanent
    assert error.http_status == 400
    for secret in (code, wrong_verifier, TEST_APP["app_secret"]):
        assert secret not in str(error)
    assert len(sandbox.calls("oauth_token")) == 1


def test_a_code_works_once(client, sandbox):
    code, verifier = _approve(client, sandbox.alice["open_id"])
    client.exchange_code(code, verifier, REDIRECT_URI)

    error = _failure(lambda: client.exchange_code(code, verifier, REDIRECT_URI))

    assert error.code_dead
    assert error.permanent
    assert code not in str(error)


def test_refresh_rotates_and_the_old_refresh_token_dies(client, sandbox):
    first = _authorized(client, sandbox.alice["open_id"])
    assert first.refresh_token

    second = client.refresh_user_token(first.refresh_token)

    assert second.refresh_token
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert client.get_user_info(second.access_token).open_id == sandbox.alice["open_id"]
    error = _failure(lambda: client.refresh_user_token(first.refresh_token or ""))
    assert error.needs_reauthorization
    assert error.permanent
    assert first.refresh_token not in str(error)
    assert len(sandbox.calls("oauth_refresh")) == 2


def test_the_token_endpoint_is_never_retried_on_5xx(client, sandbox):
    code, verifier = _approve(client, sandbox.alice["open_id"])
    sandbox.add_fault("oauth_token", http_status=500)

    error = _failure(lambda: client.exchange_code(code, verifier, REDIRECT_URI))

    assert error.retryable
    assert (error.code, error.http_status) == (20050, 500)
    assert len(sandbox.calls("oauth_token")) == 1


def test_the_token_endpoint_is_never_retried_on_a_dropped_connection(client, sandbox):
    first = _authorized(client, sandbox.alice["open_id"])
    sandbox.add_fault("oauth_refresh", drop_connection=True)

    error = _failure(lambda: client.refresh_user_token(first.refresh_token or ""))

    assert error.retryable
    assert error.code is None
    assert len(sandbox.calls("oauth_refresh")) == 1


def test_the_token_endpoint_times_out_without_a_retry(client, sandbox):
    code, verifier = _approve(client, sandbox.alice["open_id"])
    sandbox.add_fault("oauth_token", latency_ms=int(TIMEOUT * 1000 * 4))
    started = time.monotonic()

    error = _failure(lambda: client.exchange_code(code, verifier, REDIRECT_URI))

    assert time.monotonic() - started < TIMEOUT * 2
    assert error.retryable
    assert "no answer within" in str(error)
    assert len(sandbox.calls("oauth_token")) == 1


# --- Retries ----------------------------------------------------------------------------


def test_it_retries_a_retryable_error(client, sandbox):
    token = _authorized(client, sandbox.alice["open_id"])
    sandbox.add_fault("user_info", http_status=500)

    info = client.get_user_info(token.access_token)

    assert info.open_id == sandbox.alice["open_id"]
    assert [call["status"] for call in sandbox.calls("user_info")] == [500, 200]


def test_it_does_not_retry_a_permanent_error(client, sandbox):
    error = _failure(lambda: client.get_user_info("eyJub3QiOiJhIHRva2VuIn0.invalid.sig"))

    assert error.code == 99991668
    assert error.permanent
    assert error.needs_reauthorization
    assert len(sandbox.calls("user_info")) == 1


def test_retries_are_bounded_and_each_attempt_times_out(client, sandbox):
    token = _authorized(client, sandbox.alice["open_id"])
    sandbox.add_fault("user_info", latency_ms=int(TIMEOUT * 1000 * 4), times=3)
    started = time.monotonic()

    error = _failure(lambda: client.get_user_info(token.access_token))

    assert error.retryable
    assert time.monotonic() - started < 3 * TIMEOUT + 1
    assert len(sandbox.calls("user_info")) == 3


def test_it_fetches_a_new_tenant_token_when_feishu_rejects_the_cached_one(client, sandbox):
    client.send_card(sandbox.alice["open_id"], cards.declined("sess-1"))
    # A reset that forgets app tokens: the client's cached tenant token is now unknown.
    sandbox.reset(keep_app_tokens=False)
    sandbox.add_app(**TEST_APP)
    sandbox.add_user(**{k: sandbox.alice[k] for k in ("open_id", "union_id", "user_id", "name")})

    client.send_card(sandbox.alice["open_id"], cards.declined("sess-1"))

    assert [call["code"] for call in sandbox.calls("message_create")] == [99991663, 0]
    assert len(sandbox.calls("tenant_token")) == 1


def test_it_retries_a_failing_tenant_token_endpoint(client, sandbox):
    sandbox.add_fault("tenant_token", http_status=500)

    client.get_contact_user(sandbox.bob["open_id"])

    assert [call["status"] for call in sandbox.calls("tenant_token")] == [500, 200]
    assert len(sandbox.calls("contact_user")) == 1


def test_wrong_app_credentials_are_permanent(sandbox):
    client = _client(sandbox.url, app_secret="not-the-secret")

    error = _failure(lambda: client.get_contact_user(sandbox.bob["open_id"]))

    assert error.code == 10014
    assert error.permanent
    assert "not-the-secret" not in str(error)
    assert len(sandbox.calls("tenant_token")) == 1
    assert sandbox.calls("contact_user") == []


# --- Users ------------------------------------------------------------------------------


def test_it_reads_the_user_behind_a_token(client, sandbox):
    token = _authorized(client, sandbox.alice["open_id"])

    info = client.get_user_info(token.access_token)

    assert info.open_id == sandbox.alice["open_id"]
    assert info.union_id == sandbox.alice["union_id"]
    assert (info.name, info.en_name) == (sandbox.alice["name"], sandbox.alice["en_name"])
    assert info.avatar_url
    assert info.tenant_key


def test_it_reads_contact_users_by_open_id_and_user_id(client, sandbox):
    by_open_id = client.get_contact_user(sandbox.bob["open_id"])
    by_user_id = client.get_contact_user("bob", user_id_type="user_id")

    assert by_open_id == by_user_id
    assert by_open_id.open_id == sandbox.bob["open_id"]
    assert by_open_id.union_id == sandbox.bob["union_id"]
    assert by_open_id.name == sandbox.bob["name"]
    assert not by_open_id.is_resigned


def test_sdk_calls_reuse_one_kept_alive_connection(client, sandbox):
    # lark-oapi alone opens a new connection (a TLS handshake, against Feishu) per call.
    for _ in range(3):
        client.get_contact_user(sandbox.bob["open_id"])
    ports = [call["client_port"] for call in sandbox.calls(api="contact_user")]
    assert len(ports) == 3
    assert len(set(ports)) == 1


@pytest.fixture
def fresh_proxy_environment():
    transport.environ_proxies.cache_clear()  # the environment is read once per origin
    yield
    transport.environ_proxies.cache_clear()


def test_calls_go_through_the_proxy_the_environment_names(
    client, sandbox, monkeypatch, fresh_proxy_environment
):
    with socket.socket() as closed:  # a port nothing listens on: the proxy is down
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
    with pytest.raises(FeishuError, match=r"ProxyError|Unable to connect to proxy"):
        client.get_contact_user(sandbox.bob["open_id"])

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    transport.environ_proxies.cache_clear()
    assert client.get_contact_user(sandbox.bob["open_id"]).open_id == sandbox.bob["open_id"]


# --- Cards ------------------------------------------------------------------------------


def test_it_sends_a_card_and_patches_it_in_place(client, sandbox):
    open_id = sandbox.alice["open_id"]
    request_card = cards.authorization_request(
        "sess-1", start_url=cards.oauth_start_url("http://127.0.0.1:8000", "sess-1")
    )

    sent = client.send_card(open_id, request_card, dedupe_key="sess-1")
    client.patch_card(sent.message_id, cards.authorized("Alice", datetime(2026, 1, 20, 9, 30)))

    assert sent.message_id.startswith("om_")
    message = sandbox.message(sent.message_id)
    assert message["open_id"] == open_id
    assert [entry["content"] for entry in message["history"]] == [
        request_card,
        cards.authorized("Alice", datetime(2026, 1, 20, 9, 30)),
    ]
    assert message["uuid"] == "sess-1"


def test_a_retried_send_never_sends_a_second_card(client, sandbox):
    open_id = sandbox.alice["open_id"]
    sandbox.add_fault("message_create", http_status=500)

    sent = client.send_card(open_id, cards.declined("sess-1"))

    calls = sandbox.calls("message_create")
    assert [call["status"] for call in calls] == [500, 200]
    assert calls[0]["params"]["uuid"] == calls[1]["params"]["uuid"]
    assert [m["message_id"] for m in sandbox.messages(open_id=open_id)] == [sent.message_id]


def test_a_send_whose_answer_was_lost_is_deduplicated(client, sandbox):
    open_id = sandbox.alice["open_id"]
    # The first attempt is processed after our timeout, so its answer is lost.
    sandbox.add_fault("message_create", latency_ms=int(TIMEOUT * 1000 * 2))

    sent = client.send_card(open_id, cards.declined("sess-1"), dedupe_key="sess-lost")

    _wait_until(lambda: all(c["status"] for c in sandbox.calls("message_create")))
    assert len(sandbox.calls("message_create")) == 2
    assert [m["message_id"] for m in sandbox.messages(open_id=open_id)] == [sent.message_id]
    again = client.send_card(open_id, cards.declined("sess-1"), dedupe_key="sess-lost")
    assert again == sent


def test_a_patch_of_an_unknown_message_fails_with_feishus_fields(client, sandbox):
    error = _failure(lambda: client.patch_card("om_unknown", cards.declined("sess-1")))

    assert error.permanent
    assert error.code
    assert error.http_status == 400
    assert error.api == "message_patch"
    assert f"code={error.code}" in str(error)
    assert TEST_APP["app_secret"] not in str(error)
    assert len(sandbox.calls("message_patch")) == 1


def test_errors_carry_feishus_log_id(client, sandbox):
    api_error = _failure(lambda: client.patch_card("om_unknown", cards.declined("sess-1")))
    code, _ = _approve(client, sandbox.alice["open_id"])
    token_error = _failure(lambda: client.exchange_code(code, pkce.new_verifier(), REDIRECT_URI))

    for error in (api_error, token_error):
        assert error.log_id
        assert f"log_id={error.log_id}" in str(error)


# --- One client per app: its own tokens, the rate limit, metrics --------------------------


def test_clients_of_the_same_app_on_different_hosts_keep_their_own_tenant_tokens(sandbox):
    with SandboxServer(config=TEST_CONFIG) as other_server:
        other = _client(other_server.url)
        other_control = SandboxControl(other_server.url)
        other_control.add_app(**TEST_APP)
        other_control.add_user(**{k: sandbox.bob[k] for k in ("open_id", "union_id", "name")})
        here = _client(sandbox.url)

        here.send_card(sandbox.bob["open_id"], cards.declined("sess-1"))
        other.send_card(sandbox.bob["open_id"], cards.declined("sess-1"))

        # A token from the first sandbox would have been refused there first (99991663).
        assert [c["code"] for c in other_control.calls("message_create")] == [0]
        assert len(other_control.calls("tenant_token")) == 1
        other_control.close()


def test_every_call_waits_for_the_apps_rate_limit(sandbox):
    limited = _client(sandbox.url, rate_limiter=RateLimiter(2, "", window=60, max_wait=0))
    limited.get_contact_user(sandbox.bob["open_id"])
    limited.get_contact_user(sandbox.bob["open_id"])

    error = _failure(lambda: limited.get_contact_user(sandbox.bob["open_id"]))

    assert error.retryable
    assert "rate limit" in str(error)
    assert len(sandbox.calls("contact_user")) == 2


def test_it_counts_requests_by_api_and_outcome(client, sandbox):
    def count(outcome: str) -> float:
        labels = {"api": "contact_user_get", "outcome": outcome}
        return REGISTRY.get_sample_value("larkauth_feishu_api_requests_total", labels) or 0.0

    before = {outcome: count(outcome) for outcome in ("success", "retryable_error")}
    sandbox.add_fault("contact_user", http_status=503)

    client.get_contact_user(sandbox.bob["open_id"])

    assert count("retryable_error") - before["retryable_error"] == 1
    assert count("success") - before["success"] == 1
    assert REGISTRY.get_sample_value(
        "larkauth_feishu_api_request_duration_seconds_count", {"api": "contact_user_get"}
    )
