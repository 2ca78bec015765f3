"""Feishu failing, slow or misconfigured under the running stack (gunicorn with the
Dockerfile's command line, a Celery worker, the sandbox): README "What happens when…"."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone

from sessions_app.models import Application, SessionState, UserAuthSession
from tests.events.helpers import decline, signed_request
from tests.flow.test_token_refresh import _make_expiring

pytestmark = pytest.mark.slow

LOAD = 16  # prompts, and as many long-polls, while Feishu hangs


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_hanging_message_api_does_not_slow_health_checks_or_token_reads(
    stack, authorized
) -> None:
    """16 token requests that prompt a card and 16 that long-poll, while Feishu's message API
    hangs: /healthz and an authorized user's token still answer within a second."""
    stack.sandbox.add_fault("message_create", latency_ms=6000, times=-1)

    def prompt(n: int) -> int:
        body = {"open_id": f"ou_load_prompt_{n}", "prompt": True}
        return stack.post_token(timeout=30, **body).status_code

    def long_poll(n: int) -> int:
        body = {"open_id": f"ou_load_wait_{n}", "prompt": True, "wait": 20}
        return stack.post_token(timeout=40, **body).status_code

    with ThreadPoolExecutor(max_workers=2 * LOAD) as pool:
        waits = [pool.submit(long_poll, n) for n in range(LOAD)]
        prompts = [pool.submit(prompt, n) for n in range(LOAD)]
        time.sleep(1.0)  # every request is in; the card sends hang at Feishu
        slowest = 0.0
        for _ in range(5):
            for path, send in (
                ("/healthz", lambda: stack.get("/healthz", timeout=10)),
                ("token", lambda: stack.post_token(timeout=10, open_id=authorized.open_id)),
            ):
                started = time.monotonic()
                response = send()
                elapsed = time.monotonic() - started
                assert response.status_code == 200, (path, response.text)
                slowest = max(slowest, elapsed)
            time.sleep(0.1)
        assert [future.result() for future in prompts] == [404] * LOAD
        assert all(future.result() == 404 for future in waits)
    assert slowest < 1.0, f"slowest answer {slowest:.2f}s\n{stack.output()}"


@pytest.mark.parametrize(
    ("fault", "state", "tokens_kept", "flagged"),
    [
        ({"code": 20002}, SessionState.COMPLETED, True, True),  # app secret reset
        ({"http_status": 403, "html": True}, SessionState.COMPLETED, True, True),  # a proxy
        ({"code": 20010}, SessionState.COMPLETED, True, False),  # user outside availability
        ({"http_status": 503}, SessionState.COMPLETED, True, False),  # Feishu down
        ({"code": 20064}, SessionState.NEEDS_REAUTH, False, False),  # the user revoked
    ],
    ids=["app-misconfigured", "proxy-html", "user-unavailable", "transient", "grant-dead"],
)
def test_the_refresh_sweep_on_the_worker_handles_each_failure_class(
    stack, authorized, fault, state, tokens_kept, flagged
) -> None:
    _make_expiring(authorized)
    UserAuthSession.objects.filter(pk=authorized.pk).update(
        refresh_token_expires_at=timezone.now() + timedelta(hours=1),
        last_refreshed_at=timezone.now() - timedelta(days=6),
    )
    stack.sandbox.add_fault("oauth_refresh", times=-1, **fault)

    stack.workers.send("sessions_app.tasks.refresh_expiring_tokens")
    stack.workers.wait_for("sessions_app.tasks.refresh_expiring_tokens", 1)

    authorized.refresh_from_db()
    assert authorized.state == state
    assert (authorized.refresh_token is not None) is tokens_kept
    app = Application.objects.get(pk=authorized.app_id)
    assert bool(app.attention_reason) is flagged
    token = stack.post_token(open_id=authorized.open_id)
    if tokens_kept:  # the still-valid token is served
        assert token.status_code == 200, token.text
        assert token.json()["access_token"] == authorized.access_token
    else:
        assert token.status_code == 404
        assert token.json()["code"] == "authorization_required"


def _callback_url(stack, open_id: str) -> str:
    session = stack.api("POST", "/auth-sessions/", {"open_id": open_id, "method": "link"})
    assert session.status_code == 201, session.text
    start = requests.get(session.json()["authorize_url"], allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    consent = requests.post(
        start.headers["Location"],
        data={"open_id": open_id, "decision": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    callback = urlsplit(consent.headers["Location"])
    return f"{callback.path}?{callback.query}"


@pytest.mark.parametrize("api", ["oauth_token", "user_info"])
@pytest.mark.parametrize(
    "fault",
    [{"http_status": 503}, {"http_status": 429}, {"drop_connection": True}],
    ids=["5xx", "429", "dropped"],
)
def test_a_failing_exchange_or_user_info_fails_the_session_cleanly(stack, api, fault) -> None:
    alice = stack.sandbox.alice
    callback = _callback_url(stack, alice["open_id"])
    stack.sandbox.add_fault(api, times=-1, **fault)

    page = stack.get(callback)

    assert page.status_code in (502, 503), page.text[:500]
    assert "text/html" in page.headers["Content-Type"]
    session = UserAuthSession.objects.get(open_id=alice["open_id"])
    assert session.state == SessionState.FAILED
    assert (session.access_token, session.refresh_token) == (None, None)
    assert not UserAuthSession.objects.filter(state=SessionState.COMPLETED).exists()


def test_a_card_send_that_keeps_failing_is_retried_by_the_worker_then_fails_the_session(
    stack,
) -> None:
    alice = stack.sandbox.alice
    stack.sandbox.add_fault("message_create", http_status=503, times=-1)

    response = stack.post_token(open_id=alice["open_id"], prompt=True)

    assert response.status_code == 404  # answered at once; the worker does the sending
    assert _wait_for(
        lambda: UserAuthSession.objects.filter(
            open_id=alice["open_id"], state=SessionState.FAILED
        ).exists(),
        timeout=90,
    ), stack.output()
    assert len(stack.sandbox.calls(api="message_create")) > 3  # retried by the task

    stack.sandbox.clear_faults()
    stack.post_token(open_id=alice["open_id"], prompt=True)
    assert _wait_for(lambda: len(stack.sandbox.messages(open_id=alice["open_id"])) == 1)


def test_a_card_click_is_answered_at_once_while_the_patch_hangs(stack) -> None:
    alice = stack.sandbox.alice
    stack.post_token(open_id=alice["open_id"], prompt=True)
    assert _wait_for(
        lambda: (
            UserAuthSession.objects.filter(open_id=alice["open_id"]).exclude(message_id="").exists()
        )
    )
    session = UserAuthSession.objects.get(open_id=alice["open_id"])
    stack.sandbox.add_fault("message_patch", latency_ms=8000, times=-1)
    body, headers, _ = signed_request(decline(session))

    started = time.monotonic()
    answer = stack.post("/lark/events/", data=body, headers=headers, timeout=10)
    elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text
    assert answer.json()["toast"]["type"] == "success"
    assert elapsed < 3  # Feishu's deadline for a card callback
    session.refresh_from_db()
    assert session.state == SessionState.REJECTED
