"""What every Feishu-facing handler shares: the runtime, responses, faults, bearer tokens."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, web

from larkauth.sandbox.state import App, Call, SandboxState, UserToken

if TYPE_CHECKING:
    from larkauth.sandbox.longconn import Hub

logger = logging.getLogger("larkauth.sandbox")


@dataclass
class Runtime:
    """Everything a handler needs; one per aiohttp application."""

    state: SandboxState
    hub: Hub
    client: ClientSession | None = field(default=None, repr=False)  # set while serving

    @property
    def session(self) -> ClientSession:
        if self.client is None:
            raise RuntimeError("the sandbox is not running")
        return self.client


RUNTIME = web.AppKey("larkauth_sandbox_runtime", Runtime)
CALL = web.RequestKey("larkauth_sandbox_call", Call)


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def envelope(data: Any = None, msg: str = "success") -> web.Response:
    return json_response({"code": 0, "msg": msg, "data": {} if data is None else data})


def envelope_error(code: int, msg: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "msg": msg, "data": {}}, status=status)


async def read_json(request: web.Request) -> dict[str, Any] | None:
    """The JSON object in the body, or None when the body is not one."""
    try:
        data = json.loads(await request.read() or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --- error styles and faults ------------------------------------------------------------

OAUTH_ERROR_NAMES = {
    20001: "invalid_request",
    20002: "invalid_client",
    20003: "invalid_grant",
    20004: "invalid_grant",
    20008: "invalid_grant",
    20024: "invalid_grant",
    20026: "invalid_grant",
    20036: "unsupported_grant_type",
    20037: "invalid_grant",
    20048: "invalid_client",
    20049: "invalid_grant",
    20050: "server_error",
    20063: "invalid_request",
    20064: "invalid_grant",
    20065: "invalid_grant",
    20066: "invalid_grant",
    20067: "invalid_scope",
    20068: "invalid_scope",
    20070: "invalid_client",
    20071: "invalid_grant",
    20072: "temporarily_unavailable",
    20073: "invalid_grant",
    20074: "unauthorized_client",
}


def oauth_error(code: int, description: str, status: int | None = None) -> web.Response:
    """The v2 token endpoint's flat error body."""
    if status is None:
        status = {20050: 500, 20072: 503}.get(code, 400)
    body = {
        "code": code,
        "error": OAUTH_ERROR_NAMES.get(code, "invalid_request"),
        "error_description": description,
    }
    return json_response(body, status=status)


def flat_error(code: int, msg: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "msg": msg}, status=status)


HANDSHAKE_FORBIDDEN = 403
AUTH_FAILED = 514
_FLAT_APIS = {"tenant_token", "app_token"}
_OAUTH_APIS = {"oauth_token", "oauth_refresh"}


def handshake_failure(status: int, msg: str, auth_code: int | None = None) -> web.Response:
    """A refused WebSocket upgrade, with the headers lark-oapi reads (docs/feishu.md §8)."""
    headers = {"handshake-status": str(status), "handshake-msg": msg}
    if auth_code is not None:
        headers["handshake-autherrcode"] = str(auth_code)
    return web.Response(status=403 if status == HANDSHAKE_FORBIDDEN else 401, headers=headers)


def fault_response(api: str, code: int | None, http_status: int | None) -> web.Response:
    msg = "sandbox injected fault"
    if api in _OAUTH_APIS:
        if code is None:
            status = http_status or 500
            code = 20072 if status == 503 else 20050 if status >= 500 else 20063
        return oauth_error(code, msg, http_status)
    if api == "ws_connect":
        # code → auth failure with that handshake-autherrcode; http_status 403 → forbidden.
        if http_status == HANDSHAKE_FORBIDDEN:
            return handshake_failure(HANDSHAKE_FORBIDDEN, msg)
        return handshake_failure(AUTH_FAILED, msg, 1 if code is None else code)
    if code is None:
        code = 1  # "system busy"
    status = http_status or (500 if code == 1 else 400)
    if api in _FLAT_APIS:
        return flat_error(code, msg, status)
    if api == "authorize":
        return web.Response(
            text=f"<h1>Error {code}</h1><p>{msg}</p>", content_type="text/html", status=status
        )
    return json_response({"code": code, "msg": msg, "data": None}, status=status)


