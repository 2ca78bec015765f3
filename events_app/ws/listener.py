"""The listener process: one long connection per application, all on lark-oapi's loop.

One process serves every application it is given (each its own `ListenerClient`), because
lark-oapi binds its client code to one module-level asyncio loop: clients share that loop,
and their handlers share one small thread pool. Several listener processes may run at
once (Feishu sends each event to one connection; the dispatcher's dedupe covers the rest).

If one application's connection cannot be restored, the whole process stops with a
non-zero status, so the supervisor restarts it and the operator sees it. SIGTERM and
SIGINT stop it cleanly: frames being handled finish and are acknowledged, then exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import lark_oapi.ws.client as sdk
from django.conf import settings
from django.db import close_old_connections
from lark_oapi.ws.exception import ClientException
from prometheus_client import multiprocess

from events_app import metrics, toasts
from events_app.dispatcher import dispatch
from events_app.envelope import Event, MalformedEvent, json_object
from events_app.ws.client import ListenerClient, ReconnectsExhausted
from sessions_app.models import Application

logger = logging.getLogger(__name__)

# Handlers mostly wait on PostgreSQL and Feishu; a few threads keep one slow event from
# holding up the rest.
HANDLER_THREADS = 4


class ListenerFailed(Exception):
    """A connection was given up on; the message says which and why."""


def run(apps: list[Application]) -> None:
    """Serve until SIGTERM/SIGINT. Raises `ListenerFailed` when a connection is given up."""
    loop = sdk.loop
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(apps))
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())


def handle_payload(app: Application, payload: bytes) -> toasts.Answer:
    """One event from the long connection, in a worker thread (plaintext, no signature:
    the connection itself was authenticated, FACTS §8)."""
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


async def _serve(apps: list[Application]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum)
    executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="ws-handler")
    runs = {asyncio.create_task(_client(app, executor).run(stop)): app.app_id for app in apps}
    try:
        done, _ = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        failed = [task for task in done if task.exception() is not None]
        if failed:
            stop.set()
            await asyncio.wait(runs)
            raise ListenerFailed("; ".join(_failure(runs[task], task) for task in failed))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        executor.shutdown(wait=True)
    logger.info("Listener stopped")


def _client(app: Application, executor: ThreadPoolExecutor) -> ListenerClient:
    return ListenerClient(
        app.app_id,
        app.app_secret,
        domain=app.api_base_url,
        handle=partial(handle_payload, app),
        executor=executor,
        max_retries=settings.WEBSOCKET_MAX_RECONNECT_RETRIES,
        heartbeat_interval=settings.WEBSOCKET_HEARTBEAT_INTERVAL,
    )


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    name = signal.Signals(signum).name
    logger.info("%s received: finishing the events at hand, then stopping", name)
    stop.set()


def _failure(app_id: str, task: asyncio.Task[None]) -> str:
    exc = task.exception()
    if isinstance(exc, ReconnectsExhausted):
        return str(exc)
    if isinstance(exc, ClientException):
        return f"Feishu refused the long connection of {app_id} for good ({exc})"
    return f"The long connection of {app_id} failed: {type(exc).__name__}: {exc}"
