"""App credentials, the consent page and the user token endpoints (docs/feishu.md §1-§3)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from larkauth.sandbox import pages, util
from larkauth.sandbox.common import (
    AuthError,
    authenticate,
    begin,
    envelope,
    envelope_error,
    flat_error,
    json_response,
    oauth_error,
    read_json,
    runtime,
)
from larkauth.sandbox.state import App, AppToken, AuthCode, RefreshToken, SandboxState, UserToken

# A tenant/app token with at least this much life left is handed out again (docs/feishu.md §3).
TOKEN_REUSE_MIN_REMAINING = 30 * 60
# The old user access token stays valid this long after its refresh token is rotated.
ROTATION_GRACE = 60
# Users must re-authorize this long after authorizing, whatever the refresh token says.
AUTHORIZATION_HARD_CAP = 365 * 24 * 3600
MAX_SCOPES = 50
OFFLINE_ACCESS = "offline_access"
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class OAuthFailure(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


# --- app credentials --------------------------------------------------------------------


def check_app_credentials(state: SandboxState, app_id: Any, app_secret: Any) -> App:
    if not isinstance(app_id, str) or not isinstance(app_secret, str) or not app_id:
        raise OAuthFailure(10003, "invalid param")
    with state.lock:
        app = state.apps.get(app_id)
    if app is None:
        raise OAuthFailure(10003, "invalid param: app_id not found")
    if not app_secret or app.app_secret != app_secret:
        raise OAuthFailure(10014, "app secret invalid")
    return app


def issue_app_token(state: SandboxState, app: App, kind: str) -> AppToken:
    """The app's newest token while it has 30 min left, otherwise a new one (old stays valid)."""
    with state.lock:
        now = state.now()
        current = max(
            (t for t in state.app_tokens.values() if t.app_id == app.app_id and t.kind == kind),
            key=lambda t: t.expires_at,
            default=None,
        )
        if current is not None and current.expires_at - now >= TOKEN_REUSE_MIN_REMAINING:
            return current
        token_str = util.new_tenant_token() if kind == "tenant" else util.new_app_token()
        token = AppToken(token_str, kind, app.app_id, now + state.config.tenant_token_ttl)
        state.app_tokens[token_str] = token
        return token


async def tenant_access_token(request: web.Request) -> web.Response:
    return await _app_credentials(request, "tenant")


async def app_access_token(request: web.Request) -> web.Response:
    return await _app_credentials(request, "app")


async def _app_credentials(request: web.Request, kind: str) -> web.Response:
    body = await read_json(request) or {}
    params = {"app_id": body.get("app_id"), "app_secret": body.get("app_secret")}
    if fault := await begin(request, f"{kind}_token", params):
        return fault
    state = runtime(request).state
    try:
        app = check_app_credentials(state, body.get("app_id"), body.get("app_secret"))
    except OAuthFailure as failure:
        return flat_error(failure.code, failure.description)
    token = issue_app_token(state, app, kind)
    expire = max(0, math.ceil(token.expires_at - state.now()))
    if kind == "tenant":
        return json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token.token, "expire": expire}
        )
    tenant = issue_app_token(state, app, "tenant")
    return json_response(
        {
            "code": 0,
            "msg": "ok",
            "app_access_token": token.token,
            "expire": expire,
            "tenant_access_token": tenant.token,
        }
    )


# --- authorize page ---------------------------------------------------------------------


@dataclass
class AuthorizeRequest:
    app: App
    redirect_uri: str
    scopes: list[str]
    state: str
    code_challenge: str
    code_challenge_method: str

    def hidden_fields(self) -> dict[str, str]:
        fields = {
            "client_id": self.app.app_id,
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": self.state,
        }
        if self.code_challenge:
            fields["code_challenge"] = self.code_challenge
            fields["code_challenge_method"] = self.code_challenge_method
        return fields


def parse_scopes(raw: str) -> list[str]:
    return [s for s in raw.split(" ") if s]


