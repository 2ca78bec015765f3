"""The card is sent and updated after the state change commits (services/delivery.py); it
counts only once Feishu delivered it; expiry never takes a session whose callback runs."""

from __future__ import annotations

import threading
from datetime import timedelta

from django.db import connections
from django.test import Client
from django.utils import timezone

from larkauth.feishu.client import RETRIES
from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from sessions_app.services.delivery import card_send
from sessions_app.services.sessions import sessions_expire_all_stale
from sessions_app.tasks import CARD_RETRIES


def test_a_card_feishu_never_delivered_does_not_count_and_the_next_prompt_sends_one(lark):
    alice = lark.sandbox.alice
    lark.sandbox.add_fault("message_create", http_status=503, times=-1)

    first = lark.request_token(open_id=alice["open_id"], prompt=True)

    assert first.status_code == 404
    failed = UserAuthSession.objects.get(open_id=alice["open_id"])
    assert failed.state == SessionState.FAILED
    assert failed.failure_reason == "card_send_failed"
    assert failed.message_id == ""
    # The task's first run and its retries, each one client call with its own retries.
    tries = (CARD_RETRIES + 1) * RETRIES.attempts
    assert len(lark.sandbox.calls(api="message_create")) == tries
    assert lark.sandbox.messages(open_id=alice["open_id"]) == []

    lark.sandbox.clear_faults()
    second = lark.request_token(open_id=alice["open_id"], prompt=True)

    assert second.status_code == 404
    assert len(lark.sandbox.messages(open_id=alice["open_id"])) == 1
    delivered = UserAuthSession.objects.get(state=SessionState.PENDING)
    assert delivered.message_id
    assert TokenEvent.objects.filter(session=delivered, kind="card_sent").count() == 1


def test_a_user_outside_the_apps_availability_fails_the_session_without_retries(lark):
    lark.sandbox.add_fault("message_create", code=230013, times=-1)

    response = lark.request_token(open_id=lark.sandbox.alice["open_id"], prompt=True)

    assert response.status_code == 404  # authorization_required, not a 502
    session = UserAuthSession.objects.get()
    assert session.state == SessionState.FAILED
    assert session.failure_reason == "user_unreachable"
    assert len(lark.sandbox.calls(api="message_create")) == 1


def test_a_delivered_card_is_not_sent_again_by_a_repeated_task(lark):
    session_id = lark.open_card_session(lark.sandbox.alice["open_id"])

    card_send(session_id, None)  # the task redelivered after a lost acknowledgement

    assert len(lark.sandbox.messages(open_id=lark.sandbox.alice["open_id"])) == 1
    assert TokenEvent.objects.filter(kind="card_sent").count() == 1


def test_expiry_does_not_take_a_session_whose_callback_is_exchanging_the_code(lark):
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    callback = lark.consent(session_id, alice["open_id"])
    # Feishu takes its time with the code; meanwhile the session's time runs out.
    lark.sandbox.add_fault("oauth_token", latency_ms=4000)
    runs_out = timezone.now() + timedelta(seconds=3)
    UserAuthSession.objects.filter(pk=session_id).update(expires_at=runs_out)
    answers: list[int] = []

    def browser() -> None:
        try:
            answers.append(Client().get(callback).status_code)
        finally:
            connections.close_all()

    thread = threading.Thread(target=browser)
    thread.start()
    try:
        consumed = False
        while not consumed and timezone.now() < runs_out:
            consumed = UserAuthSession.objects.filter(
                pk=session_id, pkce_verifier__isnull=True
            ).exists()
            threading.Event().wait(0.05)
        assert consumed, "the callback did not consume the state before the session ran out"
        # The beat job runs once the session's own time is over, the exchange still in flight.
        threading.Event().wait(max(0.0, (runs_out - timezone.now()).total_seconds()) + 0.2)
        expired = sessions_expire_all_stale()
    finally:
        thread.join(15)

    assert expired == 0
    assert answers == [200]
    session = UserAuthSession.objects.get(pk=session_id)
    assert session.state == SessionState.COMPLETED
    message = lark.sandbox.message(session.message_id)
    assert "Authorized" in str(message["content"]) or "已授权" in str(message["content"])
