"""One listener, several applications: a failing one backs off and is reported while the
others keep working (`manage.py run_ws_listener` as a real process, the sandbox as Feishu)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from events_app.models import ListenerConnection
from sessions_app.models import Application, SessionState
from tests.events.helpers import (
    CONNECT_WAIT_MS,
    decline_over_ws,
    free_port,
    open_card,
    scrape,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BAD_APP = "cli_bad_app"
RIGHT_SECRET = "bad-app-right-secret"
WRONG_SECRET = "bad-app-wrong-secret"
FAST = {"WEBSOCKET_APPS_RESCAN_SECONDS": "1", "WEBSOCKET_HEARTBEAT_INTERVAL": "1"}
Status = ListenerConnection.Status


@pytest.fixture
def bad_app(lark) -> Application:
    """An application whose secret in larkauth is not the one Feishu knows."""
    lark.sandbox.add_app(BAD_APP, RIGHT_SECRET)
    return Application.objects.create(app_id=BAD_APP, app_secret=WRONG_SECRET)


def row(app: Application, status: str | None = None) -> ListenerConnection | None:
    rows = ListenerConnection.objects.filter(app=app)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.first()


def heartbeat(app: Application) -> datetime:
    return ListenerConnection.objects.get(app=app).last_heartbeat_at


def test_a_refused_application_backs_off_while_the_others_keep_working(lark, start, bad_app):
    metrics_port = free_port()

    listener = start("--metrics-port", str(metrics_port), **FAST)

    # The refused application is reported, in admin's table and in the metrics.
    refused = wait_for(lambda: row(bad_app), what="the bad application's status")
    assert refused.status == Status.BACKING_OFF, listener.output()[-3000:]
    assert refused.failures == 1
    assert refused.last_error.startswith("Feishu refused the connection: ClientException: 10014")
    wait_for(lambda: row(lark.app, Status.CONNECTED), what="the good application's status")
    bad = {"app_id": BAD_APP}
    assert scrape(metrics_port, "larkauth_websocket_connection_status", **bad) == 0
    assert scrape(metrics_port, "larkauth_websocket_reconnects_total", **bad) == 1
    assert scrape(metrics_port, "larkauth_websocket_connection_status", app_id="cli_test_app") == 1
    output = listener.output()
    assert "Long connection of cli_bad_app failed (1 in a row)" in output
    assert WRONG_SECRET not in output

    # The other application's clicks are still acted on.
    session = open_card(lark, lark.sandbox.alice)
    click = decline_over_ws(lark, session)
    assert click["ok"] is True, (click, listener.output()[-3000:])
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert listener.process.poll() is None

    # Fixed in admin: connected within the rescan, not after its back-off (30 s).
    bad_app.app_secret = RIGHT_SECRET
    bad_app.save()
    assert lark.sandbox.ws_connections(BAD_APP, min_count=1, wait_ms=CONNECT_WAIT_MS)
    fixed = wait_for(lambda: row(bad_app, Status.CONNECTED), what="the fixed application's status")
    assert (fixed.failures, fixed.last_error) == (0, "")
    assert scrape(metrics_port, "larkauth_websocket_connection_status", **bad) == 1


def test_it_records_a_heartbeat_and_stops_at_once_on_sigterm_while_one_app_backs_off(
    lark, start, bad_app
):
    listener = start(**FAST)
    connected = wait_for(lambda: row(lark.app, Status.CONNECTED), what="the good application")
    wait_for(lambda: row(bad_app), what="the bad application's status")

    wait_for(
        lambda: heartbeat(lark.app) > connected.last_heartbeat_at,
        timeout=5,
        what="a heartbeat",
    )
    started = time.monotonic()
    returncode = listener.stop(signal.SIGTERM)  # the bad app waits 30 s before its retry

    assert returncode == 0, listener.output()[-3000:]
    assert time.monotonic() - started < 5
    assert {r.status for r in ListenerConnection.objects.all()} == {Status.STOPPED}
    assert {r.listener_id.rsplit(":", 1)[1] for r in ListenerConnection.objects.all()} == {
        str(listener.process.pid)
    }


def test_following_all_applications_it_keeps_running_when_one_has_failed(lark, start, bad_app):
    listener = start(WEBSOCKET_MAX_RECONNECT_RETRIES="1", **FAST)

    failed = wait_for(lambda: row(bad_app, Status.FAILED), what="the bad application to fail")
    time.sleep(2.5)  # a couple of rescans, when a process started with --app would give up

    assert listener.process.poll() is None, listener.output()[-3000:]
    assert "10014" in failed.last_error
    assert row(lark.app, Status.CONNECTED) is not None
    assert len(lark.sandbox.ws_connections(lark.app.app_id)) == 1


@pytest.fixture
def database(db) -> Iterator[Callable[[bool], None]]:
    """`database(up=False)` ends every other connection to the test database and refuses
    new ones; `database(up=True)` lets them in again (so does the end of the test)."""
    db = connection.settings_dict
    name = db["NAME"]

    def switch(up: bool) -> None:
        # From the server's maintenance database: a database cannot lock itself out.
        with psycopg.connect(
            dbname="postgres",
            user=db["USER"],
            password=db["PASSWORD"] or None,
            host=db["HOST"],
            port=db["PORT"] or None,
            autocommit=True,
        ) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(up).lower()}')
            if not up:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> %s",
                    [name, test_backend],
                )

    with connection.cursor() as cursor:  # the test's own connection stays
        cursor.execute("SELECT pg_backend_pid()")
        (test_backend,) = cursor.fetchone()
    yield switch
    switch(True)


def test_a_database_outage_does_not_stop_the_listener(lark, start, database):
    listener = start(**FAST)
    wait_for(lambda: row(lark.app, Status.CONNECTED), what="the application's status")

    database(up=False)
    wait_for(
        lambda: "Could not record the long connections' status" in listener.output(),
        what="the failed status write to be logged",
    )
    wait_for(
        lambda: "Could not read the applications, keeping the connections" in listener.output(),
        what="the failed rescan to be logged",
    )
    database(up=True)
    back_at = timezone.now()

    assert listener.process.poll() is None, listener.output()[-3000:]
    assert len(lark.sandbox.ws_connections(lark.app.app_id)) == 1
    wait_for(lambda: heartbeat(lark.app) > back_at, what="the heartbeat to resume")
    # The line is logged just after the heartbeat commits.
    wait_for(
        lambda: "Recording the long connections' status again" in listener.output(),
        what="the recovery to be logged",
    )
    session = open_card(lark, lark.sandbox.alice)
    click = decline_over_ws(lark, session)
    assert click["ok"] is True, (click, listener.output()[-3000:])
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
