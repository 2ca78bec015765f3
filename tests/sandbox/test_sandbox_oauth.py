"""Consent page and token endpoints, driven with plain HTTP as larkauth drives them."""

from __future__ import annotations

import base64
import uuid
from urllib.parse import parse_qs, urlsplit

import requests

from tests.sandbox.helpers import (
    REDIRECT_URI,
    authorize_and_exchange,
    exchange_code,
    pkce_pair,
    refresh,
    token_request,
)

AUTHORIZE = "/open-apis/authen/v1/authorize"
USER_INFO = "/open-apis/authen/v1/user_info"


def user_info(sandbox, access_token: str) -> requests.Response:
    return requests.get(
        sandbox.url + USER_INFO, headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_consent_page_shows_the_app_the_scopes_and_the_users(sandbox):
    response = requests.get(
        sandbox.url + AUTHORIZE,
        params={
            "client_id": sandbox.app["app_id"],
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "offline_access contact:user.email:readonly",
            "state": "xyz",
        },
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    for text in ("cli_test_app", "contact:user.email:readonly", "Alice Zhang", "Bob Li"):
        assert text in page
    assert 'name="decision" value="approve"' in page
    assert 'value="deny"' in page


def test_consent_page_refuses_an_unknown_app(sandbox):
    response = requests.get(
        sandbox.url + AUTHORIZE,
        params={"client_id": "cli_nope", "response_type": "code", "redirect_uri": REDIRECT_URI},
        timeout=10,
    )

    assert response.status_code == 400
    assert "20048" in response.text


def test_consent_page_refuses_a_redirect_uri_outside_the_whitelist(sandbox):
    sandbox.add_app(**sandbox.app, redirect_uris=["https://larkauth.example.com/oauth/callback"])

    response = sandbox.consent(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])

    assert response.status_code == 400
    assert "20029" in response.text


def test_approve_redirects_with_a_code_and_the_state(sandbox):
    response = sandbox.consent(
        sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"], state="st-1"
    )

    query = redirect_query(response)
    assert query["state"] == "st-1"
    assert len(query["code"]) >= 43
    assert set(query["code"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_deny_redirects_with_access_denied_and_the_state(sandbox):
    response = sandbox.consent(
        sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"], decision="deny", state="s"
    )

    assert redirect_query(response) == {"error": "access_denied", "state": "s"}


def test_the_code_exchange_returns_v2_tokens_with_the_configured_lifetimes(sandbox):
    sandbox.set_config(access_token_ttl=3600, refresh_token_ttl=86400)

    body = authorize_and_exchange(sandbox, sandbox.alice["open_id"], scope="offline_access")

    assert body["code"] == 0
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("eyJ")
    assert body["refresh_token"].startswith("eyJ")
    assert body["access_token"] != body["refresh_token"]
    assert (body["expires_in"], body["refresh_token_expires_in"]) == (3600, 86400)
    assert body["scope"] == "offline_access"
    assert user_info(sandbox, body["access_token"]).json()["data"]["name"] == "Alice Zhang"


def test_no_refresh_token_without_offline_access(sandbox):
    body = authorize_and_exchange(
        sandbox, sandbox.alice["open_id"], scope="contact:user.email:readonly"
    )

    assert "refresh_token" not in body
    assert body["scope"] == "contact:user.email:readonly"


def test_a_code_works_only_once(sandbox):
    verifier, challenge = pkce_pair()
    code = sandbox.authorize_code(
        sandbox.app["app_id"],
        REDIRECT_URI,
        sandbox.alice["open_id"],
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert exchange_code(sandbox, code, verifier).status_code == 200

    again = exchange_code(sandbox, code, verifier)

    assert again.status_code == 400
    assert again.json()["code"] == 20065
    assert again.json()["error"] == "invalid_grant"


def test_an_unknown_code_fails(sandbox):
    response = exchange_code(sandbox, "no-such-code")

    assert (response.status_code, response.json()["code"]) == (400, 20003)


def test_an_expired_code_fails(sandbox):
    sandbox.set_config(code_ttl=0)
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])

    response = exchange_code(sandbox, code)

    assert (response.status_code, response.json()["code"]) == (400, 20004)


def test_a_code_expires_after_five_minutes_by_default(sandbox):
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])
    sandbox.advance_clock(301)

    assert exchange_code(sandbox, code).json()["code"] == 20004


def test_a_wrong_or_missing_pkce_verifier_fails(sandbox):
    _, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    code = sandbox.authorize_code(
        sandbox.app["app_id"],
        REDIRECT_URI,
        sandbox.alice["open_id"],
        code_challenge=challenge,
        code_challenge_method="S256",
    )

    assert exchange_code(sandbox, code, other_verifier).json()["code"] == 20049
    assert exchange_code(sandbox, code).json()["code"] == 20049


def test_plain_pkce_is_the_default_method(sandbox):
    verifier, _ = pkce_pair()
    code = sandbox.authorize_code(
        sandbox.app["app_id"],
        REDIRECT_URI,
        sandbox.alice["open_id"],
        code_challenge=verifier,
        code_challenge_method="",
    )

    assert exchange_code(sandbox, code, verifier).json()["code"] == 0


def test_the_redirect_uri_must_match_the_authorize_request(sandbox):
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])

    response = exchange_code(sandbox, code, redirect_uri="http://127.0.0.1:8000/other")

    assert (response.status_code, response.json()["code"]) == (400, 20071)


