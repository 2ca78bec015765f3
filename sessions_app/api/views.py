"""REST API: thin adapters over `sessions_app.services`."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from larkauth.errors import AuthenticationRequiredError
from sessions_app import selectors, services
from sessions_app.api import serializers
from sessions_app.api.errors import error_response
from sessions_app.api.permissions import actor, caller, require_app_access
from sessions_app.api.schema import (
    APP_ID,
    AUTHORIZATION_PATH,
    BAD_BODY,
    RETRY_AFTER,
    errors,
    key_errors,
)
from sessions_app.models import Application, SessionState, UserAuthSession

WAIT_POLL_SECONDS = 0.25
# Each long-poll holds a web thread: past TOKEN_WAIT_SLOTS at once in this process, `wait`
# answers at once (404 with the session, as when a wait ends), so health checks and token
# reads always find a free thread.
_wait_slots = threading.BoundedSemaphore(settings.TOKEN_WAIT_SLOTS)


def _app_for(request: Request, app_id: str | None) -> Application:
    app = selectors.application_get(app_id)
    require_app_access(request, app)
    return app


class TokenView(APIView):
    @extend_schema(
        request=serializers.TokenRequestSerializer,
        responses={
            200: serializers.TokenSerializer,
            **errors(
                {
                    **key_errors(),
                    400: BAD_BODY,
                    403: ("forbidden",),
                    404: ("authorization_required", "unknown_app", "unknown_user"),
                    413: ("request_too_large",),
                    415: ("unsupported_media_type",),
                    422: ("user_unreachable",),
                    429: ("rate_limited",),
                    502: ("feishu_error",),
                    503: ("feishu_error", "token_refresh_failed"),
                }
            ),
        },
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        params = serializers.TokenRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        app = _app_for(request, data.get("app_id"))
        who = _user_ref(data)
        try:
            token = _issue(app, who, actor(request))
        except AuthenticationRequiredError:
            if not data["prompt"]:
                return _authorization_required(None)
            result = services.auth_request(app, who, prompted=True, actor=actor(request))
            if result.session is None or not data["wait"]:
                return _authorization_required(result.session)
            waited = _wait_for_authorization(app, result.session, who, data["wait"], actor(request))
            if waited is None:
                return _authorization_required(selectors.session_get(result.session.pk))
            token = waited
        response = Response(serializers.TokenSerializer(token).data)
        response["Cache-Control"] = "no-store"
        return response


def _user_ref(data: dict[str, Any]) -> services.UserRef:
    return services.UserRef(
        open_id=data.get("open_id", ""),
        user_id=data.get("user_id", ""),
        email=data.get("email", ""),
    )


def _issue(app: Application, who: services.UserRef, actor_name: str) -> services.ActiveToken:
    return services.token_issue(
        app, open_id=who.open_id, user_id=who.user_id, email=who.email, actor=actor_name
    )


def _authorization_required(session: UserAuthSession | None) -> Response:
    extra: dict[str, Any] = {}
    if session is not None:
        extra["auth_session"] = serializers.AuthSessionSerializer(session).data
    return error_response(
        "authorization_required",
        "The user has not authorized this application yet.",
        status.HTTP_404_NOT_FOUND,
        **extra,
    )


def _wait_for_authorization(
    app: Application,
    session: UserAuthSession,
    who: services.UserRef,
    wait_seconds: int,
    actor_name: str,
) -> services.ActiveToken | None:
    """Long-poll (bounded by `wait` ≤ 30 s) until the user finishes the card's flow."""
    if not _wait_slots.acquire(blocking=False):
        return None
    try:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            state = selectors.session_state(session.pk)
            if state == SessionState.COMPLETED:
                return _issue(app, who, actor_name)
            if state != SessionState.PENDING:
                return None
            time.sleep(WAIT_POLL_SECONDS)
        return None
    finally:
        _wait_slots.release()


class AuthSessionCreateView(APIView):
    @extend_schema(
        request=serializers.AuthSessionCreateSerializer,
        responses={
            201: serializers.AuthSessionSerializer,
            200: serializers.AuthorizationSerializer,
            **errors(
                {
                    **key_errors(),
                    400: BAD_BODY,
                    403: ("forbidden",),
                    404: ("unknown_app", "unknown_user"),
                    413: ("request_too_large",),
                    415: ("unsupported_media_type",),
                    422: ("user_unreachable",),
                    429: ("rate_limited",),
                    502: ("feishu_error",),
                    503: ("feishu_error",),
                }
            ),
        },
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        params = serializers.AuthSessionCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        app = _app_for(request, data.get("app_id"))
        result = services.auth_request(
            app, _user_ref(data), method=data["method"], force=data["force"], actor=actor(request)
        )
        if result.authorization is not None:
            return Response(
                serializers.AuthorizationSerializer(result.authorization).data,
                status=status.HTTP_200_OK,
            )
        assert result.session is not None
        return Response(
            serializers.AuthSessionSerializer(result.session).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class AuthSessionDetailView(APIView):
    @extend_schema(
        responses={
            200: serializers.AuthSessionSerializer,
            **errors({**key_errors(), 404: ("not_found",)}),
        }
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(session_id, app_pks=caller(request).app_pks)
        if session is None:
            raise Http404
        return Response(serializers.AuthSessionSerializer(session).data)


class AuthorizationListView(APIView):
    @extend_schema(
        parameters=[APP_ID],
        responses={
            200: serializers.AuthorizationSerializer(many=True),
            **errors({**key_errors(), 403: ("forbidden",), 404: ("unknown_app",)}),
        },
    )
    def get(self, request: Request) -> Response:
        app = _app_for(request, request.query_params.get("app_id"))
        rows = selectors.authorizations_list(app).select_related("app")
        return Response(serializers.AuthorizationSerializer(rows, many=True).data)


class AuthorizationDetailView(APIView):
    @extend_schema(
        parameters=AUTHORIZATION_PATH,
        responses={
            204: None,
            **errors({**key_errors(), 403: ("forbidden",), 404: ("unknown_app", "not_found")}),
        },
    )
    def delete(self, request: Request, app_id: str, open_id: str) -> Response:
        app = _app_for(request, app_id)
        if not services.authorization_revoke(app, open_id, actor=actor(request)):
            raise Http404
        return Response(status=status.HTTP_204_NO_CONTENT)
