"""A database outage, or a stored secret that no configured key decrypts, is a 503 that
says so, not a 500 with a traceback.

When PostgreSQL cannot be reached (connection refused or cut, connect timeout), the views
raise `OperationalError` / `InterfaceError`. Machines (the API, Feishu's event callbacks,
health checks) get JSON `{"code": "database_unavailable", "detail": ...}`; people on the
OAuth pages and the admin get a plain page. Nothing else is needed to recover: the broken
connection is closed at the end of the request (Django closes unusable connections) and the
next request connects again (`CONN_HEALTH_CHECKS`).

A value written under a key that is no longer in `LARKAUTH_ENCRYPTION_KEYS` (an operator
dropped it too early, or a deployment has the wrong keys) raises `InvalidToken` when read:
`{"code": "undecryptable"}`, and nothing is changed, so putting the key back heals it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django_cryptography.utils.crypto import InvalidToken

logger = logging.getLogger(__name__)

BROWSER_PATHS = ("/oauth/", "/admin/")
RETRY_AFTER_SECONDS = 5


class UnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            code, detail = "database_unavailable", "The database is unavailable; try again shortly."
            reason = "larkauth cannot reach its database right now."
            # The class name only: the message may name hosts and users.
            logger.warning(
                "Database unavailable (%s): %s %s answered 503",
                type(exception).__name__,
                request.method,
                request.path,
            )
        elif isinstance(exception, InvalidToken):
            code = "undecryptable"
            reason = "larkauth cannot read its stored keys right now; its operators are told."
            detail = (
                "A stored secret cannot be decrypted with any key of LARKAUTH_ENCRYPTION_KEYS; "
                "an operator must restore the key it was written under."
            )
            logger.error(
                "%s %s answered 503: a stored value no key of LARKAUTH_ENCRYPTION_KEYS "
                "decrypts (restore the key it was written under)",
                request.method,
                request.path,
            )
        else:
            return None
        response: HttpResponse
        if request.path.startswith(BROWSER_PATHS):
            response = HttpResponse(render_to_string("503.html", {"reason": reason}), status=503)
        else:
            response = JsonResponse({"code": code, "detail": detail}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
