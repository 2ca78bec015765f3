"""`manage.py run_ws_listener` as a real process, the real lark-oapi client inside it, against
the sandbox's long-connection server and the test database."""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from sessions_app.models import (
    Application,
    ProcessedEvent,
    SessionState,
    TokenEvent,
    UserAuthSession,
)
from tests.events.helpers import (
    CONNECT_WAIT_MS,
    card_action,
    card_title,
    decline,
    decline_over_ws,
    free_port,
    open_card,
    post,
    scrape,
    signed_request,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("frame_type", ["event", "card"])
def test_it_declines_through_an_event_or_a_card_frame(lark, listener, frame_type):
    # lark-oapi 1.7.5 alone drops `card` frames without an ack (tests/sandbox): the
    # listener's client handles them like `event` frames.
    session = open_card(lark, lark.sandbox.alice)

    click = decline_over_ws(lark, session, frame_type=frame_type)

    assert click["ok"] is True, (click, listener.output()[-3000:])
    assert click["toast"]["type"] == "success"
    assert click["card_updated"] is False  # a toast only; the card is patched instead
    [recorded] = lark.sandbox.ws_acks(message_id=click["ws_message_id"])
    assert recorded["frame_type"] == frame_type
    assert recorded["ack"]["code"] == 200
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert card_title(lark.sandbox, session.message_id).startswith("已拒绝")
    assert TokenEvent.objects.get(session=session, kind="rejected").actor == (
        f"user:{session.open_id}"
    )
    assert ProcessedEvent.objects.get().channel == "ws"


def test_the_same_event_twice_and_on_both_channels_is_acted_on_once(lark, listener):
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session, event_id="ev-" + uuid.uuid4().hex)
    app_id = lark.app.app_id

    first = lark.sandbox.ws_push(app_id, event, wait_ack_ms=5000)
    again = lark.sandbox.ws_push(app_id, event, frame_type="card", wait_ack_ms=5000)
    body, headers, _ = signed_request(event)
    over_http = post(lark.client, body, headers)

    assert first["ack"]["data"]["toast"]["type"] == "success"
    assert again["ack"]["code"] == 200
    assert again["ack"]["data"]["toast"]["content"] == "已处理 · Already handled"
    assert over_http.status_code == 200
    assert over_http.json()["toast"]["content"] == "已处理 · Already handled"
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert len(lark.sandbox.calls(api="message_patch")) == 1
    assert ProcessedEvent.objects.get().event_id == event["header"]["event_id"]


def test_concurrent_deliveries_of_one_event_act_once(lark, listener):
    # The listener handles frames in parallel threads: all but one wait on the unique
    # insert of the first, then find it done.
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session, event_id="ev-" + uuid.uuid4().hex)

    def push(_: int) -> dict:
        return lark.sandbox.ws_push(lark.app.app_id, event, wait_ack_ms=5000)["ack"]

    with ThreadPoolExecutor(6) as pool:
        acks = list(pool.map(push, range(6)))

    assert [ack["code"] for ack in acks] == [200] * 6
    toasts = sorted(ack["data"]["toast"]["type"] for ack in acks)
    assert toasts == ["info"] * 5 + ["success"]
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert len(lark.sandbox.calls(api="message_patch")) == 1


def test_a_forwarded_card_clicked_by_someone_else_changes_nothing(lark, listener):
    session = open_card(lark, lark.sandbox.alice)
    lark.sandbox.clear_calls()

    pushed = lark.sandbox.ws_push(
        lark.app.app_id, decline(session, lark.sandbox.bob["open_id"]), wait_ack_ms=5000
    )

    assert pushed["ack"]["code"] == 200
    toast = pushed["ack"]["data"]["toast"]
    assert toast["type"] == "warning"
    assert "Only the person this card was sent to" in toast["content"]
    session.refresh_from_db()
    assert session.state == SessionState.PENDING
    assert lark.sandbox.calls(api="message_patch") == []
    assert not TokenEvent.objects.filter(kind="rejected").exists()


def test_after_a_dropped_connection_it_reconnects_and_handles_the_next_event(lark, start):
    metrics_port = free_port()
    listener = start("--metrics-port", str(metrics_port))
    app_id = lark.app.app_id
    [before] = lark.sandbox.ws_connections(app_id)
    session = open_card(lark, lark.sandbox.alice)
    up = {"app_id": app_id}
    wait_for(lambda: scrape(metrics_port, "larkauth_websocket_connection_status", **up) == 1)

    assert lark.sandbox.ws_drop(app_id) == 1
    [after] = lark.sandbox.ws_connections(app_id, min_count=1, wait_ms=CONNECT_WAIT_MS)
    pushed = lark.sandbox.ws_push(app_id, decline(session), wait_ack_ms=5000)

    assert after["conn_id"] != before["conn_id"]
    assert pushed["ack"]["code"] == 200
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert "Long connection of cli_test_app was lost" in listener.output()
    assert scrape(metrics_port, "larkauth_websocket_reconnects_total", **up) == 1
    assert scrape(metrics_port, "larkauth_websocket_connection_status", **up) == 1


