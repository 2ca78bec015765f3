from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from tests.conftest import _missing
from tests.events.helpers import CONNECT_WAIT_MS, Listener, listener_env, start_listener


@pytest.fixture
def start(lark, settings, tmp_path) -> Iterator[Callable[..., Listener]]:
    """Start `manage.py run_ws_listener` against the test database and the sandbox:
    `start(wait=True, **env)`. Every process started is stopped after the test."""
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    started: list[Listener] = []

    def run(*args: str, wait: bool = True, **env: str) -> Listener:
        log = tmp_path / f"listener-{len(started)}.log"
        listener = start_listener(listener_env(lark.sandbox, settings, **env), log, *args)
        started.append(listener)
        if wait:
            connections = lark.sandbox.ws_connections(
                lark.app.app_id, min_count=len(started), wait_ms=CONNECT_WAIT_MS
            )
            assert len(connections) >= len(started), listener.output()[-3000:]
        return listener

    yield run
    for listener in started:
        if listener.process.poll() is None:
            listener.process.terminate()
    for listener in started:
        try:
            listener.process.wait(timeout=15)
        except Exception:
            listener.process.kill()
            listener.process.wait()


@pytest.fixture
def listener(start) -> Listener:
    return start()
