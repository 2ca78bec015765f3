"""A real worker at INFO, as deployed: a periodic run that has nothing to do logs nothing,
and its last run is still recorded for the admin overview (`BeatRun`)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from sessions_app.models import BeatRun
from tests.conftest import _missing
from tests.jobs.workers import ROOT, WORKER_COMMAND, _stop, broker_url, database_url

pytestmark = pytest.mark.slow

TASK = "sessions_app.tasks.expire_pending_sessions"


def test_a_periodic_run_with_nothing_to_do_is_silent_at_info(
    transactional_db, sandbox_server, tmp_path
) -> None:
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        _missing("Redis")
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    queue = f"larkauth-test-{uuid.uuid4().hex[:8]}"
    broker = broker_url(redis_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "REDIS_URL": redis_url,
        "LARK_DOMAIN": sandbox_server.url,
        "LARKAUTH_ENCRYPTION_KEYS": ",".join(settings.LARKAUTH_ENCRYPTION_KEYS),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("LOG_LEVEL_CELERY", None)  # the default, as deployed
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*WORKER_COMMAND, "-Q", queue, "-n", f"quiet-{queue}@%h"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with celery_app.connection_for_write(broker) as conn:
            celery_app.send_task(TASK, queue=queue, connection=conn)
        deadline = time.monotonic() + 60
        while not BeatRun.objects.filter(task=TASK).exists():
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        _stop(worker)
        with celery_app.connection_for_write(broker) as conn:
            conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]

    run = BeatRun.objects.get(task=TASK)
    assert (run.succeeded, run.result) == (True, "0")
    text = log.read_text()
    assert "succeeded" not in text
    assert "received" not in text
    assert " INFO " not in text, text[-3000:]
