"""Checks of an HTTP event/callback request before anything acts on it (docs/feishu.md §7).

Which application sent it:
- a plain body names it in `header.app_id`;
- an encrypted body (`{"encrypt": ...}`) does not, so the signature finds it: the app
  whose encrypt key makes `sha256(timestamp + nonce + encrypt_key + body)` match. That is
  one hash per active app with a key, cheaper than trying to decrypt with each;
- the one unsigned encrypted request Feishu sends is the URL check: the app whose key
  decrypts it and whose verification token it carries.

Then: the timestamp within ±5 minutes (signed requests), the verification token compared
in constant time, and the app ids agreeing. An app with neither an encrypt key nor a
verification token accepts nothing: its events could be forged by anyone.

The applications (with their decrypted keys) are cached per process for
`caching.CALLBACK_APPLICATIONS_SECONDS`, so most requests cost no query here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events_app.envelope import Event, MalformedEvent, json_object
from larkauth.caching import CALLBACK_APPLICATIONS_SECONDS, TTLCache
from larkauth.feishu.decrypt import decrypt
from sessions_app import selectors
from sessions_app.models import Application

MAX_CLOCK_SKEW_SECONDS = 300
SIGNATURE = "X-Lark-Signature"
TIMESTAMP = "X-Lark-Request-Timestamp"
NONCE = "X-Lark-Request-Nonce"
TIMESTAMP_FORMAT = re.compile(r"[0-9]{1,12}")


_apps_cache: TTLCache[str, list[Application]] = TTLCache(CALLBACK_APPLICATIONS_SECONDS)


class Rejected(Exception):
    """The request is refused with `status` and a JSON `{code, detail}`; nothing acted."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    app: Application
    event: Event | None = None  # None for the URL check
    challenge: str | None = None


def verify(body: bytes, headers: Mapping[str, str], now: float | None = None) -> Verified:
    outer = _parse(body)
    signature = headers.get(SIGNATURE, "")
    if "encrypt" in outer:
        if not signature:
            return _encrypted_url_check(outer)
        app = _app_by_signature(body, headers, signature)
        _check_timestamp(headers, now)
        envelope = _parse(_decrypt(app.encrypt_key, outer["encrypt"]))
    else:
        envelope = outer
        if envelope.get("type") == "url_verification":
            return _url_check(envelope, _active_apps(reload=True))
        app = _app_by_id(envelope)
        if app.encrypt_key:
            _check_signature(app, body, headers, signature)
            _check_timestamp(headers, now)
    if envelope.get("type") == "url_verification":
        return _url_check(envelope, [app])
    try:
        event = Event.parse(envelope)
    except MalformedEvent as exc:
        raise Rejected(400, "malformed_body", str(exc)) from exc
    _check_token(app, event.token)
    if event.app_id and event.app_id != app.app_id:
        raise Rejected(401, "app_mismatch", "The event is for another application.")
    return Verified(app=app, event=event)


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def _parse(raw: bytes | str) -> dict[str, Any]:
    try:
        return json_object(raw)
    except MalformedEvent as exc:
        raise Rejected(400, "malformed_body", str(exc)) from exc


def _active_apps(*, reload: bool = False) -> list[Application]:
    """The active applications, read from the database at most every
    CALLBACK_APPLICATIONS_SECONDS (or when asked: a request that matches no cached app
    reloads once). Saves in this process clear the cache; a change made in another process
    applies within that time."""
    return _apps_cache.get("active", selectors.applications_active_readable, reload=reload)


def forget_apps(**_: Any) -> None:
    """Signal receiver (see `events_app.apps`): an application was saved or deleted."""
    _apps_cache.clear()