def validate_authorize(state: SandboxState, params: Mapping[str, str]) -> AuthorizeRequest:
    """The checks Feishu makes before it shows its consent page; failures show an error page."""
    client_id = params.get("client_id") or params.get("app_id") or ""
    if not client_id:
        raise OAuthFailure(20001, "client_id is required")
    with state.lock:
        app = state.apps.get(client_id)
    if app is None:
        raise OAuthFailure(20048, f"app {client_id} does not exist")
    if params.get("response_type", "code") != "code":
        raise OAuthFailure(20001, "response_type must be code")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
        raise OAuthFailure(20001, "redirect_uri is required and must be an http(s) URL")
    if app.redirect_uris and redirect_uri not in app.redirect_uris:
        raise OAuthFailure(20029, "redirect_uri is not in the app's redirect URL list")
    scopes = parse_scopes(params.get("scope", ""))
    if len(scopes) > MAX_SCOPES:
        raise OAuthFailure(20001, f"at most {MAX_SCOPES} scopes per request")
    if app.scopes is not None:
        missing = [s for s in scopes if s not in app.scopes]
        if missing:
            raise OAuthFailure(20027, "scopes not enabled for the app: " + " ".join(missing))
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "") or "plain"
    if challenge and method not in ("S256", "plain"):
        raise OAuthFailure(20001, "code_challenge_method must be S256 or plain")
    return AuthorizeRequest(app, redirect_uri, scopes, params.get("state", ""), challenge, method)


def add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def approve(state: SandboxState, req: AuthorizeRequest, open_id: str) -> AuthCode:
    with state.lock:
        user = state.users.get(open_id)
        if user is None:
            raise OAuthFailure(20008, "the user does not exist")
        key = (req.app.app_id, open_id)
        granted = [s for s in state.grants.get(key, []) if s != OFFLINE_ACCESS]
        # Grants accumulate, but a refresh token needs offline_access in *this* request.
        scopes = granted + [s for s in req.scopes if s not in granted]
        state.grants[key] = [s for s in scopes if s != OFFLINE_ACCESS]
        code = AuthCode(
            code=util.new_auth_code(),
            app_id=req.app.app_id,
            open_id=open_id,
            redirect_uri=req.redirect_uri,
            scopes=scopes,
            code_challenge=req.code_challenge,
            code_challenge_method=req.code_challenge_method,
            expires_at=state.now() + state.config.code_ttl,
        )
        state.codes[code.code] = code
        return code


async def authorize(request: web.Request) -> web.StreamResponse:
    """GET shows the consent page; POST (the page's form, or a test) decides.

    POST fields: the authorize parameters (query string or form) plus `open_id` and
    `decision=approve|deny`; the answer is Feishu's 302 back to `redirect_uri`.
    """
    params: dict[str, str] = dict(request.query)
    if request.method == "POST":
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    logged = {
        k: params.get(k)
        for k in ("client_id", "redirect_uri", "scope", "code_challenge_method", "open_id")
    }
    logged["decision"] = params.get("decision")
    if fault := await begin(request, "authorize", logged):
        return fault
    state = runtime(request).state
    try:
        req = validate_authorize(state, params)
    except OAuthFailure as failure:
        return pages.error_page(failure.code, failure.description)
    if request.method == "GET":
        with state.lock:
            users = list(state.users.values())
        return pages.consent_page(req.app, req.scopes, users, req.hidden_fields())
    decision = params.get("decision", "")
    back: dict[str, str] = {}
    if decision == "deny":
        back["error"] = "access_denied"
    elif decision == "approve":
        try:
            code = approve(state, req, params.get("open_id", ""))
        except OAuthFailure as failure:
            return pages.error_page(failure.code, failure.description)
        back["code"] = code.code
    else:
        return pages.error_page(20001, "decision must be approve or deny")
    if req.state:
        back["state"] = req.state
    return web.Response(status=302, headers={"Location": add_query(req.redirect_uri, back)})


# --- token issuance shared by v2 and v1 -------------------------------------------------


def narrow_scopes(requested: str | None, available: list[str]) -> list[str]:
    if requested is None:
        return list(available)
    scopes = parse_scopes(requested)
    if len(set(scopes)) != len(scopes):
        raise OAuthFailure(20067, "duplicate scopes")
    outside = [s for s in scopes if s not in available]
    if outside:
        raise OAuthFailure(20068, "scopes not granted: " + " ".join(outside))
    return scopes


def check_pkce(code: AuthCode, verifier: str | None) -> None:
    if not code.code_challenge:
        return
    if not verifier or not _VERIFIER_RE.match(verifier):
        raise OAuthFailure(20049, "code_verifier is missing or malformed")
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        expected = verifier
    if expected != code.code_challenge:
        raise OAuthFailure(20049, "code_verifier does not match code_challenge")


