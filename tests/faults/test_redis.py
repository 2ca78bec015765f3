"""Redis gone under the running stack (it is the cache, the shared Feishu rate limit, the
token audit buffer and the Celery broker): tokens are still served, every hand-out keeps its
audit row, Feishu calls are limited per process, and nothing waits on the broker for long.

The app processes reach Redis through a proxy the test makes hang (connections accepted,
never answered): the worst case, where only timeouts help.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from kombu.exceptions import OperationalError as BrokerError

from config.celery import app as celery_app
from sessions_app import services
from sessions_app.models import TokenEvent
from sessions_app.services import audit
from tests.jobs.helpers import authorize, warm_due
from tests.jobs.workers import broker_url

pytestmark = pytest.mark.slow

ENQUEUE_BOUND = 6.0  # seconds; settings: 2 s socket timeouts and one quick retry


@pytest.fixture
def audit_buffer(redis_url: str) -> None:
    """This database's audit lists in Redis (reached directly), empty before the test."""
    redis.Redis.from_url(redis_url).delete(*audit._keys())


def test_it_serves_tokens_while_redis_does_not_answer(stack, authorized) -> None:
    stack.redis.cut(hang=True)

    for _ in range(6):
        started = time.monotonic()
        response = stack.post_token(open_id=authorized.open_id)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 2


def test_it_writes_the_audit_row_of_every_token_served_while_redis_does_not_answer(
    stack, authorized, audit_buffer
) -> None:
    stack.redis.cut(hang=True)

    served = [stack.post_token(open_id=authorized.open_id).status_code for _ in range(6)]

    assert served == [200] * 6
    # Written at once, not left for a flush that needs Redis.
    issued = TokenEvent.objects.filter(kind="token_issued", session=authorized)
    assert issued.count() == 6
    stack.redis.restore()
    assert services.token_audit_flush() == 0
    assert issued.count() == 6


def test_it_still_calls_feishu_limiting_per_process_while_redis_does_not_answer(stack) -> None:
    users = [stack.sandbox.add_user(f"User {n}") for n in range(4)]
    for user in users:
        warm_due(authorize(stack.lark, user))  # each token request refreshes at Feishu
    stack.sandbox.clear_calls()
    stack.redis.cut(hang=True)

    started = time.monotonic()
    with ThreadPoolExecutor(len(users)) as pool:
        responses = list(pool.map(lambda u: stack.post_token(open_id=u["open_id"]), users))

    assert [r.status_code for r in responses] == [200] * len(users)
    assert time.monotonic() - started < 5
    assert len(stack.sandbox.calls(api="oauth_refresh")) == len(users)
    # The documented degradation (larkauth/ratelimit.py, README): each process keeps to
    # FEISHU_RATE_LIMIT_PER_SECOND on its own, and says so once.
    assert "limiting Feishu calls per process" in stack.web.output()


def test_it_answers_readyz_with_503_soon_while_the_broker_does_not_answer(stack) -> None:
    stack.redis.cut(hang=True)

    started = time.monotonic()
    ready = stack.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("error")
    assert time.monotonic() - started < ENQUEUE_BOUND


def test_it_fails_a_task_enqueue_fast_while_the_broker_does_not_answer(stack) -> None:
    stack.redis.cut(hang=True)
    unanswered = broker_url(f"redis://{stack.redis.address}/0")
    outcome: list[BaseException | None] = []

    def enqueue() -> None:
        try:
            with celery_app.connection_for_write(unanswered) as conn:
                celery_app.send_task("sessions_app.tasks.flush_token_audit", connection=conn)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    sender = threading.Thread(target=enqueue, daemon=True)
    sender.start()
    sender.join(timeout=ENQUEUE_BOUND + 5)

    assert outcome, "the enqueue was still waiting on the broker"
    assert isinstance(outcome[0], BrokerError)
    assert time.monotonic() - started < ENQUEUE_BOUND


def test_it_answers_a_prompting_token_request_promptly_while_redis_does_not_answer(
    stack,
) -> None:
    stack.redis.cut(hang=True)

    started = time.monotonic()
    response = stack.post_token(open_id=stack.sandbox.bob["open_id"], prompt=True)

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "authorization_required"
    assert time.monotonic() - started < ENQUEUE_BOUND
