"""Schema 2.0 events and their HTTP delivery: signature and encryption (docs/feishu.md §7).

What lark-oapi's `EventDispatcherHandler` checks, this module produces:
`X-Lark-Signature = sha256_hex(timestamp + nonce + encrypt_key + raw_body)` (sent when the
app has an encrypt key) and `{"encrypt": base64(iv + AES-256-CBC(sha256(key), PKCS#7))}`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from Crypto.Cipher import AES

from larkauth.sandbox import util
from larkauth.sandbox.state import App

CONNECT_TIMEOUT = 2.0


def complete_event(app: App, event: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The event with every missing schema 2.0 header field filled in from the app."""
    body = copy.deepcopy(dict(event))
    body.setdefault("schema", "2.0")
    header = body.setdefault("header", {})
    if not isinstance(header, dict) or not header.get("event_type"):
        raise ValueError("event.header.event_type is required")
    header.setdefault("event_id", util.new_event_id())
    header.setdefault("token", app.verification_token)
    # The card callback doc shows a 16-digit (microsecond) create_time, events use ms.
    scale = 1_000_000 if header["event_type"] == "card.action.trigger" else 1000
    header.setdefault("create_time", str(int(now * scale)))
    header.setdefault("tenant_key", util.TENANT_KEY)
    header.setdefault("app_id", app.app_id)
    return body


def encrypt(encrypt_key: str, plaintext: bytes) -> str:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = secrets.token_bytes(AES.block_size)
    pad = AES.block_size - len(plaintext) % AES.block_size
    cipher = AES.new(key, AES.MODE_CBC, iv)
    ciphertext = cipher.encrypt(plaintext + bytes([pad]) * pad)
    return base64.b64encode(iv + ciphertext).decode("ascii")


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


@dataclass
class Delivery:
    status: int | None
    body: Any
    error: str | None
    elapsed_ms: int
    event_id: str
    encrypted: bool

    def public(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": self.body,
            "error": self.error,
            "elapsed_ms": self.elapsed_ms,
            "event_id": self.event_id,
            "encrypted": self.encrypted,
        }


def build_request(
    app: App,
    event: dict[str, Any],
    *,
    encrypted: bool | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    signature: str | None = None,
) -> tuple[bytes, dict[str, str], bool]:
    """Body bytes and headers as Feishu would POST them; overrides are for negative tests."""
    if encrypted is None:
        encrypted = bool(app.encrypt_key)
    if encrypted and not app.encrypt_key:
        raise ValueError("the app has no encrypt_key to encrypt with")
    plaintext = json.dumps(event, ensure_ascii=False).encode()
    if encrypted:
        body = json.dumps({"encrypt": encrypt(app.encrypt_key, plaintext)}).encode()
    else:
        body = plaintext
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    nonce = nonce if nonce is not None else secrets.token_hex(8)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Feishu-Sandbox/1.0",
        "X-Request-Id": util.new_event_id(),
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
    }
    if signature is None and app.encrypt_key:
        signature = sign(timestamp, nonce, app.encrypt_key, body)
    if signature is not None:
        headers["X-Lark-Signature"] = signature
    return body, headers, encrypted


async def deliver(
    session: aiohttp.ClientSession,
    app: App,
    event: dict[str, Any],
    *,
    url: str | None = None,
    timeout_ms: int = 3000,
    encrypted: bool | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    signature: str | None = None,
) -> Delivery:
    """POST the event to the app's callback URL once (Feishu's retries are not simulated)."""
    target = url or app.event_callback_url
    event_id = str(event.get("header", {}).get("event_id", ""))
    body, headers, was_encrypted = build_request(
        app, event, encrypted=encrypted, timestamp=timestamp, nonce=nonce, signature=signature
    )
    if not target:
        return Delivery(None, None, "the app has no event_callback_url", 0, event_id, was_encrypted)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000, connect=CONNECT_TIMEOUT)
    try:
        async with session.post(target, data=body, headers=headers, timeout=timeout) as resp:
            raw = await resp.read()
            status = resp.status
    except TimeoutError:
        return Delivery(None, None, "timeout", _ms(started), event_id, was_encrypted)
    except (aiohttp.ClientError, OSError) as error:
        failure = f"connect failed: {error}"
        return Delivery(None, None, failure, _ms(started), event_id, was_encrypted)
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return Delivery(status, parsed, None, _ms(started), event_id, was_encrypted)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