def redeem_code(
    state: SandboxState,
    app: App,
    code_str: str,
    *,
    redirect_uri: str | None,
    verifier: str | None,
    scope: str | None,
    version: str,
) -> dict[str, Any]:
    with state.lock:
        code = state.codes.get(code_str)
        if code is None:
            raise OAuthFailure(20003, "authorization code not found")
        if code.app_id != app.app_id:
            raise OAuthFailure(20024, "the code belongs to another app")
        if code.used:
            raise OAuthFailure(20065, "authorization code has been used")
        if state.now() >= code.expires_at:
            raise OAuthFailure(20004, "authorization code expired")
        if redirect_uri is not None and redirect_uri != code.redirect_uri:
            raise OAuthFailure(20071, "redirect_uri does not match the authorize request")
        if version == "v2":
            check_pkce(code, verifier)
        scopes = narrow_scopes(scope, code.scopes)
        user = state.users.get(code.open_id)
        if user is None:
            raise OAuthFailure(20008, "the user does not exist")
        if user.is_resigned or user.is_frozen:
            raise OAuthFailure(20066, "the user's status is invalid")
        code.used = True
        return issue_user_tokens(
            state, app, code.open_id, code.scopes, scopes, state.now(), version
        )


def issue_user_tokens(
    state: SandboxState,
    app: App,
    open_id: str,
    grant_scopes: list[str],
    scopes: list[str],
    authorized_at: float,
    version: str,
) -> dict[str, Any]:
    """Store a new access token (and refresh token when due); return the v2 response body."""
    with state.lock:
        now = state.now()
        config = state.config
        at_str = util.new_v2_token("uat") if version == "v2" else util.new_v1_user_token()
        access = UserToken(
            at_str, app.app_id, open_id, " ".join(scopes), now + config.access_token_ttl, version
        )
        state.user_tokens[at_str] = access
        body: dict[str, Any] = {
            "code": 0,
            "access_token": at_str,
            "expires_in": config.access_token_ttl,
        }
        # v1 always returned a refresh token; v2 only with offline_access.
        if version == "v1" or OFFLINE_ACCESS in scopes:
            rt_str = util.new_v2_token("urt") if version == "v2" else util.new_v1_refresh_token()
            expires_at = min(now + config.refresh_token_ttl, authorized_at + AUTHORIZATION_HARD_CAP)
            state.refresh_tokens[rt_str] = RefreshToken(
                rt_str,
                app.app_id,
                open_id,
                grant_scopes,
                expires_at,
                authorized_at,
                at_str,
                version,
            )
            body["refresh_token"] = rt_str
            body["refresh_token_expires_in"] = max(0, int(expires_at - now))
        body["token_type"] = "Bearer"  # noqa: S105
        body["scope"] = access.scope
        return body


def rotate_refresh_token(
    state: SandboxState, app: App, rt_str: str, *, scope: str | None, version: str
) -> dict[str, Any]:
    with state.lock:
        rt = state.refresh_tokens.get(rt_str)
        if rt is None or rt.version != version:
            raise OAuthFailure(20026, "refresh token is invalid")
        if rt.app_id != app.app_id:
            raise OAuthFailure(20024, "the refresh token belongs to another app")
        if rt.status == "revoked":
            raise OAuthFailure(20064, "refresh token has been revoked")
        if rt.status == "used":
            raise OAuthFailure(20073, "refresh token has been used")
        if state.now() >= rt.expires_at:
            raise OAuthFailure(20037, "refresh token expired")
        if not app.allow_refresh:
            raise OAuthFailure(20074, "the app is not allowed to refresh user_access_token")
        user = state.users.get(rt.open_id)
        if user is None:
            raise OAuthFailure(20008, "the user does not exist")
        if user.is_resigned or user.is_frozen:
            raise OAuthFailure(20066, "the user's status is invalid")
        scopes = narrow_scopes(scope, rt.grant_scopes)
        rt.status = "used"
        old = state.user_tokens.get(rt.access_token)
        if old is not None:
            old.expires_at = min(old.expires_at, state.now() + ROTATION_GRACE)
        return issue_user_tokens(
            state, app, rt.open_id, rt.grant_scopes, scopes, rt.authorized_at, version
        )


def revoke_user(state: SandboxState, open_id: str, app_id: str | None = None) -> dict[str, int]:
    """The user withdrew the authorization: refresh → 20064, access tokens → 99991668."""
    counts = {"refresh_tokens": 0, "access_tokens": 0}
    with state.lock:
        for rt in state.refresh_tokens.values():
            if rt.open_id == open_id and app_id in (None, rt.app_id) and rt.status != "revoked":
                rt.status = "revoked"
                counts["refresh_tokens"] += 1
        for at in state.user_tokens.values():
            if at.open_id == open_id and app_id in (None, at.app_id) and not at.revoked:
                at.revoked = True
                counts["access_tokens"] += 1
        for key in [k for k in state.grants if k[1] == open_id and app_id in (None, k[0])]:
            del state.grants[key]
    return counts


