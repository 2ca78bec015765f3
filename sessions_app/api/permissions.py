from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from larkauth.caching import API_KEY_SECONDS, TTLCache
from sessions_app.models import Application, ServiceClient


@dataclass(frozen=True)
class Caller:
    prefix: str
    name: str
    app_pks: frozenset[int]
    expires: datetime | None

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}:{self.name}"


# A verified key is remembered per process (larkauth/caching.py): hashing and two queries
# per request would dominate the token API's cost.
_verified: TTLCache[str, Caller] = TTLCache(API_KEY_SECONDS)


def _verify(key: str) -> Caller:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return _verified.get(digest, lambda: _load(key))


def _load(key: str) -> Caller:
    try:
        client = ServiceClient.objects.get_from_key(key)
    except ServiceClient.DoesNotExist:
        raise AuthenticationFailed("This API key is not valid.") from None
    assert isinstance(client, ServiceClient)
    return Caller(
        prefix=client.prefix,
        name=client.name,
        app_pks=frozenset(client.applications.values_list("pk", flat=True)),
        expires=client.expiry_date,
    )


class HasServiceKey:
    """`Authorization: Api-Key <key>` of a live ServiceClient; sets `request.caller`."""

    key_parser = KeyParser()

    def has_permission(self, request: Request, view: Any) -> bool:
        key = self.key_parser.get(request)
        if not key:
            raise AuthenticationFailed("Send your key as 'Authorization: Api-Key <key>'.")
        if "\x00" in key:  # no key has one, and PostgreSQL cannot look one up
            raise AuthenticationFailed("This API key is not valid.")
        caller = _verify(key)
        if caller.expires is not None and caller.expires < timezone.now():
            raise AuthenticationFailed("This API key has expired.")
        request.caller = caller  # type: ignore[attr-defined]
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True


def caller(request: Request) -> Caller:
    found: Caller = request.caller  # type: ignore[attr-defined]
    return found


def require_app_access(request: Request, app: Application) -> None:
    if app.pk not in caller(request).app_pks:
        raise PermissionDenied(f"This API key may not use application {app.app_id}.")


def actor(request: Request) -> str:
    return caller(request).actor
