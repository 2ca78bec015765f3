"""JSON from outside (request bodies), parsed with a bound on nesting.

The standard parser recurses once per `[` or `{`: a body of 100,000 brackets raises
RecursionError, which no caller expects. Here the depth is measured first, without
recursion and in linear time, and a body nested deeper than MAX_DEPTH is refused like any
other malformed JSON. NaN and Infinity, which the standard parser allows, are refused too.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any, NoReturn

# Feishu's events and our API's bodies are a few levels deep; this leaves ample room.
MAX_DEPTH = 64

# A string, or an unterminated one to the end: a match never fails, so the scan is linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")


class InvalidJSON(ValueError):
    """The text is not JSON this service accepts; the message says why, for a 400."""


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise InvalidJSON("the body is not UTF-8 text") from None
    if nesting_exceeds(raw, max_depth):
        raise InvalidJSON(f"the JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise InvalidJSON(f"the body is not JSON ({exc})") from None


def nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether the parser could nest deeper than `max_depth` arrays/objects in `text`:
    the highest count of brackets open at once, brackets inside strings left out."""
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", text)).encode()
    if len(brackets) <= max_depth:
        return False
    steps = array("b", brackets.translate(_STEPS))  # +1 for [ and {, -1 for ] and }
    return max(accumulate(steps)) > max_depth


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