# --- v2 token endpoint ------------------------------------------------------------------


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    return client_id, secret


async def oauth_token(request: web.Request) -> web.Response:
    """POST /open-apis/authen/v2/oauth/token: flat body, errors with HTTP 400/500/503."""
    body = await read_json(request)
    malformed = body is None
    body = body or {}
    grant_type = body.get("grant_type")
    api = "oauth_refresh" if grant_type == "refresh_token" else "oauth_token"
    logged: dict[str, Any] = {
        k: body.get(k)
        for k in (
            "grant_type",
            "client_id",
            "client_secret",
            "code",
            "redirect_uri",
            "code_verifier",
            "refresh_token",
            "scope",
        )
        if k in body
    }
    basic = _basic_auth(request)
    logged["basic_auth"] = basic is not None
    if fault := await begin(request, api, logged):
        return fault
    if malformed:
        return oauth_error(20063, "the request body must be a JSON object")
    if basic is not None and body.get("client_secret"):
        return oauth_error(20070, "send client credentials either by Basic auth or in the body")
    client_id = body.get("client_id") or (basic[0] if basic else "")
    client_secret = body.get("client_secret") or (basic[1] if basic else "")
    if not grant_type or not client_id or not client_secret:
        return oauth_error(20001, "grant_type, client_id and client_secret are required")
    if grant_type not in ("authorization_code", "refresh_token"):
        return oauth_error(20036, f"unsupported grant_type {grant_type}")
    state = runtime(request).state
    with state.lock:
        app = state.apps.get(str(client_id))
    if app is None:
        return oauth_error(20048, "the app does not exist")
    if app.app_secret != client_secret:
        return oauth_error(20002, "client_secret is invalid")
    try:
        if grant_type == "authorization_code":
            if not body.get("code"):
                return oauth_error(20001, "code is required")
            result = redeem_code(
                state,
                app,
                str(body["code"]),
                redirect_uri=_opt_str(body.get("redirect_uri")),
                verifier=_opt_str(body.get("code_verifier")),
                scope=_opt_str(body.get("scope")),
                version="v2",
            )
        else:
            if not body.get("refresh_token"):
                return oauth_error(20001, "refresh_token is required")
            result = rotate_refresh_token(
                state,
                app,
                str(body["refresh_token"]),
                scope=_opt_str(body.get("scope")),
                version="v2",
            )
    except OAuthFailure as failure:
        return oauth_error(failure.code, failure.description)
    return json_response(result)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# --- v1 OIDC endpoints ------------------------------------------------------------------


async def oidc_access_token(request: web.Request) -> web.Response:
    return await _oidc(request, "oidc_token")


async def oidc_refresh_access_token(request: web.Request) -> web.Response:
    return await _oidc(request, "oidc_refresh")


async def _oidc(request: web.Request, api: str) -> web.Response:
    body = await read_json(request) or {}
    logged: dict[str, Any] = {
        k: body.get(k) for k in ("grant_type", "code", "refresh_token") if k in body
    }
    logged["authorization"] = request.headers.get("Authorization", "")
    if fault := await begin(request, api, logged):
        return fault
    try:
        caller = authenticate(request, "app")
    except AuthError as error:
        return error.response()
    state = runtime(request).state
    expected_grant = "authorization_code" if api == "oidc_token" else "refresh_token"
    if body.get("grant_type") != expected_grant:
        return envelope_error(20001, f"grant_type must be {expected_grant}")
    try:
        if api == "oidc_token":
            if not body.get("code"):
                return envelope_error(20001, "code is required")
            result = redeem_code(
                state,
                caller.app,
                str(body["code"]),
                redirect_uri=None,
                verifier=None,
                scope=None,
                version="v1",
            )
        else:
            if not body.get("refresh_token"):
                return envelope_error(20001, "refresh_token is required")
            result = rotate_refresh_token(
                state, caller.app, str(body["refresh_token"]), scope=None, version="v1"
            )
    except OAuthFailure as failure:
        return envelope_error(failure.code, failure.description)
    data = {k: v for k, v in result.items() if k != "code"}
    if "refresh_token_expires_in" in data:
        data["refresh_expires_in"] = data.pop("refresh_token_expires_in")
    return envelope(data)
