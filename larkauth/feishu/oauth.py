"""Feishu's OAuth v2 endpoints, which lark-oapi 1.7.5 has no typed request for.

The authorize page lives on the accounts host; the token endpoint answers flat JSON
(no `data` wrapper) with `code`, `error`, `error_description` on failure (docs/feishu.md §2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from larkauth.errors import FeishuError
from larkauth.feishu.results import UserToken

AUTHORIZE_PATH = "/open-apis/authen/v1/authorize"
TOKEN_PATH = "/open-apis/authen/v2/oauth/token"  # noqa: S105 - a path, not a secret
MAX_SCOPES = 50
LOG_ID_HEADER = "X-Tt-Logid"


def authorize_url(
    accounts_domain: str,
    client_id: str,
    *,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    scope: str | Iterable[str] = "",
) -> str:
    """The authorize page URL with PKCE (S256). `scope` must contain `offline_access` for
    a refresh token to be issued."""
    scopes = scope.split() if isinstance(scope, str) else list(scope)
    if len(scopes) > MAX_SCOPES:
        raise ValueError(f"Feishu accepts at most {MAX_SCOPES} scopes per authorization")
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if scopes:
        params["scope"] = " ".join(scopes)
    return f"{accounts_domain}{AUTHORIZE_PATH}?{urlencode(params, quote_via=quote)}"


def parse_token_response(
    api: str,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    issued_at: datetime,
    sensitive: Iterable[str] = (),
) -> UserToken:
    """The token endpoint's answer as a `UserToken`, or a `FeishuError` whose text holds
    none of the `sensitive` request values."""
    log_id = headers.get(LOG_ID_HEADER)
    try:
        data: Any = json.loads(content)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise FeishuError(
            "unreadable response from the token endpoint",
            api=api,
            http_status=status,
            log_id=log_id,
        )
    log_id = log_id or (str(data["log_id"]) if data.get("log_id") else None)
    code = data.get("code")
    code = code if isinstance(code, int) else None
    if status != 200 or code not in (0, None) or not data.get("access_token"):
        message = data.get("error_description") or data.get("error") or data.get("msg")
        raise FeishuError(
            str(message or f"token request failed with HTTP {status}"),
            api=api,
            code=code,
            http_status=status,
            log_id=log_id,
            sensitive=sensitive,
        )
    try:
        return UserToken(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
            expires_in=int(data["expires_in"]),
            refresh_token_expires_in=(
                int(data["refresh_token_expires_in"])
                if data.get("refresh_token_expires_in") is not None
                else None
            ),
            scope=str(data.get("scope") or ""),
            token_type=str(data.get("token_type") or "Bearer"),
            issued_at=issued_at,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FeishuError(
            f"malformed token response ({type(exc).__name__})",
            api=api,
            http_status=status,
            log_id=log_id,
        ) from None
