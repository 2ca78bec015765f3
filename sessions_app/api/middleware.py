"""The API's edge: what Django answers before (or instead of) a DRF view is JSON too."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"

# For errors Django itself answers: no such URL, a path parameter of the wrong form
# (a session id that is not a UUID), a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a crash.
CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "internal_error",
}


class ApiEdgeMiddleware:
    """Under /api/:
    - a URL with a NUL character is refused with 400 `invalid_request` before any view:
      PostgreSQL cannot hold NUL in text, so a lookup by it would fail with a 500;
    - an error response that is not JSON becomes `{code, detail}` with the same status.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if has_nul(request):
            return error(400, "invalid_request", "The URL contains a NUL character.")
        response = self.get_response(request)
        if response.status_code >= 400 and not is_json(response):
            replaced = error(
                response.status_code,
                CODES.get(response.status_code, "error"),
                response.reason_phrase,
            )
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return response


def has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any(
        "\x00" in name or any("\x00" in value for value in values)
        for name, values in request.GET.lists()
    )


def is_json(response: HttpResponse) -> bool:
    return str(response.get("Content-Type", "")).startswith("application/json")


def error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)
