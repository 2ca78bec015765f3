"""PostgreSQL down under the running stack: answers that say so, then recovery on its own.

The app processes reach PostgreSQL through a proxy the test cuts (every connection closed,
new ones reset) or makes hang (accepted, never answered).
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from tests.events.helpers import message
from tests.factories import make_pending

pytestmark = pytest.mark.slow

# What the app processes use (they read the same settings); no OPTIONS without PostgreSQL.
CONNECT_TIMEOUT = int(settings.DATABASES["default"].get("OPTIONS", {}).get("connect_timeout", 5))


def _booted_workers(stack) -> int:
    return stack.web.output().count("Booting worker")


def test_it_answers_a_token_request_with_503_json_while_postgresql_is_down(
    stack, authorized
) -> None:
    assert stack.post_token(open_id=authorized.open_id).status_code == 200
    stack.database.cut()

    started = time.monotonic()
    response = stack.post_token(open_id=authorized.open_id)
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_unavailable"
    assert response.headers["Retry-After"]
    assert elapsed < 3


def test_it_keeps_healthz_up_and_readyz_down_while_postgresql_is_down(stack) -> None:
    stack.database.cut()

    assert stack.get("/healthz").status_code == 200
    ready = stack.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("error")


def test_it_serves_tokens_again_once_postgresql_is_back_without_a_restart(
    stack, authorized
) -> None:
    booted = _booted_workers(stack)
    stack.database.cut()
    # One request per connection, so every gunicorn worker sees the outage.
    outage = [stack.post_token(open_id=authorized.open_id).status_code for _ in range(8)]
    assert set(outage) == {503}

    stack.database.restore()

    after = [stack.post_token(open_id=authorized.open_id) for _ in range(8)]
    assert [r.status_code for r in after] == [200] * 8, after[-1].text
    assert {r.json()["access_token"] for r in after} == {authorized.access_token}
    assert stack.get("/readyz").status_code == 200
    assert stack.web.running()
    assert _booted_workers(stack) == booted, "no gunicorn worker was restarted"


def test_it_shows_a_503_page_on_the_oauth_pages_while_postgresql_is_down(stack) -> None:
    session = make_pending(stack.lark.app)
    stack.database.cut()

    page = stack.get(f"/oauth/start/{session.pk}", allow_redirects=False)

    assert page.status_code == 503
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Temporarily unavailable" in page.text
    assert "Traceback" not in page.text


def test_it_gives_up_on_a_postgresql_that_does_not_answer_within_the_connect_timeout(
    stack, authorized
) -> None:
    stack.database.cut(hang=True)

    started = time.monotonic()
    response = stack.post_token(open_id=authorized.open_id, timeout=CONNECT_TIMEOUT + 10)
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_unavailable"
    assert elapsed < CONNECT_TIMEOUT + 3
    assert stack.get("/healthz", timeout=2).status_code == 200


def test_it_answers_feishu_events_with_a_json_error_feishu_retries_while_postgresql_is_down(
    stack,
) -> None:
    stack.database.cut()

    delivered = stack.sandbox.deliver_event(
        stack.lark.app.app_id,
        message(stack.sandbox.alice["open_id"], "authorize"),
        url=f"{stack.url}/lark/events/",
    )

    # Any non-200 makes Feishu deliver the event again later; 503 says why, whether the
    # application lookup or the handler found the database gone.
    assert delivered["status"] == 503, delivered
    assert delivered["body"]["code"] == "database_unavailable"
