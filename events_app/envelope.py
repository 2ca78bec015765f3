"""A schema 2.0 event or callback, as both channels deliver it (docs/feishu.md §6.1, §7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from larkauth import jsonparse

# ProcessedEvent.event_id's column size.
MAX_EVENT_ID_LENGTH = 128


class MalformedEvent(ValueError):
    """Not a schema 2.0 event this service can read."""


def json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        data = jsonparse.loads(raw)
    except jsonparse.InvalidJSON as exc:
        raise MalformedEvent(str(exc)) from exc
    if not isinstance(data, dict):
        raise MalformedEvent("the body is not a JSON object")
    return data


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    app_id: str
    token: str
    body: Mapping[str, Any]  # the envelope's "event" object

    @classmethod
    def parse(cls, envelope: Mapping[str, Any]) -> Event:
        header = envelope.get("header")
        if not isinstance(header, dict):
            raise MalformedEvent("no schema 2.0 header")
        event_id, event_type = header.get("event_id"), header.get("event_type")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
            raise MalformedEvent("header.event_id is missing or too long")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEvent("header.event_type is missing")
        body = envelope.get("event")
        return cls(
            event_id=event_id,
            event_type=event_type,
            app_id=str(header.get("app_id") or ""),
            token=str(header.get("token") or ""),
            body=body if isinstance(body, dict) else {},
        )
