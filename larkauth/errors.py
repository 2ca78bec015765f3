"""larkauth's errors. Every failed Feishu call is a `FeishuError` that knows its `failure`
class, so callers decide from the class, never from a code or a status.

Codes are Feishu's (docs/feishu.md §2.2 for the OAuth token endpoint, §5 for messages, §10 for the
generic buckets). Domain errors for the Django side derive from `LarkauthError` too.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from larkauth.redaction import MARKER, redact


class Failure(enum.StrEnum):
    """What a failed Feishu call means for larkauth (README "What happens when…")."""

    # The user's grant is gone: only a new authorization by the user helps.
    GRANT_DEAD = "grant_dead"
    # The application is misconfigured (secret reset, refresh switched off, app disabled,
    # a proxy answering instead of Feishu): authorizations are fine, an operator must act.
    APP_MISCONFIGURED = "app_misconfigured"
    # The user cannot use the application right now (availability narrowed, account
    # frozen): the grant may come back, so it is kept and retried with back-off.
    USER_UNAVAILABLE = "user_unavailable"
    # Feishu is busy, slow or failing: the same call may succeed later.
    TRANSIENT = "transient"
    # This one request is unusable (a spent authorization code, a bad card): not retried.
    REQUEST = "request"


# The refresh token is dead (20037 expired, 20064 revoked, 20073 already used, 20026 not
# v2-issued, 20024 another client's), or the user no longer exists (20008).
REFRESH_TOKEN_DEAD_CODES = frozenset({20037, 20064, 20073, 20026, 20024, 20008})
# A refresh token already rotated: right after an unanswered refresh, the answer was lost.
ROTATED_CODES = frozenset({20064, 20073})
# The user access token used for the call is no longer accepted.
USER_TOKEN_INVALID_CODES = frozenset({99991668, 99991677})
# The authorization code cannot be exchanged: start the authorize redirect again.
CODE_DEAD_CODES = frozenset({20003, 20004, 20065, 20049, 20071})
# The app's own tenant/app access token was rejected: fetch a new one.
APP_TOKEN_INVALID_CODES = frozenset({99991663, 99991664})
# The app id or secret is wrong (tenant/app access token endpoints).
APP_CREDENTIAL_CODES = frozenset({10003, 10014})
# The application, not the user: bad secret (20002), Basic + body auth (20070), refresh
# switched off (20074), not installed (20009), does not exist (20048), not enabled (20069),
# requests the endpoint cannot read (20001, 20036, 20063, 20067, 20068), and the permission
# bucket (the app lacks a scope).
APP_MISCONFIGURED_CODES = (
    frozenset({20002, 20070, 20074, 20009, 20048, 20069, 20001, 20036, 20063, 20067, 20068})
    | APP_CREDENTIAL_CODES
    | frozenset({99991401, 99991672, 99991680, 99991681})
)
# The user may not use the app now: no availability (20010, message API 230013), user
# status invalid (20066, e.g. frozen).
USER_UNAVAILABLE_CODES = frozenset({20010, 20066, 230013})
# Feishu asks to slow down or to come back later.
RATE_LIMIT_CODES = frozenset({99991400, 99991402, 11020, 11021})
TEMPORARY_CODES = frozenset({20050, 20072})


class LarkauthError(Exception):
    """Base class of every error larkauth raises on purpose."""


class FeishuError(LarkauthError):
    """A Feishu/Lark API call failed: Feishu's answer, a timeout or a broken connection.

    `retryable` is true when the same request may succeed later; everything else is
    `permanent`. The text never holds a token, secret or authorization code: `message` is
    redacted on the way in and no request data is kept.
    """

    def __init__(
        self,
        message: str,
        *,
        api: str,
        code: int | None = None,
        log_id: str | None = None,
        http_status: int | None = None,
        retryable: bool | None = None,
        sensitive: Iterable[str] = (),
    ) -> None:
        """`sensitive`: values of the request (code, tokens, secret) to cut from `message`
        in case Feishu's text repeats them."""
        for value in sensitive:
            if value:
                message = message.replace(value, MARKER)
        self.message = redact(message)
        self.api = api
        self.code = code
        self.log_id = log_id
        self.http_status = http_status
        self.retryable = _is_retryable(code, http_status) if retryable is None else retryable
        super().__init__(str(self))

    @property
    def permanent(self) -> bool:
        return not self.retryable

    @property
    def failure(self) -> Failure:
        return classify(self.code, self.http_status, retryable=self.retryable)

    @property
    def needs_reauthorization(self) -> bool:
        """The user has to authorize again (refresh token dead, user token rejected)."""
        return self.failure is Failure.GRANT_DEAD

    @property
    def code_dead(self) -> bool:
        """The authorization code is spent or unusable: restart the authorize redirect."""
        return self.code in CODE_DEAD_CODES

    @property
    def app_token_invalid(self) -> bool:
        return self.code in APP_TOKEN_INVALID_CODES

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("code", self.code),
                ("http_status", self.http_status),
                ("log_id", self.log_id),
            )
            if value is not None
        ]
        kind = "retryable" if self.retryable else "permanent"
        return f"{self.api}: {self.message} ({', '.join([*details, kind])})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild explicitly so the error survives pickling (Celery).
        return (
            _rebuild_feishu_error,
            (self.message, self.api, self.code, self.log_id, self.http_status, self.retryable),
        )


