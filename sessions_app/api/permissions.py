from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from sessions_app.models import Application, ServiceClient


class HasServiceKey:
    """`Authorization: Api-Key <key>` of a live ServiceClient; sets `request.service_client`."""

    key_parser = KeyParser()

    def has_permission(self, request: Request, view: Any) -> bool:
        key = self.key_parser.get(request)
        if not key:
            raise AuthenticationFailed("Send your key as 'Authorization: Api-Key <key>'.")
        try:
            client = ServiceClient.objects.get_from_key(key)
        except ServiceClient.DoesNotExist:
            raise AuthenticationFailed("This API key is not valid.") from None
        if client.has_expired:
            raise AuthenticationFailed("This API key has expired.")
        request.service_client = client  # type: ignore[attr-defined]
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True


def service_client(request: Request) -> ServiceClient:
    client: ServiceClient = request.service_client  # type: ignore[attr-defined]
    return client


def require_app_access(request: Request, app: Application) -> None:
    if not service_client(request).may_use(app):
        raise PermissionDenied(f"This API key may not use application {app.app_id}.")


def actor(request: Request) -> str:
    client = service_client(request)
    return f"key:{client.prefix}:{client.name}"
