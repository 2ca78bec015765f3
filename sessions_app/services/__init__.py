"""Writes and side effects, one module per job. Views, admin actions, tasks, commands and
event handlers are thin adapters over these functions.

| module | job |
|---|---|
| `sessions` | open a session (card or link), *Request again*, expire pending ones |
| `oauth` | start the OAuth flow, the callback (code exchange), declining |
| `tokens` | hand out a token, refresh it single-flight, revoke |
| `refresh_sweep` | the beat job that keeps authorizations alive (keep-alive, warm) |
| `user_sync` | the beat job that syncs profiles from the directory |
| `expiry_warnings` | the beat job that warns admins and users before authorizations end |
| `cleanup` | the beat job that deletes old sessions and event ids |
| `audit` | `record_event`, and the buffered audit of tokens handed out |
| `delivery` | sending and updating the card after commit |
| `attention` | flagging a misconfigured application |
| `applications`, `schedules` | the default application and beat schedules |

When an authorization is due for a refresh, or really ends: `sessions_app.policy`.
"""

from sessions_app.services.applications import application_apply_env, application_ensure_default
from sessions_app.services.audit import token_audit_flush
from sessions_app.services.cleanup import (
    auth_sessions_delete_old,
    cleanup_run,
    processed_events_delete_old,
)
from sessions_app.services.expiry_warnings import refresh_token_expiry_check
from sessions_app.services.oauth import (
    authorization_complete,
    authorization_reject,
    authorization_start,
)
from sessions_app.services.refresh_sweep import tokens_refresh_expiring
from sessions_app.services.schedules import beat_schedules_ensure
from sessions_app.services.sessions import (
    AuthRequestResult,
    UserRef,
    auth_request,
    auth_request_again,
    auth_request_by_user,
    session_expire,
    sessions_expire_all_stale,
    sessions_expire_stale,
)
from sessions_app.services.tokens import (
    ActiveToken,
    authorization_revoke,
    get_active_token,
    token_issue,
    token_refresh,
)
from sessions_app.services.user_sync import users_sync_info

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
