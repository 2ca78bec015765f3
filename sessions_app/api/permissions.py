from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from sessions_app.models import Application, ServiceClient

# A verified key is remembered this long per process: hashing and two queries per request
# would dominate the token API's cost. A revoked key stops working within this time.
KEY_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Caller:
    prefix: str
    name: str
    app_pks: frozenset[int]
    expires: datetime | None

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}:{self.name}"


_verified: dict[str, tuple[float, Caller]] = {}
_lock = threading.Lock()


def _verify(key: str) -> Caller:
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = time.monotonic()
    with _lock:
        cached = _verified.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        client = ServiceClient.objects.get_from_key(key)
    except ServiceClient.DoesNotExist:
        raise AuthenticationFailed("This API key is not valid.") from None
    assert isinstance(client, ServiceClient)
    caller = Caller(
        prefix=client.prefix,
        name=client.name,
        app_pks=frozenset(client.applications.values_list("pk", flat=True)),
        expires=client.expiry_date,
    )
    with _lock:
        _verified[digest] = (now + KEY_CACHE_SECONDS, caller)
    return caller


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