def test_sigterm_finishes_the_event_at_hand_and_exits_0(lark, listener):
    session = open_card(lark, lark.sandbox.alice)

    with transaction.atomic():
        # The test holds the session's row: SIGTERM arrives while the event is handled.
        UserAuthSession.objects.select_for_update().get(pk=session.pk)
        pushed = lark.sandbox.ws_push(lark.app.app_id, decline(session))
        wait_for(_a_backend_waits_on_a_lock, what="the handler to wait for the session row")
        listener.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the listener is stopping, the event still at hand
    returncode = listener.process.wait(timeout=20)

    assert returncode == 0, listener.output()[-3000:]
    [recorded] = lark.sandbox.ws_acks(message_id=pushed["message_id"])
    assert recorded["ack"]["code"] == 200
    assert recorded["ack"]["data"]["toast"]["type"] == "success"
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert lark.sandbox.ws_connections(lark.app.app_id) == []


def test_with_app_it_exits_non_zero_once_its_reconnection_attempts_run_out(lark, start):
    listener = start(
        "--app",
        lark.app.app_id,
        WEBSOCKET_MAX_RECONNECT_RETRIES="2",
        WEBSOCKET_APPS_RESCAN_SECONDS="1",
    )
    lark.sandbox.add_fault("ws_connect", code=1, times=-1)  # every handshake refused
    lark.sandbox.clear_calls()

    lark.sandbox.ws_drop(lark.app.app_id)
    returncode = listener.process.wait(timeout=30)

    assert returncode == 1
    output = listener.output()
    assert "Giving up on the long connections: cli_test_app, failed attempts in a row: 2" in (
        output
    ), output[-3000:]
    assert len(lark.sandbox.calls(api="ws_connect")) == 2


def test_with_app_it_exits_non_zero_once_feishu_refused_it_too_often(lark, start):
    lark.sandbox.add_fault("ws_connect", code=1000040350)  # too many connections: refused

    listener = start(
        "--app",
        lark.app.app_id,
        wait=False,
        WEBSOCKET_MAX_RECONNECT_RETRIES="1",
        WEBSOCKET_APPS_RESCAN_SECONDS="1",
    )

    assert listener.process.wait(timeout=30) == 1
    assert "Feishu refused the connection: ClientException: 514" in listener.output()


def test_a_click_whose_listener_was_killed_mid_event_is_acted_on_once_redelivered(lark, start):
    listener = start()
    app_id = lark.app.app_id
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session, event_id="ev-" + uuid.uuid4().hex)

    with transaction.atomic():
        # The test holds the session's row: the handler stops inside its own transaction,
        # after claiming the event, and the listener is killed there.
        UserAuthSession.objects.select_for_update().get(pk=session.pk)
        first = lark.sandbox.ws_push(app_id, event)
        wait_for(_a_backend_waits_on_a_lock, what="the handler to wait for the session row")
        listener.process.kill()
        listener.process.wait(timeout=10)
    wait_for(lambda: lark.sandbox.ws_connections(app_id) == [], what="the connection to close")
    start(wait=False)
    assert lark.sandbox.ws_connections(app_id, min_count=1, wait_ms=CONNECT_WAIT_MS)
    # Without an ack Feishu delivers the event again, to a live client; the sandbox does
    # not redeliver by itself, so the test does.
    again = lark.sandbox.ws_push(app_id, event, wait_ack_ms=5000)

    [unanswered] = lark.sandbox.ws_acks(message_id=first["message_id"])
    assert unanswered["ack"] is None
    assert again["ack"]["code"] == 200
    assert again["ack"]["data"]["toast"]["type"] == "success"
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert ProcessedEvent.objects.filter(event_id=event["header"]["event_id"]).count() == 1


def _a_backend_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh rows inside a transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        (waiting,) = cursor.fetchone()
    return bool(waiting)


def test_it_follows_applications_added_and_deactivated_in_admin(lark, start):
    listener = start(WEBSOCKET_APPS_RESCAN_SECONDS="1")
    lark.sandbox.add_app("cli_second_app", "second-app-secret")
    Application.objects.create(app_id="cli_second_app", app_secret="second-app-secret")

    # Connected without a restart, and its events are handled.
    connected = lark.sandbox.ws_connections("cli_second_app", min_count=1, wait_ms=CONNECT_WAIT_MS)
    assert len(connected) == 1, listener.output()[-3000:]
    event_id = "ev-" + uuid.uuid4().hex
    click = card_action("ou_someone", {"action": "decline", "session_id": str(uuid.uuid4())})
    click["header"]["event_id"] = event_id
    pushed = lark.sandbox.ws_push("cli_second_app", click, wait_ack_ms=5000)
    assert pushed["ack"]["code"] == 200, listener.output()[-3000:]
    assert ProcessedEvent.objects.get(event_id=event_id).channel == "ws"

    # Deactivated: its connection is closed, the other one stays.
    Application.objects.filter(pk=lark.app.pk).update(is_active=False)
    wait_for(
        lambda: lark.sandbox.ws_connections(lark.app.app_id) == [],
        what="the deactivated application's connection to close",
    )
    assert len(lark.sandbox.ws_connections("cli_second_app")) == 1
    assert listener.process.poll() is None
