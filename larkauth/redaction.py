"""Keep tokens, secrets and authorization codes out of every log line.

`RedactionFilter` is attached to the root handler by `config.settings.LOGGING`; `install()`
also puts it on lark-oapi's own "Lark" logger, which has a handler of its own. The filter
rewrites the record in place (message with its args, `extra` fields, exception and stack
text), so every handler and formatter after it sees only redacted values.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

MARKER = "[REDACTED]"

# Secret key names, compared on the key's words joined by "_" (so `client_secret`,
# `LARK_APP_SECRET`, `AppSecret` and `X-Api-Key` all count).
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:secret|password|passwd|token|code|verifier|state|ticket|credentials?"
    r"|authorization|cookie|(?:encrypt|encryption|api|secret|private|signing|access)_?keys?)$"
)
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
# `code` and `state` also name harmless things: Feishu error codes (numbers), our error
# slugs (`authorization_required`), session states (`needs_reauth`). Those values are kept;
# real codes and states are long random strings. In a query string they are always masked.
_AMBIGUOUS_KEY = re.compile(r"(?:^|_)(?:code|state)$")
_HARMLESS_VALUE = re.compile(r"^(?:\d{1,12}|[a-z]{1,16}(?:_[a-z]{1,16}){0,3})$")
# What comes just before a query parameter: `?` or `&`, also URL-encoded (`%3F`, `%26`).
_QUERY_BEFORE = re.compile(r"(?:[?&]|%(?:25)*(?:3[Ff]|26))$")

# Where a key may start: not inside a word, but right after an escaped line break (`\n`
# in JSON strings and reprs) or a URL-encoded character (`%26` in `a%3D1%26code%3D…`).
_START = r"(?:(?<=\\[nrt])|(?<=%[0-9A-Fa-f]{2})|(?<![A-Za-z0-9_\\%]))"
_KEY_NAME = rf"(?P<key>{_START}[A-Za-z][A-Za-z0-9_-]{{0,63}})"
# The quote after a key may be escaped: `{\"app_secret\": \"…\"}` is JSON inside JSON.
_KEY = rf"{_KEY_NAME}(?P<sep>(?:\\*[\"'])?\s*[:=]\s*)"
# A value without quotes ends at a delimiter or at an escape sequence (`\n`, `\"`).
_BARE = r"(?:[^\s&\"',;}\])#<>\\]|\\(?![nrt\"'\\]))"
# Authorization headers keep their scheme: `Authorization: Bearer [REDACTED]`.
_AUTHORIZATION_HEADER = re.compile(
    rf"(?i)(?P<head>{_START}(?:proxy-)?authorization\\*[\"']?\s*[:=]\s*\\*[\"']?"
    r"(?:(?:bearer|basic|digest|api-key|token)\s+)?)(?P<value>[^\s\"',;\\]+)"
)
# key: "value" / 'key': 'value' / key="value" (JSON, Python reprs) / \"key\": \"value\"
# (JSON inside JSON: a body logged as a string).
_QUOTED_VALUE = re.compile(rf"{_KEY}(?P<q>\\*[\"'])(?P<value>(?:(?!(?P=q))(?:\\.|[^\\\n]))*)(?P=q)")
# key=value / key: value (query strings, form bodies, headers, prose).
_BARE_VALUE = re.compile(rf"{_KEY}(?P<value>{_BARE}+)")
# key%3Dvalue%26…: a form or query string that was URL-encoded (once or more).
_ENCODED_VALUE = re.compile(
    rf"{_KEY_NAME}(?P<sep>%(?:25)*3[Dd])(?P<value>(?:(?!%(?:25)*26){_BARE})+)"
)
_PROSE_VALUE = re.compile(
    r"(?i)(?P<head>\b(?:code|token|secret|verifier|state|password)\s+)"
    r"(?P<value>(?=[A-Za-z._~+/=-]*\d)(?=[\d._~+/=-]*[A-Za-z])[A-Za-z0-9._~+/=-]{16,})"
)
_AUTH_SCHEME = re.compile(r"(?i)(?P<head>\b(?:bearer|api-key)\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})")
_URL_PASSWORD = re.compile(r"(?P<head>://[^/\s:@]+:)(?P<value>[^/\s@]+)(?=@)")
_SHAPES = (
    # v2 user tokens and other JWTs.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]+){0,2}"), MARKER),
    # v1 user (u-), refresh (ur-), tenant (t-), app (a-) and card callback (c-) tokens.
    (
        re.compile(r"\b(?P<kind>ur|u|t|a|c)-(?=[A-Za-z0-9_.-]*\d)[A-Za-z0-9_.-]{16,}"),
        rf"\g<kind>-{MARKER}",
    ),
    # Fernet keys (32 bytes, urlsafe base64) and Fernet tokens (encrypted values).
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"), MARKER),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_-]{20,}={0,2}"), MARKER),
)


def redact(text: str) -> str:
    """`text` with every secret it contains replaced by `[REDACTED]`."""
    if not text:
        return text
    text = _AUTHORIZATION_HEADER.sub(rf"\g<head>{MARKER}", text)
    text = _QUOTED_VALUE.sub(_redact_key_value, text)
    text = _BARE_VALUE.sub(_redact_key_value, text)
    text = _ENCODED_VALUE.sub(_redact_key_value, text)
    text = _AUTH_SCHEME.sub(rf"\g<head>{MARKER}", text)
    text = _PROSE_VALUE.sub(rf"\g<head>{MARKER}", text)
    text = _URL_PASSWORD.sub(rf"\g<head>{MARKER}", text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, key: str | None = None) -> Any:
    """`value` without secrets: strings redacted, mappings and sequences walked, keys checked."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return MARKER if key is not None and _is_secret(key, value) else redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(redact_value(item, key) for item in value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return MARKER if key is not None and _is_secret(key, str(value)) else value
    text = str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text else value