def _rebuild_feishu_error(
    message: str,
    api: str,
    code: int | None,
    log_id: str | None,
    http_status: int | None,
    retryable: bool,
) -> FeishuError:
    return FeishuError(
        message,
        api=api,
        code=code,
        log_id=log_id,
        http_status=http_status,
        retryable=retryable,
    )


def _is_retryable(code: int | None, http_status: int | None) -> bool:
    if code in RATE_LIMIT_CODES or code in TEMPORARY_CODES:
        return True
    if http_status is not None and (http_status == 429 or http_status >= 500):
        # A 5xx that names a definite error (a dead refresh token, a spent code) is final.
        return code is None or code not in _DEFINITE_CODES
    return False


_DEFINITE_CODES = REFRESH_TOKEN_DEAD_CODES | CODE_DEAD_CODES


def classify(code: int | None, http_status: int | None, *, retryable: bool) -> Failure:
    """The failure class of Feishu's answer (`code`, `http_status`) to one call."""
    if code in REFRESH_TOKEN_DEAD_CODES or code in USER_TOKEN_INVALID_CODES:
        return Failure.GRANT_DEAD
    if code in APP_MISCONFIGURED_CODES:
        return Failure.APP_MISCONFIGURED
    if code in USER_UNAVAILABLE_CODES:
        return Failure.USER_UNAVAILABLE
    if retryable:
        return Failure.TRANSIENT
    if code is None and http_status is not None and 400 <= http_status < 500:
        # Not Feishu's JSON: a proxy, a wrong domain or a blocked egress answered.
        return Failure.APP_MISCONFIGURED
    return Failure.REQUEST


# --- Authorization domain errors (raised by sessions_app, mapped to HTTP in its API) -------


class AuthError(LarkauthError):
    """Something about a user's authorization stops the request."""


class AuthenticationRequiredError(AuthError):
    """The user has no usable authorization: send them a card (`prompt`) and try later.

    Carries what is needed to send that card: the application and the user.
    """

    def __init__(
        self,
        *,
        app_id: str,
        open_id: str = "",
        user_id: str = "",
        email: str = "",
        reason: str = "not_authorized",
    ) -> None:
        self.app_id = app_id
        self.open_id = open_id
        self.user_id = user_id
        self.email = email
        self.reason = reason
        who = open_id or user_id or email
        super().__init__(f"User {who} must authorize application {app_id} ({reason})")


class TokenRefreshFailedError(AuthError):
    """Feishu could not refresh the token now and no valid token is left; retry later."""


class RateLimitedError(AuthError):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many authorization requests; retry after {retry_after} s")


class UnknownUserError(AuthError):
    def __init__(self, who: str) -> None:
        super().__init__(f"No Feishu user known as {who!r}")


class AuthFlowError(AuthError):
    """The OAuth flow stopped. `reason` names the page the person sees and the metric."""

    def __init__(self, reason: str, session: object | None = None) -> None:
        self.reason = reason
        self.session = session
        super().__init__(f"Authorization flow stopped: {reason}")
