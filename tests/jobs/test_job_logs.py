"""Beat jobs log one INFO line when they did work, with counts, and only DEBUG when not."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from sessions_app import tasks
from sessions_app.models import SessionState
from sessions_app.services import audit
from tests.factories import make_app, make_authorization, make_pending

pytestmark = pytest.mark.django_db(transaction=True)


def _info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


@pytest.fixture
def empty_audit_buffer(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.delete(*audit._keys())
    yield
    client.delete(*audit._keys())


def test_it_logs_no_info_when_the_jobs_have_nothing_to_do(
    caplog: pytest.LogCaptureFixture, empty_audit_buffer: None
) -> None:
    caplog.set_level(logging.DEBUG)
    tasks.flush_token_audit()
    tasks.expire_pending_sessions()
    tasks.cleanup_auth_sessions()
    tasks.refresh_expiring_tokens()
    tasks.check_refresh_token_expiry()

    assert _info(caplog) == []
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "Token audit: wrote 0 buffered rows" in debug
    assert "Expired 0 pending sessions" in debug


def test_it_logs_one_info_line_with_counts_when_a_job_did_work(
    caplog: pytest.LogCaptureFixture, empty_audit_buffer: None
) -> None:
    app = make_app()
    make_pending(app, expires_at=timezone.now() - timedelta(minutes=1))
    authorization = make_authorization(app, state=SessionState.COMPLETED)
    audit.token_issued(authorization, "test")
    caplog.set_level(logging.INFO)

    tasks.flush_token_audit()
    assert _info(caplog) == ["Token audit: wrote 1 buffered rows"]
    caplog.clear()
    tasks.expire_pending_sessions()
    assert _info(caplog) == ["Expired 1 pending sessions"]
