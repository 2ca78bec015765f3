"""The aiohttp application, a background-thread server for tests, and `run()` for the command."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from larkauth.sandbox import control, longconn, oauth, openapi, pages, util
from larkauth.sandbox.common import CALL, RUNTIME, Runtime
from larkauth.sandbox.state import Config, SandboxState, Seed

logger = logging.getLogger("larkauth.sandbox")


class MaskingAccessLogger(AbstractAccessLogger):
    """One line per request, with secrets in the query string masked."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = util.mask_params(dict(request.query))
        target = request.path
        if query:
            target += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        self.logger.info("%s %s %s %.1fms", request.method, target, response.status, time * 1000)


LOG_ID_HEADER = "X-Tt-Logid"
_PLATFORM_PATHS = ("/open-apis/", "/callback/")


@web.middleware
async def record_outcome(request: web.Request, handler: Any) -> web.StreamResponse:
    """Adds Feishu's log id header and completes the call record `common.begin` started."""
    log_id = util.new_log_id()
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as error:
        _finish(request, error.status, None, log_id)
        raise
    if not response.prepared and request.path.startswith(_PLATFORM_PATHS):
        response.headers[LOG_ID_HEADER] = log_id
    code = None
    if isinstance(response, web.Response) and response.content_type == "application/json":
        try:
            body = json.loads(response.body) if isinstance(response.body, bytes) else None
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), int):
            code = body["code"]
    _finish(request, response.status, code, log_id)
    return response


def _finish(request: web.Request, status: int, code: int | None, log_id: str) -> None:
    call = request.get(CALL)
    if call is not None:
        with request.app[RUNTIME].state.lock:
            call.status = status
            call.code = code
            call.log_id = log_id


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    rt.client = aiohttp.ClientSession()
    yield
    await rt.client.close()
    rt.client = None


async def _close_connections(app: web.Application) -> None:
    await app[RUNTIME].hub.drop()


def create_app(state: SandboxState) -> web.Application:
    app = web.Application(middlewares=[record_outcome, control.control_errors])
    app[RUNTIME] = Runtime(state=state, hub=longconn.Hub(state))
    app.cleanup_ctx.append(_http_session)
    app.on_shutdown.append(_close_connections)
    r = app.router
    r.add_post("/open-apis/auth/v3/tenant_access_token/internal", oauth.tenant_access_token)
    r.add_post("/open-apis/auth/v3/app_access_token/internal", oauth.app_access_token)
    r.add_get("/open-apis/authen/v1/authorize", oauth.authorize)
    r.add_post("/open-apis/authen/v1/authorize", oauth.authorize)
    r.add_post("/open-apis/authen/v2/oauth/token", oauth.oauth_token)
    r.add_post("/open-apis/authen/v1/oidc/access_token", oauth.oidc_access_token)
    r.add_post("/open-apis/authen/v1/oidc/refresh_access_token", oauth.oidc_refresh_access_token)
    r.add_get("/open-apis/authen/v1/user_info", openapi.user_info)
    r.add_get("/open-apis/contact/v3/users/{user_id}", openapi.contact_user)
    r.add_post("/open-apis/im/v1/messages", openapi.message_create)
    r.add_patch("/open-apis/im/v1/messages/{message_id}", openapi.message_patch)
    r.add_post("/open-apis/interactive/v1/card/update", openapi.card_update)
    r.add_post("/callback/ws/endpoint", longconn.endpoint)
    r.add_get(longconn.WS_PATH, longconn.connect)
    r.add_get("/_sandbox/", pages.index)
    r.add_get("/_sandbox", pages.index)
    r.add_get("/_sandbox/inbox/{open_id}", pages.inbox)
    r.add_get("/_sandbox/inbox/{open_id}/version", pages.inbox_version)
    r.add_post("/_sandbox/inbox/{open_id}/click", pages.inbox_click)
    r.add_get("/_sandbox/avatar/{open_id}", pages.avatar)
    control.add_routes(app)
    return app


class SandboxServer:
    """The sandbox on its own thread and event loop, for tests and benchmarks.

    >>> with SandboxServer() as server:          # port 0: a free port
    ...     SandboxControl(server.url).add_app(app_id="cli_x", app_secret="s")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: Config | None = None,
        seed: Seed | None = None,
        state: SandboxState | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.state = state or SandboxState(config, seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._serve, name="feishu-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the sandbox did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the sandbox failed to start: {self._error}") from self._error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as error:  # reported to start()'s caller
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(
            create_app(self.state), access_log_class=MaskingAccessLogger, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            try:
                future.result(timeout)
            except Exception:
                logger.exception("sandbox shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = self._runner = None
        self._ready.clear()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run(
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    config: Config | None = None,
    seed: Seed | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (the `lark_sandbox` command).

    `on_ready` is called once the port is listening.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)

    def announce(*_: object) -> None:
        # run_app prints its "Running on" line once the sites listen: our cue.
        if on_ready is not None:
            on_ready()

    web.run_app(
        create_app(SandboxState(config, seed)),
        host=host,
        port=port,
        access_log_class=MaskingAccessLogger,
        print=announce,
        shutdown_timeout=2.0,
    )
