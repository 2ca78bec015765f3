"""Small helpers shared by the sandbox tests: PKCE, the token endpoint, cards."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import requests

REDIRECT_URI = "http://127.0.0.1:8000/oauth/callback"
TOKEN_PATH = "/open-apis/authen/v2/oauth/token"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_request(url: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(url + TOKEN_PATH, json=body, timeout=10, **kwargs)


def exchange_code(
    sandbox: Any, code: str, verifier: str | None = None, **extra: Any
) -> requests.Response:
    body = {
        "grant_type": "authorization_code",
        "client_id": sandbox.app["app_id"],
        "client_secret": sandbox.app["app_secret"],
        "code": code,
        "redirect_uri": REDIRECT_URI,
        **extra,
    }
    if verifier is not None:
        body["code_verifier"] = verifier
    return token_request(sandbox.url, body)


def refresh(sandbox: Any, refresh_token: str) -> requests.Response:
    body = {
        "grant_type": "refresh_token",
        "client_id": sandbox.app["app_id"],
        "client_secret": sandbox.app["app_secret"],
        "refresh_token": refresh_token,
    }
    return token_request(sandbox.url, body)


def authorize_and_exchange(
    sandbox: Any, open_id: str, scope: str = "offline_access"
) -> dict[str, Any]:
    """The whole browser flow with PKCE S256; returns the v2 token response body."""
    verifier, challenge = pkce_pair()
    code = sandbox.authorize_code(
        sandbox.app["app_id"],
        REDIRECT_URI,
        open_id,
        scope=scope,
        state="s1",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    response = exchange_code(sandbox, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def tenant_token(sandbox: Any) -> str:
    response = requests.post(
        sandbox.url + "/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": sandbox.app["app_id"], "app_secret": sandbox.app["app_secret"]},
        timeout=10,
    )
    token: str = response.json()["tenant_access_token"]
    return token


def card(title: str, *, shared: bool = True, button_value: Any = None) -> dict[str, Any]:
    """A JSON 2.0 card with a callback button (and a link button)."""
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": f"**{title}** body"}]
    if button_value is not None:
        elements.append(
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": "Authorize"},
                "type": "primary",
                "behaviors": [{"type": "callback", "value": button_value}],
            }
        )
        elements.append(
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": "Docs"},
                "behaviors": [{"type": "open_url", "default_url": "https://example.com/docs"}],
            }
        )
    body: dict[str, Any] = {
        "schema": "2.0",
        "header": {"title": {"tag": "plain_text", "content": title}, "template": "blue"},
        "body": {"elements": elements},
    }
    if shared:
        body["config"] = {"update_multi": True}
    return body


def send_card(sandbox: Any, open_id: str, content: dict[str, Any]) -> str:
    response = requests.post(
        sandbox.url + "/open-apis/im/v1/messages",
        params={"receive_id_type": "open_id"},
        headers={"Authorization": f"Bearer {tenant_token(sandbox)}"},
        json={"receive_id": open_id, "msg_type": "interactive", "content": json.dumps(content)},
        timeout=10,
    )
    assert response.json()["code"] == 0, response.text
    message_id: str = response.json()["data"]["message_id"]
    return message_id
