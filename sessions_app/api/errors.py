"""Every API error is JSON `{"code": ..., "detail": ...}` with the right status, mapped here."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from larkauth.errors import (
    AuthenticationRequiredError,
    Failure,
    FeishuError,
    RateLimitedError,
    TokenRefreshFailedError,
    UnknownUserError,
)
from sessions_app.models import Application


def error_response(code: str, detail: Any, http_status: int, **extra: Any) -> Response:
    return Response({"code": code, "detail": detail, **extra}, status=http_status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        return error_response(
            "request_too_large",
            f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, AuthenticationRequiredError):
        return error_response(
            "authorization_required",
            "The user has not authorized this application (or must authorize again).",
            status.HTTP_404_NOT_FOUND,
            reason=exc.reason,
        )
    if isinstance(exc, RateLimitedError):
        response = error_response(
            "rate_limited",
            "Too many authorization requests for this user; try again later.",
            status.HTTP_429_TOO_MANY_REQUESTS,
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, UnknownUserError):
        return error_response(
            "unknown_user",
            "No Feishu user is known by that id or email; pass open_id or user_id.",
            status.HTTP_404_NOT_FOUND,
        )
    if isinstance(exc, Application.DoesNotExist):
        return error_response(
            "unknown_app", "No active application with that app_id.", status.HTTP_404_NOT_FOUND
        )
    if isinstance(exc, TokenRefreshFailedError):
        return error_response(
            "token_refresh_failed",
            "Feishu could not refresh the token right now; try again shortly.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, FeishuError) and exc.failure is Failure.USER_UNAVAILABLE:
        # Neither larkauth nor Feishu is failing; retrying will not help until an admin
        # changes the app's availability or the user's status.
        return error_response(
            "user_unreachable",
            f"Feishu says the application cannot reach this user (code {exc.code}): the user"
            " is outside the app's availability, unknown or deactivated.",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, FeishuError):
        return error_response(
            "feishu_error",
            f"Feishu answered with an error (code {exc.code}, log_id {exc.log_id}).",
            status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable else status.HTTP_502_BAD_GATEWAY,
        )
    if isinstance(exc, Http404 | exceptions.NotFound):
        return error_response("not_found", "Not found.", status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.ValidationError):
        return error_response(
            "invalid_request",
            "The request is not valid.",
            status.HTTP_400_BAD_REQUEST,
            errors=exc.detail,
        )
    if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
        response = error_response("invalid_api_key", exc.detail, status.HTTP_401_UNAUTHORIZED)
        response["WWW-Authenticate"] = "Api-Key"
        return response
    if isinstance(exc, exceptions.PermissionDenied):
        return error_response("forbidden", exc.detail, status.HTTP_403_FORBIDDEN)
    fallback = drf_exception_handler(exc, context)
    if fallback is not None:
        code = getattr(exc, "default_code", "error")
        fallback.data = {"code": code, "detail": fallback.data.get("detail", fallback.data)}
    return fallback
