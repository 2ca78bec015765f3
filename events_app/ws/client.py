"""lark-oapi's long-connection client, extended where 1.7.5 falls short (docs/feishu.md §6.2, §8).

`ListenerClient` keeps the SDK's protocol code: frame parsing, pings and pongs (whose
ClientConfig it honours), split payloads, the ack frame. It replaces three things:

- `_handle_data_frame`: frames of type `card` are handled like `event` frames (1.7.5
  drops them without an ack, so Feishu would time out). The event is handled in a worker
  thread, so database and Feishu calls never stall the loop, which also carries the pings
  and every other frame. After `run()` is told to stop, new frames get no ack: Feishu
  delivers them again, to a live client.
- the connection lifecycle: `run()` instead of `start()`. The SDK reconnects at the
  server's fixed interval (120 s), and gives up for good on a `ClientException` (bad
  credentials, connection limit); `run()` backs off exponentially with jitter, longer
  after a refusal, never gives up, reports each change (`report`), and stops cleanly.
  `_open()` is the SDK's `_connect` with endpoint discovery (a `requests.post` without
  timeout) off the loop and bounded.
- `_receive_message_loop`: a closed connection is reported to `run()` rather than
  reconnected by the SDK; frame tasks are tracked so a stop can let them finish.

lark-oapi schedules on its module-level `loop` (`lark_oapi.ws.client.loop`): `run()` must
be awaited on that loop (see `events_app.ws.listener`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import websockets
from websockets.exceptions import InvalidHandshake

from events_app import metrics
from events_app.models import ListenerConnection
from larkauth.backoff import Backoff
from larkauth.feishu.sdk import load_ws
from larkauth.redaction import MARKER, redact

# lark_oapi.ws.client (loaded by larkauth's lark-oapi seam): `Client`, `loop`, the frame
# constants, enums and models.
sdk = load_ws()
_SdkClient: Any = sdk.Client

logger = logging.getLogger(__name__)

Status = ListenerConnection.Status
T = TypeVar("T")
# Handles one event payload in a worker thread; returns the answer to put in the ack.
FrameHandler = Callable[[bytes], dict[str, Any]]
# Told each change of the connection: status, failed attempts in a row, why (redacted).
Report = Callable[[str, int, str], None]

HANDLED_FRAME_TYPES = frozenset({sdk.MessageType.EVENT.value, sdk.MessageType.CARD.value})
ENDPOINT_TIMEOUT_SECONDS = 15.0
HANDSHAKE_TIMEOUT_SECONDS = 10.0
DRAIN_TIMEOUT_SECONDS = 10.0
MIN_SECRET_TO_MASK = 6
_URL_QUERY = re.compile(r"(\w+://[^\s?'\"]*)\?[^\s'\"]*")
# Reconnecting, ± 20 % so that listeners restarted together do not reconnect in step.
# After a transient failure (network, timeout, Feishu busy): 1, 2, 4 … 60 s.
TRANSIENT = Backoff(base=1.0, cap=60.0, jitter=0.2)
# After Feishu refused the application (credentials, connection limit, app disabled):
# 30 s, 1, 2, 4, 8 and then every 10 min.
SLOW = Backoff(base=30.0, cap=600.0, jitter=0.2)


class ListenerClient(_SdkClient):
    def __init__(
        self,
        app_id: str,
        app_secret: str,
        *,
        domain: str,
        handle: FrameHandler,
        executor: Executor,
        max_retries: int,
        heartbeat_interval: int,
        report: Report,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            app_id, app_secret, log_level=sdk.LogLevel.WARNING, domain=domain, auto_reconnect=False
        )
        self._handle = handle
        self._executor = executor
        self._max_retries = max_retries
        self._heartbeat_interval = heartbeat_interval
        self._ping_interval = heartbeat_interval
        self._report = report
        self._backoff = backoff or TRANSIENT
        self._stopping = False
        self._lost = asyncio.Event()
        self._frame_tasks: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None

    @property
    def app_id(self) -> str:
        return self._app_id

    # --- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the connection until `stop` is set, retrying for as long as it takes.

        A transient failure (network, timeout, Feishu busy) is retried after 1, 2, 4 … 60 s,
        so the connection is back within a minute of an outage's end; a refusal
        (`ClientException`: bad credentials, connection limit, app disabled) after 30 s …
        10 min: trying sooner would not help, and the listener reconnects at once when the
        application is changed in admin. Each change is reported: `connected`,
        `backing_off` (a failed attempt or a lost connection), `failed` (`max_retries`
        failed attempts in a row; still retried), `stopped`.
        """
        status = metrics.WEBSOCKET_CONNECTION_STATUS.labels(self.app_id)
        status.set(0)
        pinger = asyncio.get_running_loop().create_task(self._ping_loop())
        failures = 0  # failed attempts since the last good connection
        try:
            while True:
                try:
                    if not await self._open_unless_stopped(stop):
                        return
                except Exception as exc:
                    failures += 1
                    failed = failures >= self._max_retries
                    refused = isinstance(exc, sdk.ClientException)
                    delay = (SLOW if refused else self._backoff).delay(failures)
                    error = self._describe(exc)
                    self._report(Status.FAILED if failed else Status.BACKING_OFF, failures, error)
                    logger.warning(
                        "Long connection of %s failed (%d in a row%s): %s; retrying in %.0f s",
                        self.app_id,
                        failures,
                        ", counts as failed" if failed else "",
                        error,
                        delay,
                    )
                else:
                    failures = 0
                    status.set(1)
                    self._report(Status.CONNECTED, 0, "")
                    logger.info("Long connection of %s is up (conn %s)", self.app_id, self._conn_id)
                    await _first_of(stop.wait(), self._lost.wait())
                    status.set(0)
                    if stop.is_set():
                        return
                    delay = self._backoff.delay(1)
                    self._report(Status.BACKING_OFF, 0, "the connection was lost")
                    logger.warning(
                        "Long connection of %s was lost; reconnecting in %.1f s",
                        self.app_id,
                        delay,
                    )
                metrics.WEBSOCKET_RECONNECTS.labels(self.app_id).inc()
                if await _stopped_within(stop, delay):
                    return
        finally:
            status.set(0)
            pinger.cancel()
            await self._drain_and_close()
            self._report(Status.STOPPED, failures, "")

    def _describe(self, exc: BaseException) -> str:
        """Why an attempt failed, fit for logs and admin: no secrets, no connection URLs."""
        text = _URL_QUERY.sub(r"\1", redact(_brief(exc)))
        if len(self._app_secret) >= MIN_SECRET_TO_MASK:
            text = text.replace(self._app_secret, MARKER)
        if isinstance(exc, sdk.ClientException):
            text = f"Feishu refused the connection: {text}"
        return text

    async def _open_unless_stopped(self, stop: asyncio.Event) -> bool:
        """Open the connection; False when `stop` came first (the attempt is abandoned)."""
        opening = asyncio.ensure_future(self._open())
        await _first_of(opening, stop.wait())
        if not opening.done():
            opening.cancel()
            await asyncio.wait({opening})
            return False
        opening.result()  # raises why the attempt failed
        return True

    async def _open(self) -> None:
        url = await asyncio.wait_for(in_daemon_thread(self._get_conn_url), ENDPOINT_TIMEOUT_SECONDS)
        url = sdk.build_connection_url(url, self._connection_host)
        query = parse_qs(urlparse(url).query)
        try:
            conn = await websockets.connect(
                url,
                open_timeout=HANDSHAKE_TIMEOUT_SECONDS,
                **sdk._ws_connect_kwargs(self._connection_headers),
            )
        except InvalidHandshake as exc:
            sdk._parse_ws_conn_exception(exc)  # raises the SDK's Client/ServerException
            raise
        self._conn, self._conn_url = conn, url
        self._conn_id, self._service_id = query[sdk.DEVICE_ID][0], query[sdk.SERVICE_ID][0]
        self._lost.clear()
        self._receiver = asyncio.get_running_loop().create_task(self._receive_message_loop())

    async def _drain_and_close(self) -> None:
        """Let frames already being handled finish and send their acks, then close."""
        self._stopping = True
        if self._frame_tasks:
            await asyncio.wait(set(self._frame_tasks), timeout=DRAIN_TIMEOUT_SECONDS)
        await self._disconnect()
        if self._receiver is not None:
            await asyncio.wait({self._receiver})

    def _configure(self, conf: Any) -> None:  # lark_oapi.ws.model.ClientConfig
        super()._configure(conf)
        # The server's ping interval, but never rarer than WEBSOCKET_HEARTBEAT_INTERVAL.
        server = conf.PingInterval if conf.PingInterval and conf.PingInterval > 0 else None
        self._ping_interval = min(server or self._heartbeat_interval, self._heartbeat_interval)

    # --- frames -----------------------------------------------------------------------

    async def _receive_message_loop(self) -> None:
        conn = self._conn
        try:
            while conn is not None:
                self._track_frame(self._handle_message(await conn.recv()))
        except websockets.ConnectionClosed as exc:
            if not self._stopping:
                logger.warning("Long connection of %s closed: %s", self.app_id, _brief(exc))
        except Exception:
            logger.exception("Long connection of %s: receive loop failed", self.app_id)
        finally:
            await self._disconnect()
            self._lost.set()

    async def _handle_data_frame(self, frame: Any) -> None:
        headers = {header.key: header.value for header in frame.headers}
        if headers.get(sdk.HEADER_TYPE) not in HANDLED_FRAME_TYPES or self._stopping:
            return
        payload = frame.payload
        parts = int(headers.get(sdk.HEADER_SUM) or 1)
        if parts > 1:
            payload = self._combine(
                headers.get(sdk.HEADER_MESSAGE_ID, ""),
                parts,
                int(headers.get(sdk.HEADER_SEQ) or 0),
                payload,
            )
            if payload is None:
                return
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._handle, bytes(payload))
            ack: dict[str, Any] = {"code": 200}
            if answer:
                ack["data"] = base64.b64encode(json.dumps(answer).encode()).decode()
        except Exception:  # logged by the dispatcher; Feishu redelivers on a non-200 ack
            ack = {"code": 500}
        biz_rt = frame.headers.add()
        biz_rt.key, biz_rt.value = sdk.HEADER_BIZ_RT, str(int((time.monotonic() - started) * 1000))
        frame.payload = json.dumps(ack).encode()
        await self._write_message(frame.SerializeToString())

    def _track_frame(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._frame_tasks.add(task)
        task.add_done_callback(self._frame_tasks.discard)


async def _first_of(*awaitables: Any) -> None:
    """Wait until one of them is done. Coroutines run as tasks that are cancelled after;
    tasks passed in are left to the caller."""
    waits = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for given, wait in zip(awaitables, waits, strict=True):
            if given is not wait:
                wait.cancel()


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """`work()` in a daemon thread: a call that hangs cannot keep the process from exiting
    (an executor's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = work()
        except Exception as exc:
            loop.call_soon_threadsafe(settle, partial(future.set_exception, exc))
        else:
            loop.call_soon_threadsafe(settle, partial(future.set_result, result))

    threading.Thread(target=target, name="ws-endpoint", daemon=True).start()
    return future


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