async def begin(request: web.Request, api: str, params: dict[str, Any]) -> web.Response | None:
    """Record the call and apply a pending fault; a response means: answer with it."""
    state = runtime(request).state
    peer = request.transport.get_extra_info("peername") if request.transport else None
    port = peer[1] if isinstance(peer, tuple) and len(peer) > 1 else None
    request[CALL] = state.record_call(api, request.method, request.path, params, port)
    fault = state.take_fault(api)
    if fault is None:
        return None
    logger.info("fault on %s: %s", api, fault)
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.drop_connection:
        drop_connection(request)
    if fault.code is None and fault.http_status is None:
        return None
    if fault.html:
        return web.Response(
            text="<html><body><h1>Forbidden</h1></body></html>",
            content_type="text/html",
            status=fault.http_status or 403,
        )
    return fault_response(api, fault.code, fault.http_status)


def drop_connection(request: web.Request) -> None:
    """Close the TCP connection without answering, like a crashed gateway."""
    if request.transport is not None:
        request.transport.abort()
    # aiohttp treats a cancelled handler as a vanished client: nothing is written.
    raise asyncio.CancelledError


# --- bearer tokens ----------------------------------------------------------------------

MISSING_TOKEN = 99991661
INVALID_TENANT_TOKEN = 99991663
INVALID_APP_TOKEN = 99991664
INVALID_USER_TOKEN = 99991668
EXPIRED_USER_TOKEN = 99991677


@dataclass
class Caller:
    kind: str  # "tenant" | "app" | "user"
    app: App
    user_token: UserToken | None = None


class AuthError(Exception):
    def __init__(self, code: int, msg: str, status: int = 401) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def response(self) -> web.Response:
        return envelope_error(self.code, self.msg, self.status)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate(request: web.Request, *allowed: str) -> Caller:
    """The caller behind the Authorization header, if its token type is in `allowed`."""
    token = bearer(request)
    if not token:
        raise AuthError(
            MISSING_TOKEN,
            "Missing access token for authorization. Please make a request with token attached.",
            400,
        )
    state = runtime(request).state
    with state.lock:
        now = state.now()
        app_token = state.app_tokens.get(token)
        if app_token is not None:
            app = state.apps.get(app_token.app_id)
            code = INVALID_TENANT_TOKEN if app_token.kind == "tenant" else INVALID_APP_TOKEN
            if app is None or app_token.expires_at <= now:
                raise AuthError(code, "Invalid access token for authorization.")
            if app_token.kind not in allowed:
                raise AuthError(code, f"This API does not accept {app_token.kind} access tokens.")
            return Caller(app_token.kind, app)
        user_token = state.user_tokens.get(token)
        if user_token is not None:
            app = state.apps.get(user_token.app_id)
            if app is None or user_token.revoked:
                raise AuthError(INVALID_USER_TOKEN, "Invalid access token for authorization.")
            if user_token.expires_at <= now:
                raise AuthError(EXPIRED_USER_TOKEN, "Authentication token expired.")
            if "user" not in allowed:
                raise AuthError(INVALID_USER_TOKEN, "This API does not accept a user access token.")
            return Caller("user", app, user_token)
    if token.startswith("t-"):
        raise AuthError(INVALID_TENANT_TOKEN, "Invalid access token for authorization.")
    if token.startswith("a-"):
        raise AuthError(INVALID_APP_TOKEN, "Invalid access token for authorization.")
    raise AuthError(INVALID_USER_TOKEN, "Invalid access token for authorization.")


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"
