"""Keep tokens, secrets and authorization codes out of every log line.

`RedactionFilter` is attached to the root handler by `config.settings.LOGGING`; `install()`
also puts it on lark-oapi's own "Lark" logger, which has a handler of its own. The filter
rewrites the record in place (message with its args, `extra` fields, exception and stack
text), so every handler and formatter after it sees only redacted values.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

MARKER = "[REDACTED]"

# Key names whose values are secret, in any spelling: snake_case, kebab-case, camelCase,
# PascalCase, UPPER_CASE, with any prefix (`client_secret`, `LARK_APP_SECRET`, `AppSecret`).
_KEY_SUFFIXES = (
    r"secret|password|passwd|token|code|verifier|state|ticket|credentials?|authorization"
    r"|cookie|(?:encrypt|encryption|api|secret|private|signing)[_-]?keys?|apikey"
)
_KEY = rf"\b(?:[A-Za-z0-9]+[_-]|[A-Za-z0-9]*[a-z0-9](?=[A-Z]))*(?i:{_KEY_SUFFIXES})"
_KEY_PATTERN = re.compile(rf"^{_KEY}$")
# `code` and `state` also name harmless things: Feishu error codes (numbers), our error
# slugs (`authorization_required`) and session states (`needs_reauth`). Those are kept.
_AMBIGUOUS_KEY = re.compile(r"(?i:code|state)$")
_HARMLESS_VALUE = re.compile(r"^(?:\d{1,12}|[a-z]+(?:_[a-z]+)*)$")
_HARMLESS_MAX_LEN = 24

# key: "value" / 'key': 'value' / key="value" (JSON, Python reprs, headers).
_QUOTED_VALUE = re.compile(
    rf"""(?P<key>{_KEY})(?P<sep>["']?\s*[:=]\s*)(?P<q>["'])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)"""
)
# key=value / key: value unquoted (query strings, form bodies, "key: value" text).
_BARE_VALUE = re.compile(rf"""(?P<key>{_KEY})(?P<sep>\s*[:=]\s*)(?P<value>[^\s&"',;}}\]\)#<>]+)""")
_AUTH_SCHEME = re.compile(
    r"(?i)\b(?P<scheme>bearer|api-key|basic|token)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})"
)
_URL_PASSWORD = re.compile(r"(?P<head>://[^/\s:@]+:)(?P<value>[^/\s@]+)(?=@)")
_SHAPES = (
    # v2 user tokens and other JWTs.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]+){0,2}"), MARKER),
    # v1 user (u-), refresh (ur-), tenant (t-), app (a-) and card callback (c-) tokens.
    (
        re.compile(r"\b(?P<kind>ur|u|t|a|c)-(?=[A-Za-z0-9_.-]*\d)[A-Za-z0-9_.-]{16,}"),
        rf"\g<kind>-{MARKER}",
    ),
    # Fernet keys (32 bytes, urlsafe base64) and Fernet tokens.
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"), MARKER),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_-]{20,}={0,2}"), MARKER),
)


def redact(text: str) -> str:
    """`text` with every secret it contains replaced by `[REDACTED]`."""
    if not text:
        return text
    text = _QUOTED_VALUE.sub(_redact_key_value, text)
    text = _BARE_VALUE.sub(_redact_key_value, text)
    text = _AUTH_SCHEME.sub(rf"\g<scheme>\g<sep>{MARKER}", text)
    text = _URL_PASSWORD.sub(rf"\g<head>{MARKER}", text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, key: str | None = None) -> Any:
    """`value` with secrets removed; mappings and sequences are walked, keys checked."""
    if isinstance(value, str):
        return MARKER if key and _secret_by_key(key, value) else redact(value)
    if isinstance(value, bytes):
        return redact_value(value.decode("utf-8", "replace"), key)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(redact_value(item, key) for item in value)
    if value is None or isinstance(value, bool | int | float):
        if key and isinstance(value, int | float) and not isinstance(value, bool):
            return MARKER if _secret_by_key(key, str(value)) else value
        return value
    text = str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text else value


def _secret_by_key(key: str, value: str) -> bool:
    if not value or not _KEY_PATTERN.match(key):
        return False
    if _AMBIGUOUS_KEY.search(key):
        return not (len(value) <= _HARMLESS_MAX_LEN and _HARMLESS_VALUE.match(value))
    return True


def _redact_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == MARKER or not _secret_by_key(match.group("key"), value):
        return match.group(0)
    quote = match.groupdict().get("q") or ""
    return f"{match.group('key')}{match.group('sep')}{quote}{MARKER}{quote}"


_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class RedactionFilter(logging.Filter):
    """Redacts the record in place and lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_larkauth_redacted", False):
            return True
        try:
            _redact_record(record)
        except Exception:  # noqa: BLE001 - a log line must never crash the caller
            record.msg, record.args = f"{MARKER} (log record could not be redacted)", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        record._larkauth_redacted = True
        return True


def _redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.msg, Mapping):
        record.msg = redact_value(record.msg)
    else:
        record.msg = redact(record.getMessage())
        record.args = None
    if record.exc_info:
        # Formatters re-render `exc_info` themselves (python-json-logger ignores a cached
        # `exc_text`), so keep only the redacted text.
        if not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
            setattr(record, name, redact_value(value, name))


LARK_LOGGER = "Lark"


def install() -> None:
    """Put the filter on lark-oapi's "Lark" logger and its own handlers. Idempotent."""
    import lark_oapi.core.log  # noqa: F401 - creates the "Lark" logger and its handler

    logger = logging.getLogger(LARK_LOGGER)
    for target in (logger, *logger.handlers):
        if not any(isinstance(f, RedactionFilter) for f in target.filters):
            target.addFilter(RedactionFilter())
