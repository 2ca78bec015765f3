"""Authorizations made at the sandbox without a browser, and rows shaped for each job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from sessions_app.feishu import client_for
from sessions_app.models import UserAuthSession
from tests.factories import make_authorization
from tests.flow.helpers import LarkEnv

REDIRECT_URI = "http://testserver/oauth/callback"


def authorize(lark: LarkEnv, user: dict[str, Any], **fields: Any) -> UserAuthSession:
    """The user approves at the sandbox; the tokens Feishu returned are stored as an
    authorization (what the OAuth callback stores), with `fields` on top."""
    code = lark.sandbox.authorize_code(
        lark.app.app_id, REDIRECT_URI, user["open_id"], scope="offline_access"
    )
    token = client_for(lark.app).exchange_code(code, code_verifier="", redirect_uri=REDIRECT_URI)
    values: dict[str, Any] = {
        "open_id": user["open_id"],
        "user_id": user.get("user_id", ""),
        "user_name": user["name"],
        "access_token": token.access_token,
        "refresh_token": token.refresh_token,
        "scope": token.scope,
        "token_expires_at": token.expires_at,
        "refresh_token_expires_at": token.refresh_token_expires_at,
        "completed_at": timezone.now(),
    }
    values.update(fields)
    return make_authorization(lark.app, **values)


def keepalive_due(authorization: UserAuthSession) -> None:
    """The refresh token is in its last day, the access token fresh: only keep-alive applies."""
    now = timezone.now()
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        completed_at=now - timedelta(days=6),
        last_refreshed_at=now - timedelta(days=6),
        refresh_token_expires_at=now + timedelta(days=1),
    )


def warm_due(authorization: UserAuthSession) -> None:
    """Used an hour ago and 90 % of the access token's two hours are gone."""
    now = timezone.now()
    UserAuthSession.objects.filter(pk=authorization.pk).update(
        last_used_at=now - timedelta(hours=1),
        last_refreshed_at=now - timedelta(seconds=6480),
        token_expires_at=now + timedelta(seconds=720),
    )


def refreshed_events(authorization: UserAuthSession) -> int:
    return authorization.events.filter(kind="refreshed").count()
