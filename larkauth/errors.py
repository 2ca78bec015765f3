"""larkauth's errors. `FeishuError` says whether a failed Feishu call is worth retrying.

Codes are Feishu's (FACTS.md §2.2 for the OAuth token endpoint, §10 for the generic ones).
Domain errors for the Django side derive from `LarkauthError` too.
"""

from __future__ import annotations

from collections.abc import Iterable

from larkauth.redaction import MARKER, redact

# The refresh token is dead: only a new authorization by the user helps.
REFRESH_TOKEN_DEAD_CODES = frozenset({20037, 20064, 20073, 20026, 20024})
# The user access token used for the call is no longer accepted.
USER_TOKEN_INVALID_CODES = frozenset({99991668, 99991677})
# The authorization code cannot be exchanged: start the authorize redirect again.
CODE_DEAD_CODES = frozenset({20003, 20004, 20065, 20049, 20071})
# The app's own tenant/app access token was rejected: fetch a new one.
APP_TOKEN_INVALID_CODES = frozenset({99991663, 99991664})
# The app id or secret is wrong (tenant/app access token endpoints).
APP_CREDENTIAL_CODES = frozenset({10003, 10014})
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
    def needs_reauthorization(self) -> bool:
        """The user has to authorize again (refresh token dead, user token rejected)."""
        return self.code in REFRESH_TOKEN_DEAD_CODES or self.code in USER_TOKEN_INVALID_CODES

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
