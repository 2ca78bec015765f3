"""The audit row of every token handed out, written in batches.

Each hand-out gets its own `TokenEvent` (which key got which user's token, never the token),
but one INSERT and commit per token request cost more than the rest of the request
(bench/token_api.py). So a hand-out is appended to a Redis list and `token_audit_flush`
(Celery beat, every few seconds) writes the list into `TokenEvent` one batch per INSERT,
each row with the time of its hand-out.

Exactly once: a flush claims a batch by moving it, under a fresh batch id, into an in-flight
list (atomically, in Redis), and records that id in `ProcessedEvent` in the transaction that
inserts the rows. A flush that dies half-way leaves the in-flight batch for the next one,
which finishes it, or skips it if its rows were already committed.

Without Redis (development) or while Redis is unreachable, the row is written at once, like
every state change. Rows still in Redis are lost if Redis itself loses its data.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction

from larkauth.redis_client import OptionalRedis
from sessions_app.models import ProcessedEvent, TokenEvent, UserAuthSession

logger = logging.getLogger(__name__)


def record_event(session: UserAuthSession, kind: str, actor: str = "", **detail: Any) -> TokenEvent:
    """One audit row, written now, in the caller's transaction."""
    return TokenEvent.objects.create(
        session=session,
        app_id=session.app_id,
        open_id=session.open_id,
        kind=kind,
        actor=actor,
        detail=detail,
    )


FLUSH_BATCH = 2000
REDIS_RETRY_SECONDS = 15.0

# Moves up to ARGV[1] entries from the queue to the in-flight list, headed by the batch id
# ARGV[2]; an unfinished in-flight batch is returned first. Returns the batch id, or nil.
_CLAIM = """
local inflight = redis.call('LINDEX', KEYS[2], 0)
if inflight then return inflight end
local entries = redis.call('LRANGE', KEYS[1], 0, ARGV[1] - 1)
if #entries == 0 then return false end
redis.call('LTRIM', KEYS[1], #entries, -1)
redis.call('RPUSH', KEYS[2], ARGV[2], unpack(entries))
return ARGV[2]
"""
# Drops the in-flight list only if it still holds batch ARGV[1].
_RELEASE = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@functools.cache
def _redis(url: str) -> OptionalRedis:
    """One per URL, so the pause after a failure holds across calls."""
    return OptionalRedis(url, retry_interval=REDIS_RETRY_SECONDS)


def _client() -> redis.Redis | None:
    return _redis(settings.REDIS_URL).client()


def _redis_failed(exc: redis.RedisError) -> None:
    _redis(settings.REDIS_URL).failed()
    logger.warning(
        "Redis is unreachable (%s): token audit rows are written directly for %g s",
        type(exc).__name__,
        REDIS_RETRY_SECONDS,
    )


def _keys() -> tuple[str, str]:
    # Named after the database, so two deployments sharing a Redis never swap rows.
    queue = f"larkauth:{connection.settings_dict['NAME']}:audit:token_issued"
    return queue, queue + ":inflight"


def token_issued(session: UserAuthSession, actor: str) -> None:
    """Audit one token handed out: buffered in Redis, or written now without it."""
    entry = [str(session.pk), session.app_id, session.open_id, actor, time.time()]
    client = _client()
    if client is not None:
        try:
            client.rpush(_keys()[0], json.dumps(entry))
        except redis.RedisError as exc:
            _redis_failed(exc)
        else:
            return
    record_event(session, TokenEvent.Kind.TOKEN_ISSUED, actor)


def token_audit_buffered() -> int | None:
    """Hand-outs waiting in Redis for their row; None without Redis or when it can't tell."""
    client = _client()
    if client is None:
        return None
    queue, inflight = _keys()
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.llen(inflight)
    try:
        waiting, in_flight = pipe.execute()
    except redis.RedisError:
        return None
    return int(waiting) + max(int(in_flight) - 1, 0)  # the in-flight list's head is its id


def token_audit_flush(batch: int = FLUSH_BATCH) -> int:
    """Write the buffered hand-outs into `TokenEvent`; returns how many rows were written."""
    client = _client()
    if client is None:
        return 0
    queue, inflight = _keys()
    claim, release = client.register_script(_CLAIM), client.register_script(_RELEASE)
    written = 0
    while True:
        batch_id = claim(keys=[queue, inflight], args=[batch, uuid.uuid4().hex])
        if batch_id is None:
            level = logging.INFO if written else logging.DEBUG
            logger.log(level, "Token audit: wrote %d buffered rows", written)
            return written
        entries = [json.loads(raw) for raw in client.lrange(inflight, 1, -1)]
        with transaction.atomic():
            if ProcessedEvent.objects.claim(f"audit:{batch_id.decode()}", "token_audit_batch"):
                written += _write(entries)
        release(keys=[inflight], args=[batch_id])


def _write(entries: list[list[Any]]) -> int:
    """Insert the rows of hand-outs whose authorization still exists.

    A hand-out whose authorization was deleted before the flush is dropped with it: session
    ids are UUIDs, so this also drops anything left in Redis by an earlier database of the
    same name.
    """
    session_pks = {entry[0] for entry in entries}
    found = UserAuthSession.objects.filter(pk__in=session_pks).values_list("pk", flat=True)
    sessions = {str(pk) for pk in found}
    rows = [
        TokenEvent(
            session_id=session_pk,
            app_id=app_pk,
            open_id=open_id,
            kind=TokenEvent.Kind.TOKEN_ISSUED,
            actor=actor,
            created_at=datetime.fromtimestamp(at, tz=UTC),
        )
        for session_pk, app_pk, open_id, actor, at in entries
        if session_pk in sessions
    ]
    TokenEvent.objects.bulk_create(rows)
    return len(rows)
