"""Writes and side effects. Views, admin actions, tasks, commands and event handlers are thin
adapters over these functions."""

from sessions_app.services.applications import application_apply_env, application_ensure_default
from sessions_app.services.audit import token_audit_flush
from sessions_app.services.authorization import (
    AuthRequestResult,
    UserRef,
    auth_request,
    auth_request_again,
    auth_request_by_user,
    authorization_complete,
    authorization_reject,
    authorization_start,
    session_expire,
    sessions_expire_stale,
)
from sessions_app.services.cleanup import (
    auth_sessions_delete_old,
    cleanup_run,
    processed_events_delete_old,
)
from sessions_app.services.expiry import refresh_token_expiry_check
from sessions_app.services.maintenance import (
    sessions_expire_all_stale,
    tokens_refresh_expiring,
    users_sync_info,
)
from sessions_app.services.schedules import beat_schedules_ensure
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
    "application_apply_env",
    "application_ensure_default",
    "auth_request",
    "auth_request_again",
    "auth_request_by_user",
    "auth_sessions_delete_old",
    "authorization_complete",
    "authorization_reject",
    "authorization_revoke",
    "authorization_start",
    "beat_schedules_ensure",
    "cleanup_run",
    "get_active_token",
    "processed_events_delete_old",
    "refresh_token_expiry_check",
    "session_expire",
    "sessions_expire_all_stale",
    "sessions_expire_stale",
    "token_audit_flush",
    "token_issue",
    "token_refresh",
    "tokens_refresh_expiring",
    "users_sync_info",
]