def test_client_credentials_errors(sandbox):
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.alice["open_id"])
    app_id, secret = sandbox.app["app_id"], sandbox.app["app_secret"]
    basic = "Basic " + base64.b64encode(f"{app_id}:{secret}".encode()).decode()

    both = token_request(
        sandbox.url,
        {
            "grant_type": "authorization_code",
            "client_id": app_id,
            "client_secret": secret,
            "code": code,
        },
        headers={"Authorization": basic},
    )
    wrong = exchange_code(sandbox, code, client_secret="wrong")
    missing = token_request(sandbox.url, {"grant_type": "authorization_code", "code": code})
    grant = token_request(
        sandbox.url, {"grant_type": "password", "client_id": app_id, "client_secret": secret}
    )

    assert both.json()["code"] == 20070
    assert wrong.json()["code"] == 20002
    assert missing.json()["code"] == 20001
    assert grant.json()["code"] == 20036
    # None of these used the code up.
    assert exchange_code(sandbox, code).json()["code"] == 0


def test_refresh_rotates_and_each_refresh_token_works_once(sandbox):
    first = authorize_and_exchange(sandbox, sandbox.alice["open_id"])

    second = refresh(sandbox, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    reused = refresh(sandbox, first["refresh_token"])
    third = refresh(sandbox, rotated["refresh_token"])

    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert (reused.status_code, reused.json()["code"]) == (400, 20073)
    assert third.status_code == 200
    assert third.json()["refresh_token"] not in (first["refresh_token"], rotated["refresh_token"])


def test_the_old_access_token_keeps_one_minute_after_rotation(sandbox):
    first = authorize_and_exchange(sandbox, sandbox.alice["open_id"])
    assert refresh(sandbox, first["refresh_token"]).status_code == 200

    assert user_info(sandbox, first["access_token"]).status_code == 200
    sandbox.advance_clock(61)
    expired = user_info(sandbox, first["access_token"])

    assert (expired.status_code, expired.json()["code"]) == (401, 99991677)


def test_revoke_makes_refresh_fail_with_20064_and_kills_access_tokens(sandbox):
    tokens = authorize_and_exchange(sandbox, sandbox.alice["open_id"])

    assert sandbox.revoke(sandbox.alice["open_id"]) == {"refresh_tokens": 1, "access_tokens": 1}

    refreshed = refresh(sandbox, tokens["refresh_token"])
    info = user_info(sandbox, tokens["access_token"])
    assert (refreshed.status_code, refreshed.json()["code"]) == (400, 20064)
    assert (info.status_code, info.json()["code"]) == (401, 99991668)


def test_an_expired_refresh_token_fails_with_20037(sandbox):
    sandbox.set_config(refresh_token_ttl=100)
    tokens = authorize_and_exchange(sandbox, sandbox.alice["open_id"])
    sandbox.advance_clock(101)

    assert refresh(sandbox, tokens["refresh_token"]).json()["code"] == 20037


def test_refresh_is_refused_when_the_app_may_not_refresh(sandbox):
    tokens = authorize_and_exchange(sandbox, sandbox.alice["open_id"])
    sandbox.add_app(**sandbox.app, allow_refresh=False)

    assert refresh(sandbox, tokens["refresh_token"]).json()["code"] == 20074


def test_tenant_token_is_reused_while_30_minutes_remain(sandbox):
    url = sandbox.url + "/open-apis/auth/v3/tenant_access_token/internal"
    creds = {"app_id": f"cli_{uuid.uuid4().hex[:12]}", "app_secret": "another-secret"}
    sandbox.add_app(**creds)

    first = requests.post(url, json=creds, timeout=10).json()
    second = requests.post(url, json=creds, timeout=10).json()
    sandbox.advance_clock(7200 - 1799)
    third = requests.post(url, json=creds, timeout=10).json()
    wrong = requests.post(url, json={**creds, "app_secret": "nope"}, timeout=10)

    assert first["code"] == 0
    assert first["tenant_access_token"].startswith("t-")
    assert first["expire"] == 7200
    assert second["tenant_access_token"] == first["tenant_access_token"]
    assert third["tenant_access_token"] != first["tenant_access_token"]
    assert third["expire"] == 7200
    assert wrong.json()["code"] == 10014


def test_v1_oidc_endpoints_issue_and_rotate_v1_tokens(sandbox):
    app_token = requests.post(
        sandbox.url + "/open-apis/auth/v3/app_access_token/internal",
        json={"app_id": sandbox.app["app_id"], "app_secret": sandbox.app["app_secret"]},
        timeout=10,
    ).json()["app_access_token"]
    headers = {"Authorization": f"Bearer {app_token}"}
    code = sandbox.authorize_code(sandbox.app["app_id"], REDIRECT_URI, sandbox.bob["open_id"])

    issued = requests.post(
        sandbox.url + "/open-apis/authen/v1/oidc/access_token",
        json={"grant_type": "authorization_code", "code": code},
        headers=headers,
        timeout=10,
    ).json()
    refreshed = requests.post(
        sandbox.url + "/open-apis/authen/v1/oidc/refresh_access_token",
        json={"grant_type": "refresh_token", "refresh_token": issued["data"]["refresh_token"]},
        headers=headers,
        timeout=10,
    ).json()

    assert issued["code"] == 0
    assert issued["data"]["access_token"].startswith("u-")
    assert issued["data"]["refresh_token"].startswith("ur-")
    assert issued["data"]["refresh_expires_in"] > 0
    assert refreshed["code"] == 0
    assert refreshed["data"]["refresh_token"] != issued["data"]["refresh_token"]
    assert user_info(sandbox, refreshed["data"]["access_token"]).json()["data"]["name"] == "Bob Li"
    # The v2 endpoint does not take v1 refresh tokens.
    assert refresh(sandbox, refreshed["data"]["refresh_token"]).json()["code"] == 20026
