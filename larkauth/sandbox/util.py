"""Identifiers, token strings and masking shared by the sandbox modules."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

# Parameter and header names whose values are secrets (compared lower-case).
SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "app_access_token",
        "app_secret",
        "appsecret",
        "authorization",
        "client_secret",
        "code",
        "code_verifier",
        "encrypt_key",
        "refresh_token",
        "tenant_access_token",
        "ticket",
        "access_key",
        "token",
        "verification_token",
        "x-lark-signature",
    }
)


def mask(value: object) -> str:
    """Enough of a secret to tell two apart in a log (a short hash), never enough to use it."""
    text = str(value)
    if text.lower().startswith("bearer "):
        return "Bearer " + mask(text[7:])
    prefix = text[:4] if len(text) >= 20 else ""
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{prefix}***#{digest}"


def mask_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: (mask(value) if key.lower() in SENSITIVE_KEYS and value else value)
        for key, value in params.items()
    }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_v2_token(kind: str) -> str:
    """A JWT-shaped opaque string like Feishu's v2 tokens (`eyJ...`, about 1 KB)."""
    header = _b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "sandbox"}).encode())
    claims = {"typ": kind, "jti": secrets.token_hex(16), "pad": secrets.token_urlsafe(480)}
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{secrets.token_urlsafe(64)}"


def new_v1_user_token() -> str:
    return "u-" + secrets.token_urlsafe(30)


def new_v1_refresh_token() -> str:
    return "ur-" + secrets.token_urlsafe(30)


def new_tenant_token() -> str:
    return "t-" + secrets.token_hex(20)


def new_app_token() -> str:
    return "a-" + secrets.token_hex(20)


def new_auth_code() -> str:
    # 64 characters from [A-Za-z0-9-_], the longest the docs tell clients to expect.
    return secrets.token_urlsafe(48)


def new_card_token() -> str:
    return "c-" + secrets.token_hex(20)


def new_open_id() -> str:
    return "ou_" + secrets.token_hex(16)


def new_union_id() -> str:
    return "on_" + secrets.token_hex(16)


def new_user_id() -> str:
    return secrets.token_hex(4)


def new_message_id() -> str:
    return "om_" + secrets.token_hex(16)


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_log_id() -> str:
    """Like Feishu's X-Tt-Logid: a timestamp and random hex."""
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def stable_hex(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def p2p_chat_id(app_id: str, open_id: str) -> str:
    return "oc_" + stable_hex("chat", app_id, open_id)


# The sandbox is one tenant; every app is installed in it.
TENANT_KEY = stable_hex("tenant", "larkauth-sandbox", length=16)
