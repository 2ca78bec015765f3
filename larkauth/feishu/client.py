"""The Feishu/Lark client of one application.

lark-oapi does the app/tenant tokens (cached per client, see `token_cache`), messages,
user info and contacts; the v2 OAuth token endpoint is a plain HTTP call (`oauth`). Every
call waits for the app's outbound rate limit, is measured, and fails only with
`FeishuError`.

Retries: idempotent calls retry retryable errors with backoff; sending a message retries
only because its body carries a `uuid` Feishu dedupes on. The OAuth token endpoint is
never retried: codes and refresh tokens are single-use, so a lost answer must reach the
caller rather than burn the grant on a second try.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from larkauth import cards
from larkauth.backoff import Backoff
from larkauth.domains import Domains, resolve_domains
from larkauth.errors import APP_CREDENTIAL_CODES, FeishuError
from larkauth.feishu import metrics, oauth, sdk, token_cache, transport
from larkauth.feishu.results import ContactUser, SentMessage, UserInfo, UserToken
from larkauth.ratelimit import RateLimiter, RateLimitTimeout, default_limiter

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Feishu limits each API separately (docs/feishu.md §10: 50/s per API and app), so each gets its
# own budget of FEISHU_RATE_LIMIT_PER_SECOND. The two grants share one token endpoint.
_RATE_BUCKETS = {"oauth_code_exchange": "oauth_token", "oauth_refresh": "oauth_token"}
USER_AGENT = "larkauth"
# Idempotent calls: three tries, 0.5 s doubling to 5 s with full jitter between them.
RETRIES = Backoff(base=0.5, cap=5.0, attempts=3)
NO_RETRY = Backoff(base=0.0, cap=0.0, attempts=1)


class FeishuClient:
    def __init__(
        self,
        app_id: str,
        app_secret: str,
        *,
        domain: str = "feishu",
        accounts_domain: str = "",
        timeout: float = 10.0,
        rate_limiter: RateLimiter | None = None,
        retry: Backoff | None = None,
    ) -> None:
        """`domain`: "feishu", "lark" or a base URL (plain http only on loopback)."""
        self.app_id = app_id
        self.domains: Domains = resolve_domains(domain, accounts_domain)
        self.timeout = timeout
        self.retry = retry or RETRIES
        self._app_secret = app_secret
        self._rate_limiter = rate_limiter
        self._tokens = token_cache.TokenStore()
        # Kept-alive connections to the token endpoint (urllib3's pool is thread-safe).
        self._http = transport.session()
        self._lark = sdk.new_client(app_id, app_secret, domain=self.domains.api, timeout=timeout)

    def __repr__(self) -> str:
        return f"FeishuClient(app_id={self.app_id!r}, domain={self.domains.api!r})"

    # --- OAuth --------------------------------------------------------------------------

    def authorize_url(
        self,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        scope: str | Iterable[str] = "",
    ) -> str:
        return oauth.authorize_url(
            self.domains.accounts,
            self.app_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=code_challenge,
            scope=scope,
        )

    def exchange_code(
        self,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        *,
        now: datetime | None = None,
    ) -> UserToken:
        """Trade an authorization code (single use, 5 minutes) for the user's tokens."""
        body = {
            "grant_type": "authorization_code",
            "client_id": self.app_id,
            "client_secret": self._app_secret,
            "code": code,
            "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
        }
        return self._token_request("oauth_code_exchange", body, now)

    def refresh_user_token(
        self, refresh_token: str, *, scope: str = "", now: datetime | None = None
    ) -> UserToken:
        """Rotate: the old refresh token is dead from now on, keep the returned one."""
        body = {
            "grant_type": "refresh_token",
            "client_id": self.app_id,
            "client_secret": self._app_secret,
            "refresh_token": refresh_token,
        }
        if scope:
            body["scope"] = scope
        return self._token_request("oauth_refresh", body, now)

    # --- Users --------------------------------------------------------------------------

    def get_user_info(self, user_access_token: str) -> UserInfo:
        """The user a user access token belongs to."""
        request = sdk.GetUserInfoRequest.builder().build()
        response = self._lark_call(
            "user_info",
            lambda option: self._lark.user_info.get(request, option),
            user_access_token=user_access_token,
        )
        data = response.data
        return UserInfo(
            **_person(data), avatar_url=data.avatar_url or "", tenant_key=data.tenant_key or ""
        )

    def get_contact_user(
        self,
        user_id: str,
        *,
        user_id_type: str = "open_id",
        user_access_token: str | None = None,
    ) -> ContactUser:
        """A user from the directory, as the app (tenant token) or as a user."""
        request = sdk.GetUserRequest.builder().user_id(user_id).user_id_type(user_id_type).build()
        response = self._lark_call(
            "contact_user_get",
            lambda option: self._lark.user.get(request, option),
            user_access_token=user_access_token,
        )
        user = response.data.user
        avatar, status = user.avatar, user.status
        return ContactUser(
            **_person(user),
            avatar_url=(avatar.avatar_240 or avatar.avatar_origin or "") if avatar else "",
            is_resigned=bool(status and status.is_resigned),
            is_frozen=bool(status and status.is_frozen),
            is_activated=bool(status and status.is_activated),
        )

    # --- Messages -----------------------------------------------------------------------

    def send_card(
        self,
        receive_id: str,
        card: Mapping[str, Any],
        *,
        receive_id_type: str = "open_id",
        dedupe_key: str | None = None,
    ) -> SentMessage:
        """Send an interactive card as the app's bot.

        `dedupe_key` becomes the body's `uuid`, which Feishu dedupes on: pass a stable one
        (the auth session id) so a retry, here or after a crash, never sends a second card.
        Without it a random one still protects this call's own retries.
        """
        body = (
            sdk.CreateMessageRequestBody.builder()
            .receive_id(receive_id)
            .msg_type("interactive")
            .content(cards.card_content(card))
            .uuid(dedupe_key or uuid.uuid4().hex)
            .build()
        )
        request = (
            sdk.CreateMessageRequest.builder()
            .receive_id_type(receive_id_type)
            .request_body(body)
            .build()
        )
        response = self._lark_call(
            "message_create", lambda option: self._lark.message.create(request, option)
        )
        return SentMessage(message_id=response.data.message_id)

    def patch_card(self, message_id: str, card: Mapping[str, Any]) -> None:
        """Replace the card of a message this app sent (shared cards, within 14 days)."""
        body = sdk.PatchMessageRequestBody.builder().content(cards.card_content(card)).build()
        request = (
            sdk.PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
        )
        self._lark_call("message_patch", lambda option: self._lark.message.patch(request, option))

    # --- Plumbing -----------------------------------------------------------------------

    def _token_request(self, api: str, body: dict[str, str], now: datetime | None) -> UserToken:
        url = self.domains.api + oauth.TOKEN_PATH

        def post() -> UserToken:
            issued_at = now or datetime.now(UTC)
            try:
                response = self._http.post(
                    url, json=body, timeout=self.timeout, headers={"User-Agent": USER_AGENT}
                )
            except requests.RequestException as exc:
                raise self._transport_error(api, exc) from exc
            return oauth.parse_token_response(
                api,
                response.status_code,
                response.headers,
                response.content,
                issued_at,
                sensitive=body.values(),
            )

        return self._with_retries(api, post, NO_RETRY)

    def _lark_call(
        self,
        api: str,
        send: Callable[[sdk.RequestOption], Any],
        *,
        user_access_token: str | None = None,
    ) -> Any:
        def attempt() -> Any:
            option = sdk.RequestOption()
            if user_access_token:
                option.user_access_token = user_access_token
            try:
                with token_cache.using(self._tokens):
                    response = send(option)
            except requests.RequestException as exc:
                raise self._transport_error(api, exc) from exc
            except sdk.ObtainAccessTokenException as exc:
                # lark-oapi keeps only Feishu's code, not the HTTP status: anything but wrong
                # credentials may pass (a busy or failing token endpoint).
                raise FeishuError(
                    f"could not get the tenant access token: {exc.msg}",
                    api=api,
                    code=exc.code,
                    retryable=exc.code not in APP_CREDENTIAL_CODES,
                    sensitive=(self._app_secret,),
                ) from None
            except sdk.NoAuthorizationException as exc:
                raise FeishuError(f"not authorized: {exc.msg}", api=api, retryable=False) from None
            except (ValueError, sdk.UnmarshalException) as exc:
                raise FeishuError(
                    f"unreadable response ({type(exc).__name__})", api=api, retryable=True
                ) from None
            if not response.success():
                raise FeishuError(
                    response.msg or "Feishu returned an error",
                    api=api,
                    code=response.code,
                    log_id=response.get_log_id() or getattr(response.error, "log_id", None),
                    http_status=response.raw.status_code if response.raw else None,
                    sensitive=(user_access_token or "", self._app_secret),
                )
            return response

        return self._with_retries(api, attempt, self.retry, uses_app_token=not user_access_token)

    def _with_retries(
        self,
        api: str,
        attempt: Callable[[], T],
        policy: Backoff,
        *,
        uses_app_token: bool = False,
    ) -> T:
        number = 1
        renewed_app_token = False
        while True:
            try:
                return self._measured(api, attempt)
            except FeishuError as exc:
                if uses_app_token and exc.app_token_invalid and not renewed_app_token:
                    # Feishu rejected the cached tenant token (secret reset, token revoked):
                    # the request was refused before doing anything, so try once more.
                    self._tokens.clear()
                    renewed_app_token = True
                    continue
                if not exc.retryable or number >= policy.attempts:
                    raise
                delay = policy.delay(number)
                logger.warning(
                    "Feishu call failed, retrying in %.2fs (attempt %d of %d): %s",
                    delay,
                    number,
                    policy.attempts,
                    exc,
                )
                time.sleep(delay)
                number += 1

    def _measured(self, api: str, attempt: Callable[[], T]) -> T:
        limiter = self._rate_limiter or default_limiter()
        try:
            limiter.acquire(f"{self.app_id}:{_RATE_BUCKETS.get(api, api)}")
        except RateLimitTimeout as exc:
            raise FeishuError(str(exc), api=api, retryable=True) from None
        outcome = "permanent_error"
        started = time.monotonic()
        try:
            result = attempt()
            outcome = "success"
            return result
        except FeishuError as exc:
            outcome = "retryable_error" if exc.retryable else "permanent_error"
            raise
        finally:
            metrics.feishu_api_requests.labels(api=api, outcome=outcome).inc()
            metrics.feishu_api_request_duration.labels(api=api).observe(time.monotonic() - started)

    def _transport_error(self, api: str, exc: requests.RequestException) -> FeishuError:
        if isinstance(exc, requests.Timeout):
            message = f"no answer within {self.timeout:g}s ({type(exc).__name__})"
        else:
            message = f"connection failed ({type(exc).__name__})"
        return FeishuError(message, api=api, retryable=True)


def _person(data: Any) -> dict[str, str]:
    """The fields both user APIs name alike (a lark-oapi model; absent ones are None)."""
    return {
        "open_id": data.open_id or "",
        "union_id": data.union_id or "",
        "user_id": data.user_id or "",
        "name": data.name or "",
        "en_name": data.en_name or "",
        "email": data.email or data.enterprise_email or "",
        "mobile": data.mobile or "",
    }
