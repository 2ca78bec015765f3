"""The admin overview judges a real listener's long connection from its heartbeat: up
while it writes one, stale once it stops (killed), down while it reports failures."""

from __future__ import annotations

import signal

import pytest

from events_app.models import ListenerConnection
from sessions_app import overview
from tests.events.helpers import wait_for

pytestmark = pytest.mark.slow


def _connection(app) -> str:
    [entry] = [a for a in overview.build().apps if a.app.pk == app.pk]
    return entry.connection


def test_the_overview_follows_the_listeners_heartbeat(lark, start, settings, admin_client):
    settings.WEBSOCKET_HEARTBEAT_INTERVAL = 1  # stale after 3 s without a heartbeat
    listener = start(WEBSOCKET_HEARTBEAT_INTERVAL="1")

    wait_for(lambda: _connection(lark.app) == overview.Connection.UP, what="up")
    first = ListenerConnection.objects.get(app=lark.app).last_heartbeat_at
    wait_for(
        lambda: ListenerConnection.objects.get(app=lark.app).last_heartbeat_at > first,
        what="a second heartbeat",
    )
    page = admin_client.get("/admin/").content.decode()
    assert 'data-connection="up"' in page

    listener.process.send_signal(signal.SIGKILL)  # no last word: the row just ages
    listener.process.wait(timeout=10)
    wait_for(lambda: _connection(lark.app) == overview.Connection.STALE, what="stale")
    assert 'data-connection="stale"' in admin_client.get("/admin/").content.decode()


def test_a_refused_connection_shows_down_with_its_error(lark, start, settings):
    settings.WEBSOCKET_HEARTBEAT_INTERVAL = 1
    lark.sandbox.add_fault("ws_connect", http_status=403, times=-1)
    start(WEBSOCKET_HEARTBEAT_INTERVAL="1", wait=False)

    wait_for(lambda: _connection(lark.app) == overview.Connection.DOWN, timeout=20, what="down")
    [entry] = [a for a in overview.build().apps if a.app.pk == lark.app.pk]
    assert entry.connection_detail
