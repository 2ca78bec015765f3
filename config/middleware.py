"""A database outage is a 503 that says so, not a 500 with a traceback.

When PostgreSQL cannot be reached (connection refused or cut, connect timeout), the views
raise `OperationalError` / `InterfaceError`. Machines (the API, Feishu's event callbacks,
health checks) get JSON `{"code": "database_unavailable", "detail": ...}`; people on the
OAuth pages and the admin get a plain page. Nothing else is needed to recover: the broken
connection is closed at the end of the request (Django closes unusable connections) and the
next request connects again (`CONN_HEALTH_CHECKS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

BROWSER_PATHS = ("/oauth/", "/admin/")
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # The class name only: the message may name hosts and users.
        logger.warning(
            "Database unavailable (%s): %s %s answered 503",
            type(exception).__name__,
            request.method,
            request.path,
        )
        response: HttpResponse
        if request.path.startswith(BROWSER_PATHS):
            response = HttpResponse(render_to_string("503.html"), status=503)
        else:
            response = JsonResponse(
                {
                    "code": "database_unavailable",
                    "detail": "The database is unavailable; try again shortly.",
                },
                status=503,
            )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
