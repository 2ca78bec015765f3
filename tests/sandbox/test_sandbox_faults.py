"""Injected faults as a plain HTTP client sees them, and the calls listing."""

from __future__ import annotations

import json
import time

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from larkauth.sandbox import SandboxControlError
from tests.sandbox.helpers import REDIRECT_URI, exchange_code, tenant_token

TENANT_TOKEN = "/open-apis/auth/v3/tenant_access_token/internal"


def test_an_injected_server_error_fails_the_next_call_only(sandbox):
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])
    sandbox.add_fault("oauth_token", code=20050, http_status=500)

    failed = exchange_code(sandbox, code)
    retried = exchange_code(sandbox, code)

    assert failed.status_code == 500
    assert failed.json()["code"] == 20050
    assert failed.json()["error"] == "server_error"
    assert retried.status_code == 200
    assert retried.json()["code"] == 0
    assert sandbox.faults() == []


def test_a_fault_can_repeat(sandbox):
    sandbox.add_fault("contact_user", code=99991400, times=2)
    url = sandbox.url + "/open-apis/contact/v3/users/" + sandbox.bob["open_id"]
    headers = {"Authorization": f"Bearer {tenant_token(sandbox)}"}

    codes = [requests.get(url, headers=headers, timeout=10).json()["code"] for _ in range(3)]

    assert codes == [99991400, 99991400, 0]


def test_injected_latency_delays_a_successful_answer(sandbox):
    sandbox.add_fault("tenant_token", latency_ms=300)
    started = time.monotonic()

    response = requests.post(
        sandbox.url + TENANT_TOKEN,
        json={"app_id": sandbox.app["app_id"], "app_secret": sandbox.app["app_secret"]},
        timeout=10,
    )

    assert time.monotonic() - started >= 0.3
    assert response.json()["code"] == 0


def test_a_dropped_connection_gets_no_answer(sandbox):
    sandbox.add_fault("user_info", drop_connection=True)

    with pytest.raises(requests.ConnectionError):
        requests.get(
            sandbox.url + "/open-apis/authen/v1/user_info",
            headers={"Authorization": "Bearer eyJx"},
            timeout=10,
        )
    assert sandbox.calls("user_info")[0]["status"] is None


def test_a_fault_on_the_long_connection_endpoint(sandbox):
    sandbox.add_fault("ws_endpoint", code=1)

    response = requests.post(
        sandbox.url + "/callback/ws/endpoint",
        json={"AppID": sandbox.app["app_id"], "AppSecret": sandbox.app["app_secret"]},
        timeout=10,
    )

    assert response.json()["code"] == 1


def test_unknown_fault_names_are_refused(sandbox):
    with pytest.raises(SandboxControlError, match="api must be one of"):
        sandbox.add_fault("nope", code=1)


def test_calls_list_what_was_asked_with_secrets_masked(sandbox):
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])
    tokens = exchange_code(sandbox, code).json()
    requests.get(
        sandbox.url + "/open-apis/authen/v1/user_info",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )

    calls = sandbox.calls()

    assert [c["api"] for c in calls] == ["authorize", "oauth_token", "user_info"]
    exchange = calls[1]
    assert exchange["params"]["client_id"] == sandbox.app["app_id"]
    assert exchange["params"]["redirect_uri"] == REDIRECT_URI
    assert (exchange["status"], exchange["code"]) == (200, 0)
    dump = json.dumps(calls)
    for secret in (sandbox.app["app_secret"], code, tokens["access_token"]):
        assert secret not in dump
    assert sandbox.calls("user_info")[0]["params"]["authorization"].startswith("Bearer eyJ")
    sandbox.clear_calls()
    assert sandbox.calls() == []


def test_a_fault_on_the_websocket_handshake_carries_feishus_handshake_headers(sandbox):
    url = requests.post(
        sandbox.url + "/callback/ws/endpoint",
        json={"AppID": sandbox.app["app_id"], "AppSecret": sandbox.app["app_secret"]},
        timeout=10,
    ).json()["data"]["URL"]
    sandbox.add_fault("ws_connect", code=1000040350)

    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)

    headers = refused.value.response.headers
    assert headers["handshake-status"] == "514"
    assert headers["handshake-autherrcode"] == "1000040350"
