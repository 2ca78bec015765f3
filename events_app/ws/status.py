"""What each application's long connection is doing: kept on the loop, written to
`ListenerConnection` off it.

Clients report every change to the `StatusBoard` (cheap, on the loop). `keep_recorded`
writes the latest state of every application in a daemon thread: right after a change,
and every WEBSOCKET_HEARTBEAT_INTERVAL as the listener's heartbeat. The connections never
wait for the database: a write that fails (database down) is logged, and the next one
writes the state as it is then; a write that hangs holds up only the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import connection
from django.utils import timezone

from events_app.models import ListenerConnection
from events_app.ws.client import in_daemon_thread
from sessions_app.models import Application

logger = logging.getLogger(__name__)

Status = ListenerConnection.Status
# Rows of listeners not heard from for this long are deleted (a killed listener's rows
# stay until then, their heartbeat showing how old they are).
FORGET_AFTER = timedelta(days=1)
# How long a stopping listener waits for its last write: a database that hangs must not
# hold up the exit.
FINAL_WRITE_SECONDS = 5.0


def listener_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class AppState:
    status: str
    failures: int
    last_error: str
    changed_at: datetime


class StatusBoard:
    def __init__(self, listener: str, heartbeat_interval: float) -> None:
        self.listener_id = listener
        self._interval = heartbeat_interval
        self._states: dict[int, AppState] = {}  # by Application pk
        self._wake = asyncio.Event()
        self._closing = False
        self._recording = True  # the last write succeeded

    def report(self, app: Application, status: str, failures: int = 0, error: str = "") -> None:
        previous = self._states.get(app.pk)
        changed_at = (
            previous.changed_at
            if previous is not None and previous.status == status
            else timezone.now()
        )
        max_length = ListenerConnection._meta.get_field("last_error").max_length or 0
        self._states[app.pk] = AppState(status, failures, error[:max_length], changed_at)
        self._wake.set()

    def state(self, app: Application) -> AppState | None:
        return self._states.get(app.pk)

    def all_failed(self, apps: Iterable[Application]) -> bool:
        return all(
            (state := self.state(app)) is not None and state.status == Status.FAILED for app in apps
        )

    async def keep_recorded(self) -> None:
        """Write each change, and everything every heartbeat interval, until `close()`."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            closing = self._closing
            await self._write()
            if closing:
                return

    def close(self) -> None:
        """Have `keep_recorded` write the final states and return."""
        self._closing = True
        self._wake.set()

    async def _write(self) -> None:
        states = dict(self._states)
        try:
            await in_daemon_thread(partial(record, self.listener_id, states))
        except Exception as exc:
            if self._recording:
                logger.warning(
                    "Could not record the long connections' status, will retry: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            self._recording = False
        else:
            if not self._recording:
                logger.info("Recording the long connections' status again")
            self._recording = True


def record(listener: str, states: dict[int, AppState]) -> None:
    """Upsert this listener's row per application (in a thread of its own)."""
    try:
        now = timezone.now()
        existing = set(
            Application.objects.filter(pk__in=states).values_list("pk", flat=True)
        )  # an application deleted meanwhile has no row to write
        rows = [
            ListenerConnection(
                app_id=pk,
                listener_id=listener,
                status=state.status,
                failures=state.failures,
                last_error=state.last_error,
                status_changed_at=state.changed_at,
                last_heartbeat_at=now,
            )
            for pk, state in states.items()
            if pk in existing
        ]
        ListenerConnection.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["app", "listener_id"],
            update_fields=[
                "status",
                "failures",
                "last_error",
                "status_changed_at",
                "last_heartbeat_at",
            ],
        )
        ListenerConnection.objects.filter(last_heartbeat_at__lt=now - FORGET_AFTER).delete()
    finally:
        connection.close()  # the thread ends here: do not leave its connection behind