def _app_by_id(envelope: Mapping[str, Any]) -> Application:
    header = envelope.get("header")
    app_id = header.get("app_id") if isinstance(header, dict) else None
    if not isinstance(app_id, str) or not app_id:
        raise Rejected(400, "malformed_body", "No header.app_id in a plain (unencrypted) body.")
    app = _find(_active_apps(), app_id) or _find(_active_apps(reload=True), app_id)
    if app is None:
        raise Rejected(404, "unknown_app", "No active application with that app_id.")
    if not app.encrypt_key and not app.verification_token:
        raise Rejected(
            403,
            "callback_not_configured",
            "The application has no encrypt key or verification token to check events with.",
        )
    return app


def _find(apps: list[Application], app_id: str) -> Application | None:
    return next((app for app in apps if app.app_id == app_id), None)


def _app_by_signature(body: bytes, headers: Mapping[str, str], signature: str) -> Application:
    for reload in (False, True):
        for app in _active_apps(reload=reload):
            if app.encrypt_key and _signature_matches(app, body, headers, signature):
                return app
    raise Rejected(401, "bad_signature", "The signature matches no application's encrypt key.")


def _check_signature(
    app: Application, body: bytes, headers: Mapping[str, str], signature: str
) -> None:
    if not signature:
        raise Rejected(401, "bad_signature", "The request is not signed.")
    if not _signature_matches(app, body, headers, signature):
        raise Rejected(401, "bad_signature", "The signature does not match.")


def _signature_matches(
    app: Application, body: bytes, headers: Mapping[str, str], signature: str
) -> bool:
    expected = sign(headers.get(TIMESTAMP, ""), headers.get(NONCE, ""), app.encrypt_key, body)
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    given = signature.strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode(), given)


def _check_timestamp(headers: Mapping[str, str], now: float | None) -> None:
    raw = headers.get(TIMESTAMP, "")
    # Unix seconds as ASCII digits; int() alone would take "１２３" or 4000 digits (whose
    # difference with a float overflows).
    if not TIMESTAMP_FORMAT.fullmatch(raw):
        raise Rejected(401, "stale_timestamp", "No valid request timestamp.")
    timestamp = int(raw)
    skew = abs((time.time() if now is None else now) - timestamp)
    if skew > MAX_CLOCK_SKEW_SECONDS:
        raise Rejected(401, "stale_timestamp", "The request timestamp is more than 5 minutes off.")


def _check_token(app: Application, token: str) -> None:
    expected = app.verification_token
    if expected and not hmac.compare_digest(expected.encode(), token.encode()):
        raise Rejected(401, "invalid_token", "The verification token does not match.")


def _decrypt(encrypt_key: str, encrypted: Any) -> str:
    if not isinstance(encrypted, str):
        raise Rejected(400, "malformed_body", "`encrypt` is not a string.")
    try:
        return decrypt(encrypt_key, base64.b64decode(encrypted)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Rejected(400, "malformed_body", "`encrypt` does not decrypt.") from exc


def _encrypted_url_check(outer: Mapping[str, Any]) -> Verified:
    """An unsigned encrypted body is only accepted as a URL check."""
    for app in _active_apps(reload=True):
        if not app.encrypt_key:
            continue
        try:
            envelope = _parse(_decrypt(app.encrypt_key, outer["encrypt"]))
        except Rejected:
            continue
        if envelope.get("type") == "url_verification":
            return _url_check(envelope, [app])
    raise Rejected(401, "bad_signature", "The request is not signed.")


def _url_check(envelope: Mapping[str, Any], apps: list[Application]) -> Verified:
    """`{"type": "url_verification", "challenge", "token"}` → echo the challenge."""
    challenge, token = envelope.get("challenge"), envelope.get("token")
    if not isinstance(challenge, str) or not isinstance(token, str):
        raise Rejected(400, "malformed_body", "A URL check needs a challenge and a token.")
    for app in apps:
        expected = app.verification_token
        if expected and hmac.compare_digest(expected.encode(), token.encode()):
            return Verified(app=app, challenge=challenge)
    raise Rejected(401, "invalid_token", "The verification token matches no application.")
