"""What the card's buttons do, through the dispatcher (over HTTP: in-process and fast; the
WebSocket channel shares every line of it, see test_ws_listener)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from sessions_app import services
from sessions_app.models import ProcessedEvent, SessionState, TokenEvent, UserAuthSession
from tests.events.helpers import (
    card_action,
    card_title,
    decline,
    open_card,
    post,
    request_again,
    signed_request,
)

pytestmark = pytest.mark.django_db


def click(lark, event: dict[str, Any]) -> dict[str, Any]:
    body, headers, _ = signed_request(event)
    response = post(lark.client, body, headers)
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = response.json()
    assert set(answer) == {"toast"}  # never a card body
    return answer["toast"]


def expire(session: UserAuthSession) -> None:
    UserAuthSession.objects.filter(pk=session.pk).update(expires_at=timezone.now())
    services.sessions_expire_stale()


# --- Decline ------------------------------------------------------------------------------


def test_declining_twice_acts_once_and_says_so(lark):
    session = open_card(lark, lark.sandbox.alice)

    first = click(lark, decline(session))
    second = click(lark, decline(session))  # a second click: a new event

    assert first["type"] == "success"
    assert second["content"] == "该请求已被拒绝 · This request was already declined"
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert ProcessedEvent.objects.count() == 2


def test_declining_a_request_past_its_time_expires_it(lark):
    session = open_card(lark, lark.sandbox.alice)
    UserAuthSession.objects.filter(pk=session.pk).update(expires_at=timezone.now())

    toast = click(lark, decline(session))

    assert toast["content"] == "该请求已过期 · This request has expired"
    session.refresh_from_db()
    assert session.state == SessionState.EXPIRED
    assert card_title(lark.sandbox, session.message_id).startswith("已过期")


def test_declining_after_authorizing_says_already_authorized(lark):
    alice = lark.sandbox.alice
    session_id = lark.open_card_session(alice["open_id"])
    lark.authorize(session_id, alice["open_id"])
    session = UserAuthSession.objects.get(pk=session_id)

    toast = click(lark, decline(session))

    assert toast["content"] == "你已完成授权 · You have already authorized"
    session.refresh_from_db()
    assert session.state == SessionState.COMPLETED


def test_a_forwarded_card_declined_by_someone_else_changes_nothing(lark):
    session = open_card(lark, lark.sandbox.alice)

    toast = click(lark, decline(session, lark.sandbox.bob["open_id"]))

    assert toast["type"] == "warning"
    session.refresh_from_db()
    assert session.state == SessionState.PENDING
    assert len(lark.sandbox.message(session.message_id)["history"]) == 1  # never patched


def test_an_action_value_sent_as_a_json_string_works(lark):
    session = open_card(lark, lark.sandbox.alice)
    value = json.dumps({"action": "decline", "session_id": str(session.pk)})

    toast = click(lark, card_action(session.open_id, value, session.message_id))

    assert toast["type"] == "success"
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ({"action": "approve", "session_id": "x"}, "This button is not supported"),
        ({"action": "decline", "session_id": "not-a-uuid"}, "no longer exists"),
        ({"action": "decline"}, "no longer exists"),
        ("not json", "This button is not supported"),
    ],
)
def test_an_unusable_click_gets_a_toast_and_changes_nothing(lark, value, content):
    session = open_card(lark, lark.sandbox.alice)

    toast = click(lark, card_action(session.open_id, value, session.message_id))

    assert content in toast["content"]
    session.refresh_from_db()
    assert session.state == SessionState.PENDING


def test_a_session_of_another_app_is_not_found(lark):
    session = open_card(lark, lark.sandbox.alice)
    other = type(lark.app).objects.create(app_id="cli_other", app_secret="s")
    UserAuthSession.objects.filter(pk=session.pk).update(app=other)

    toast = click(lark, decline(session))

    assert "no longer exists" in toast["content"]


def test_a_handler_failure_leaves_the_event_unhandled_for_the_redelivery(lark, monkeypatch):
    session = open_card(lark, lark.sandbox.alice)
    body, headers, _ = signed_request(decline(session))
    real = services.authorization_reject

    def reject_then_fail(**kwargs: Any) -> UserAuthSession:
        real(**kwargs)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "authorization_reject", reject_then_fail)
    failed = post(lark.client, body, headers)
    monkeypatch.setattr(services, "authorization_reject", real)
    redelivered = post(lark.client, body, headers)

    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_error"
    assert redelivered.status_code == 200
    assert redelivered.json()["toast"]["type"] == "success"
    # The failed attempt's writes were rolled back with its dedupe row.
    assert TokenEvent.objects.filter(session=session, kind="rejected").count() == 1
    assert ProcessedEvent.objects.count() == 1


def test_card_actions_and_events_are_counted(lark):
    session = open_card(lark, lark.sandbox.alice)
    event = decline(session, event_id="ev-counted")
    before = _samples()

    click(lark, event)
    click(lark, event)

    after = _samples()
    assert after["decline"] - before["decline"] == 1
    assert after["handled"] - before["handled"] == 1
    assert after["duplicate"] - before["duplicate"] == 1


def _samples() -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    card = {"type": "card.action.trigger"}
    return {
        "decline": value("larkauth_card_actions_total", action="decline"),
        "handled": value("larkauth_events_total", outcome="handled", **card),
        "duplicate": value("larkauth_events_total", outcome="duplicate", **card),
    }


# --- Request again ------------------------------------------------------------------------


@pytest.mark.parametrize("ended", ["expired", "declined"])
def test_request_again_puts_a_new_request_on_the_same_card(lark, ended):
    session = open_card(lark, lark.sandbox.alice)
    if ended == "expired":
        expire(session)
    else:
        click(lark, decline(session))

    toast = click(lark, request_again(session))

    assert toast["type"] == "success"
    new = UserAuthSession.objects.get(state=SessionState.PENDING)
    assert new.pk != session.pk
    assert new.message_id == session.message_id
    assert len(lark.sandbox.messages(open_id=session.open_id)) == 1  # no second message
    card = json.dumps(lark.sandbox.message(session.message_id)["content"])
    assert f"/oauth/start/{new.pk}" in card
    assert str(new.pk) in card  # its Decline button acts on the new session
    assert TokenEvent.objects.filter(session=new, kind="card_sent").exists()
    # The new request works like any other: Decline on it declines the new session.
    assert click(lark, decline(new))["type"] == "success"


def test_request_again_twice_opens_one_session(lark):
    session = open_card(lark, lark.sandbox.alice)
    expire(session)

    first = click(lark, request_again(session))
    second = click(lark, request_again(session))

    assert first["type"] == "success"
    assert second["content"] == "已重新发起授权请求 · A new request is already on the card"
    assert UserAuthSession.objects.filter(state=SessionState.PENDING).count() == 1


def test_request_again_by_someone_else_changes_nothing(lark):
    session = open_card(lark, lark.sandbox.alice)
    expire(session)

    toast = click(lark, request_again(session, lark.sandbox.bob["open_id"]))

    assert toast["type"] == "warning"
    assert not UserAuthSession.objects.filter(state=SessionState.PENDING).exists()


def test_request_again_on_an_open_request_changes_nothing(lark):
    session = open_card(lark, lark.sandbox.alice)

    toast = click(lark, request_again(session))

    assert "still open" in toast["content"]
    assert UserAuthSession.objects.count() == 1


def test_request_again_is_rate_limited(lark, settings):
    settings.AUTH_REQUEST_RATE_LIMIT = 1  # the expired session was opened this minute
    session = open_card(lark, lark.sandbox.alice)
    expire(session)

    toast = click(lark, request_again(session))

    assert toast["type"] == "warning"
    assert "try again in" in toast["content"]
    assert UserAuthSession.objects.count() == 1


def test_request_again_when_another_card_is_open_points_to_it(lark):
    alice = lark.sandbox.alice
    session = open_card(lark, alice)
    expire(session)
    open_card(lark, alice)

    toast = click(lark, request_again(session))

    assert "another card" in toast["content"]
    assert UserAuthSession.objects.filter(state=SessionState.PENDING).count() == 1


def test_request_again_answers_before_the_card_is_updated_and_keeps_the_request(lark):
    """The patch happens after the click is answered (services/delivery.py): a message API
    that fails does not undo the new request, and a transient failure is retried."""
    session = open_card(lark, lark.sandbox.alice)
    expire(session)
    lark.sandbox.add_fault("message_patch", http_status=503, times=1)

    toast = click(lark, request_again(session))

    assert toast["type"] == "success"
    new = UserAuthSession.objects.get(state=SessionState.PENDING)
    assert f"/oauth/start/{new.pk}" in json.dumps(lark.sandbox.message(session.message_id))
    assert len(lark.sandbox.calls(api="message_patch")) >= 2  # failed once, then patched
