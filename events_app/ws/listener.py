"""The listener process: one long connection per application, all on lark-oapi's loop.

One process serves every application it is given (each its own `ListenerClient`), because
lark-oapi binds its client code to one module-level asyncio loop: clients share that loop,
and their handlers share one small thread pool. Several listener processes may run at
once (Feishu sends each event to one connection; the dispatcher's dedupe covers the rest).

Started without `--app`, it follows the applications table: every
WEBSOCKET_APPS_RESCAN_SECONDS it connects applications added or re-activated, reconnects
those whose id, secret or domain changed, and closes those deactivated or deleted.

Applications are isolated: each connection backs off and retries on its own (see
`ListenerClient.run`) while the others stay connected, and its state is reported in the
log, in `larkauth_websocket_connection_status` / `_reconnects_total`, and in admin
(`ListenerConnection`, with a heartbeat; see `status`). Exit status:

- 0 after SIGTERM or SIGINT: frames being handled finish and are acknowledged first.
- 1 when started with `--app` and every one of its applications has failed
  (WEBSOCKET_MAX_RECONNECT_RETRIES attempts in a row), so the supervisor sees it; or on
  an unexpected error. Following the applications table (no `--app`), a failing
  application never ends the process: a restart would fail the same way, and the fix
  (usually in admin) is picked up by the running process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import close_old_connections
from prometheus_client import multiprocess

from events_app import metrics, toasts
from events_app.dispatcher import dispatch
from events_app.envelope import Event, MalformedEvent, json_object
from events_app.ws import status
from events_app.ws.client import ListenerClient, sdk
from events_app.ws.status import StatusBoard
from larkauth.redaction import redact
from sessions_app import selectors
from sessions_app.models import Application

logger = logging.getLogger(__name__)

# Handlers mostly wait on PostgreSQL and Feishu; a few threads keep one slow event from
# holding up the rest.
HANDLER_THREADS = 4


class ListenerFailed(Exception):
    """The listener gave up (see the exit status above); the message says why."""


def run(apps: list[Application], *, follow: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; `follow`: keep to the active applications as they change.
    Raises `ListenerFailed` when, not following, every application has failed."""
    loop = sdk.loop
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(apps, follow))
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())


def handle_payload(app: Application, payload: bytes) -> toasts.Answer:
    """One event from the long connection, in a worker thread (plaintext, no signature:
    the connection itself was authenticated, docs/feishu.md §8)."""
    close_old_connections()
    try:
        try:
            event = Event.parse(json_object(payload))
        except MalformedEvent as exc:
            metrics.EVENTS.labels("unreadable", "rejected").inc()
            logger.warning("Ignored an unreadable frame for %s: %s", app.app_id, exc)
            return {}
        if event.app_id and event.app_id != app.app_id:
            metrics.EVENTS.labels("unverified", "rejected").inc()
            logger.warning("Ignored an event for %s on the connection of %s", event.app_id, app)
            return {}
        return dispatch(app, event, channel="ws")
    finally:
        close_old_connections()


@dataclass
class _Connection:
    app_id: str
    stop: asyncio.Event
    task: asyncio.Task[None]


def _identity(app: Application) -> tuple[str, ...]:
    """What a connection is made from: a change to any of it needs a new connection."""
    secret = hashlib.sha256(app.app_secret.encode()).hexdigest()
    return (app.app_id, secret, app.api_base_url)


def _active_applications() -> list[Application] | None:
    """The applications to serve now; None when the database cannot say (the connections
    are then kept as they are)."""
    close_old_connections()
    try:
        return selectors.applications_active_readable()
    except Exception as exc:  # the database
        logger.warning(
            "Could not read the applications, keeping the connections: %s: %s",
            type(exc).__name__,
            exc,
        )
        return None
    finally:
        close_old_connections()


async def _serve(apps: list[Application], follow: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum)
    executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="ws-handler")
    board = StatusBoard(status.listener_id(), settings.WEBSOCKET_HEARTBEAT_INTERVAL)
    recorder = asyncio.create_task(board.keep_recorded())
    connections: dict[tuple[str, ...], _Connection] = {}

    def connect(app: Application) -> None:
        own_stop = asyncio.Event()
        task = asyncio.create_task(_client(app, executor, board).run(own_stop))
        connections[_identity(app)] = _Connection(app.app_id, own_stop, task)

    for app in apps:
        connect(app)
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            tasks = {connection.task for connection in connections.values()}
            await asyncio.wait(
                tasks | {stopped},
                timeout=settings.WEBSOCKET_APPS_RESCAN_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            # Clients retry every failure themselves: a task that raised is a bug.
            crashed = [c for c in connections.values() if c.task.done() and c.task.exception()]
            if crashed:
                raise ListenerFailed("; ".join(_failure(c.app_id, c.task) for c in crashed))
            for identity in [i for i, c in connections.items() if c.task.done()]:
                connections.pop(identity)  # ended without being asked: reopened on follow
            if not follow and board.all_failed(apps):
                raise ListenerFailed(_giving_up(apps, board))
            if not connections and not follow:
                break
            if follow and not stop.is_set():
                current = await loop.run_in_executor(executor, _active_applications)
                if current is not None:
                    await _follow(connections, {_identity(app): app for app in current}, connect)
    finally:
        for connection in connections.values():
            connection.stop.set()
        stop.set()
        await asyncio.wait([c.task for c in connections.values()] + [stopped])
        board.close()
        await asyncio.wait({recorder}, timeout=status.FINAL_WRITE_SECONDS)
        recorder.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        executor.shutdown(wait=True)
    logger.info("Listener stopped")


async def _follow(
    connections: dict[tuple[str, ...], _Connection],
    wanted: dict[tuple[str, ...], Application],
    connect: Callable[[Application], None],
) -> None:
    """Close the connections no longer wanted (after their frames at hand), open new ones."""
    gone = [identity for identity in connections if identity not in wanted]
    for identity in gone:
        connections[identity].stop.set()
    if gone:
        await asyncio.wait([connections[identity].task for identity in gone])
    for identity in gone:
        logger.info("Closed the long connection of %s", connections.pop(identity).app_id)
    for identity, app in wanted.items():
        if identity not in connections:
            logger.info("Opening a long connection for %s", app.app_id)
            connect(app)


def _client(app: Application, executor: ThreadPoolExecutor, board: StatusBoard) -> ListenerClient:
    return ListenerClient(
        app.app_id,
        app.app_secret,
        domain=app.api_base_url,
        handle=partial(handle_payload, app),
        executor=executor,
        max_retries=settings.WEBSOCKET_MAX_RECONNECT_RETRIES,
        heartbeat_interval=settings.WEBSOCKET_HEARTBEAT_INTERVAL,
        report=partial(board.report, app),
    )


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    name = signal.Signals(signum).name
    logger.info("%s received: finishing the events at hand, then stopping", name)
    stop.set()


def _giving_up(apps: list[Application], board: StatusBoard) -> str:
    failures = "; ".join(
        f"{app.app_id}, failed attempts in a row: {state.failures} ({state.last_error})"
        for app in apps
        if (state := board.state(app)) is not None
    )
    return f"Giving up on the long connections: {failures}"


def _failure(app_id: str, task: asyncio.Task[None]) -> str:
    exc = task.exception()
    return f"The long connection of {app_id} failed: {type(exc).__name__}: {redact(str(exc))}"
