"""Every token handed out gets its audit row, written in batches, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.utils import timezone

from sessions_app import services
from sessions_app.models import Application, TokenEvent, UserAuthSession
from sessions_app.services import audit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def buffer(redis_url: str):
    """The Redis lists of this test database, empty before and after."""
    client = redis.Redis.from_url(redis_url)
    keys = audit._keys()
    client.delete(*keys)
    yield client, keys
    client.delete(*keys)


def _authorized(app: Application, open_id: str) -> UserAuthSession:
    now = timezone.now()
    return UserAuthSession.objects.create(
        app=app,
        open_id=open_id,
        user_name=open_id,
        state="completed",
        access_token="u-token-" + open_id,
        refresh_token="r-token-" + open_id,
        token_expires_at=now + timedelta(hours=2),
        refresh_token_expires_at=now + timedelta(days=30),
        completed_at=now,
        last_used_at=now,
    )


def _issued() -> list[tuple[str, str]]:
    rows = TokenEvent.objects.filter(kind="token_issued").order_by("created_at")
    return list(rows.values_list("open_id", "actor"))


@pytest.fixture
def app() -> Application:
    return Application.objects.create(app_id="cli_audit", app_secret="s")


def test_hand_outs_are_written_with_their_own_time_at_the_flush(app, buffer) -> None:
    session = _authorized(app, "ou_a")
    before = timezone.now()
    services.token_issue(app, open_id="ou_a", actor="key:abc:reports")
    services.token_issue(app, open_id="ou_a", actor="key:def:bot")
    after = timezone.now()
    assert _issued() == []  # buffered, not yet written
    assert audit.token_audit_buffered() == 2

    assert services.token_audit_flush() == 2
    assert audit.token_audit_buffered() == 0
    assert _issued() == [("ou_a", "key:abc:reports"), ("ou_a", "key:def:bot")]
    for event in TokenEvent.objects.filter(kind="token_issued"):
        assert event.session_id == session.pk
        assert before <= event.created_at <= after
        assert "u-token" not in str(event.detail)
    assert services.token_audit_flush() == 0  # nothing written twice


def test_without_redis_the_row_is_written_at_once(app, settings) -> None:
    settings.REDIS_URL = ""
    _authorized(app, "ou_b")
    services.token_issue(app, open_id="ou_b", actor="python")
    assert _issued() == [("ou_b", "python")]
    assert services.token_audit_flush() == 0


def test_a_flush_that_died_after_claiming_is_finished_by_the_next(app, buffer) -> None:
    client, (queue, inflight) = buffer
    _authorized(app, "ou_c")
    for _ in range(3):
        services.token_issue(app, open_id="ou_c", actor="key:abc:x")
    # What a flush leaves when its worker dies between claiming a batch and writing it:
    client.register_script(audit._CLAIM)(keys=[queue, inflight], args=[2, "dead-flush"])
    assert client.llen(inflight) == 3  # the batch id and two entries
    assert services.token_audit_flush() == 3
    assert len(_issued()) == 3
    assert client.exists(queue, inflight) == 0


def test_a_batch_committed_before_its_flush_died_is_not_written_again(app, buffer) -> None:
    client, (queue, inflight) = buffer
    _authorized(app, "ou_d")
    services.token_issue(app, open_id="ou_d", actor="key:abc:x")
    entries = client.lrange(queue, 0, -1)
    client.register_script(audit._CLAIM)(keys=[queue, inflight], args=[10, "batch-1"])
    assert services.token_audit_flush() == 1
    # Had the worker died after its commit but before telling Redis, batch-1 would still be
    # in flight:
    client.rpush(inflight, "batch-1", *entries)
    assert services.token_audit_flush() == 0
    assert _issued() == [("ou_d", "key:abc:x")]
    assert client.exists(inflight) == 0


def test_concurrent_flushes_write_each_hand_out_once(app, buffer) -> None:
    _authorized(app, "ou_e")
    for n in range(500):
        services.token_issue(app, open_id="ou_e", actor=f"key:abc:{n}")
    totals: list[int] = []

    def flush() -> None:
        try:
            totals.append(services.token_audit_flush(batch=37))
        finally:
            connection.close()

    threads = [threading.Thread(target=flush) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(totals) == 500
    assert sorted(actor for _, actor in _issued()) == sorted(f"key:abc:{n}" for n in range(500))


def test_hand_outs_of_authorizations_deleted_before_the_flush_are_dropped(app, buffer) -> None:
    kept, gone = _authorized(app, "ou_f"), _authorized(app, "ou_g")
    services.token_issue(app, open_id="ou_f", actor="key:abc:x")
    services.token_issue(app, open_id="ou_g", actor="key:abc:x")
    gone.delete()
    assert services.token_audit_flush() == 1
    [event] = TokenEvent.objects.filter(kind="token_issued")
    assert (event.open_id, event.session_id) == ("ou_f", kept.pk)
