"""The API reads JSON bodies only, through the same bounded parser as the events endpoint."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]

from larkauth import jsonparse


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, with a nesting limit (`larkauth.jsonparse`): a hostile body is a
    400 `parse_error`, never a RecursionError."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            return jsonparse.loads(text)
        except ValueError as exc:  # InvalidJSON, or bytes that are not `encoding`
            raise ParseError(f"JSON parse error - {exc}") from None
