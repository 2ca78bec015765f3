"""The refresh sweep as production runs it: Celery workers taking the task from Redis."""

from __future__ import annotations

import pytest

from sessions_app.models import SessionState, TokenEvent, UserAuthSession
from sessions_app.services import token_refresh
from tests.jobs.helpers import authorize, keepalive_due, refreshed_events, warm_due

pytestmark = pytest.mark.slow

TASK = "sessions_app.tasks.refresh_expiring_tokens"


def test_two_workers_sweeping_at_once_refresh_each_due_token_once(workers, lark) -> None:
    users = [lark.sandbox.add_user(f"User {n}") for n in range(6)]
    due = [authorize(lark, user) for user in users]
    for authorization in due[:4]:
        keepalive_due(authorization)  # only the refresh token is near its end
    for authorization in due[4:]:
        warm_due(authorization)
    fresh = authorize(lark, lark.sandbox.alice)
    old_tokens = {a.pk: a.refresh_token for a in [*due, fresh]}
    lark.sandbox.clear_calls()
    # Slow Feishu down so that both sweeps are busy with the same rows at the same time.
    lark.sandbox.add_fault("oauth_refresh", latency_ms=200, times=-1)

    workers.send(TASK)
    workers.send(TASK)
    runs = workers.wait_for(TASK, runs=2)

    assert runs == [1, 1], "each worker ran the sweep once"
    assert len(lark.sandbox.calls(api="oauth_refresh")) == len(due)
    for authorization in due:
        authorization.refresh_from_db()
        assert refreshed_events(authorization) == 1
        assert authorization.refresh_token != old_tokens[authorization.pk]
        assert authorization.state == SessionState.COMPLETED
    fresh.refresh_from_db()
    assert fresh.refresh_token == old_tokens[fresh.pk]
    # What is stored is the live refresh token: Feishu accepts it.
    lark.sandbox.clear_faults()
    assert token_refresh(due[0].pk, force=True).refresh_failures == 0


def test_a_refresh_token_revoked_at_feishu_moves_the_authorization_to_needs_reauth(
    workers, lark
) -> None:
    alice = lark.sandbox.alice
    authorization = authorize(lark, alice)
    keepalive_due(authorization)
    lark.sandbox.revoke(alice["open_id"])

    workers.send(TASK)
    workers.wait_for(TASK, runs=1)

    authorization.refresh_from_db()
    assert authorization.state == SessionState.NEEDS_REAUTH
    assert (authorization.access_token, authorization.refresh_token) == (None, None)
    assert authorization.failure_reason == "refresh_failed:20064"
    event = TokenEvent.objects.get(session=authorization, kind="needs_reauth")
    assert event.actor == "beat:keep-alive"
    assert UserAuthSession.objects.filter(state=SessionState.COMPLETED).count() == 0