@functools.lru_cache(maxsize=1024)
def _normalized_key(key: str) -> str:
    return "_".join(word.lower() for word in _KEY_WORDS.findall(key))


def _is_secret(key: str, value: str, in_query: bool = False) -> bool:
    normalized = _normalized_key(key)
    if not value or value == MARKER or not _SECRET_KEY.search(normalized):
        return False
    if _AMBIGUOUS_KEY.search(normalized) and not in_query:
        return not _HARMLESS_VALUE.match(value)
    return True


def _redact_key_value(match: re.Match[str]) -> str:
    key = match.group("key")
    if _normalized_key(key).endswith("authorization"):
        return match.group(0)  # done by _AUTHORIZATION_HEADER, which keeps the scheme
    start = match.start()
    in_query = bool(_QUERY_BEFORE.search(match.string[max(start - 9, 0) : start]))
    value, sep, quote = match.group("value"), match.group("sep"), match.groupdict().get("q") or ""
    if _is_secret(key, value, in_query):
        return f"{key}{sep}{quote}{MARKER}{quote}"
    if quote:  # a quoted value may hold more: `"argsrepr": "[{'app_secret': '…'}]"`
        return f"{key}{sep}{quote}{redact(value)}{quote}"
    return match.group(0)


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
        except Exception:  # a log call must never fail, nor leak what could not be cleaned
            record.msg, record.args = f"{MARKER} (log record could not be redacted)", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        record._larkauth_redacted = True
        return True


def _redact_record(record: logging.LogRecord) -> None:
    # Bytes are logged as text: their repr escapes line breaks and non-ASCII characters
    # (`b'...\\r\\ncode=...'`), which would hide where a key starts.
    record.msg = _as_text(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_as_text(arg) for arg in record.args)
    if isinstance(record.msg, Mapping):
        record.msg = redact_value(record.msg)
    else:
        record.msg = redact(record.getMessage())
        record.args = None
    if record.exc_info:
        # Formatters re-render `exc_info` themselves (python-json-logger ignores a cached
        # `exc_text`), so only the redacted text is kept.
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


def _as_text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


LARK_LOGGER = "Lark"


def install() -> None:
    """Put the filter on lark-oapi's "Lark" logger and on its handlers, if any (larkauth's
    lark-oapi seam removes them). Idempotent; does not load lark-oapi."""
    logger = logging.getLogger(LARK_LOGGER)
    for target in (logger, *logger.handlers):
        if not any(isinstance(f, RedactionFilter) for f in target.filters):
            target.addFilter(RedactionFilter())
