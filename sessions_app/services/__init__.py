"""Writes and side effects. Views, admin actions, tasks, commands and event handlers are thin
adapters over these functions."""

from sessions_app.services.applications import application_ensure_default
from sessions_app.services.authorization import (
    AuthRequestResult,
    UserRef,
    auth_request,
    authorization_complete,
    authorization_reject,
    authorization_start,
    card_send,
    session_expire,
    sessions_expire_stale,
)
from sessions_app.services.tokens import (
    ActiveToken,
    authorization_revoke,
    get_active_token,
    token_issue,
    token_refresh,
)

__all__ = [
    "ActiveToken",
    "AuthRequestResult",
    "UserRef",
    "application_ensure_default",
    "auth_request",
    "authorization_complete",
    "authorization_reject",
    "authorization_revoke",
    "authorization_start",
    "card_send",
    "get_active_token",
    "session_expire",
    "sessions_expire_stale",
    "token_issue",
    "token_refresh",
]
