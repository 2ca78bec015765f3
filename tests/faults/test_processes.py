"""Processes of the running stack killed or stopped: a worker SIGKILLed in the middle of a
refresh leaves a consistent, unlocked authorization; SIGTERM stops gunicorn, the Celery
worker (after the task at hand) and beat with exit code 0."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import OperationalError, transaction

from sessions_app.models import SessionState, UserAuthSession
from tests.jobs.helpers import warm_due

pytestmark = pytest.mark.slow

SWEEP = "sessions_app.tasks.refresh_expiring_tokens"
STOP_BOUND = 30.0  # gunicorn's graceful timeout; the others stop far sooner


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


def _locked(authorization: UserAuthSession) -> bool:
    try:
        with transaction.atomic():
            UserAuthSession.objects.select_for_update(nowait=True).get(pk=authorization.pk)
    except OperationalError:  # "could not obtain lock on row"
        return True
    return False


def _refresh_started(stack) -> bool:
    return bool(stack.sandbox.calls(api="oauth_refresh"))


def test_it_leaves_the_authorization_consistent_and_unlocked_when_a_worker_dies_mid_refresh(
    start_stack, authorized
) -> None:
    stack = start_stack(web=False, worker=True)
    warm_due(authorized)  # the sweep refreshes it; its access token is still valid
    before = UserAuthSession.objects.get(pk=authorized.pk)
    # Feishu answers late: the worker is killed while it waits, holding the row lock.
    stack.sandbox.add_fault("oauth_refresh", latency_ms=30_000)
    stack.workers.send(SWEEP)
    _wait_for(lambda: _refresh_started(stack), 30, "the sweep's refresh call")
    assert _locked(authorized)

    # The worker and its pool process, as `docker kill` or a lost host would.
    os.killpg(stack.worker.process.pid, signal.SIGKILL)
    stack.worker.process.wait(timeout=10)

    _wait_for(lambda: not _locked(authorized), 5, "the row lock to be released")
    after = UserAuthSession.objects.get(pk=authorized.pk)
    assert after.state == SessionState.COMPLETED
    assert (after.access_token, after.refresh_token, after.version) == (
        before.access_token,
        before.refresh_token,
        before.version,
    )
    assert not after.events.filter(kind="refreshed").exists()
    # Feishu never answered that call, so the stored refresh token is still the live one:
    # the next token request takes the lock and refreshes.
    response = stack.lark.request_token(open_id=authorized.open_id)
    assert response.status_code == 200, response.content
    after.refresh_from_db()
    assert response.json()["access_token"] == after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token


def test_it_stops_gunicorn_with_exit_code_0_on_sigterm(start_stack, authorized) -> None:
    stack = start_stack()
    assert stack.post_token(open_id=authorized.open_id).status_code == 200

    started = time.monotonic()
    stack.web.signal(signal.SIGTERM)
    code = stack.web.wait(timeout=STOP_BOUND + 10)

    assert code == 0, stack.web.output()[-3000:]
    assert time.monotonic() - started < STOP_BOUND


def test_it_stops_the_celery_worker_with_exit_code_0_on_sigterm_after_the_refresh_at_hand(
    start_stack, authorized
) -> None:
    stack = start_stack(web=False, worker=True)
    warm_due(authorized)
    before = UserAuthSession.objects.get(pk=authorized.pk)
    stack.sandbox.add_fault("oauth_refresh", latency_ms=1500)
    stack.workers.send(SWEEP)
    _wait_for(lambda: _refresh_started(stack), 30, "the sweep's refresh call")

    started = time.monotonic()
    stack.worker.process.send_signal(signal.SIGTERM)  # what `docker stop` sends
    code = stack.worker.process.wait(timeout=STOP_BOUND)

    assert code == 0, stack.worker.text()[-3000:]
    assert time.monotonic() - started < 15
    after = UserAuthSession.objects.get(pk=authorized.pk)
    assert after.state == SessionState.COMPLETED
    assert after.refresh_token != before.refresh_token, "the rotated refresh token was stored"
    assert after.events.filter(kind="refreshed").count() == 1


def test_it_stops_celery_beat_with_exit_code_0_on_sigterm(start_stack) -> None:
    stack = start_stack(web=False)
    beat = stack.start_beat()
    _wait_for(lambda: "Starting..." in beat.output(), 30, "beat to start")
    # Started: a SIGTERM while beat still reads its schedules from the database can be
    # lost (celery 5.7 with django-celery-beat), and beat then runs on.
    beat.wait_idle()

    started = time.monotonic()
    beat.signal(signal.SIGTERM)
    code = beat.wait(timeout=STOP_BOUND)

    assert code == 0, beat.output()[-3000:]
    assert time.monotonic() - started < 15
