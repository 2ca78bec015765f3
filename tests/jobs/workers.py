"""Real Celery workers (`celery -A config worker`) consuming from Redis, for the job tests.

They run as separate processes on the test database and the test sandbox, listen on a
queue of their own (so parallel test runs never take each other's tasks), and log to files
the tests read to see which worker ran what.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB = 14  # REDIS_URL's database (15) holds the rate limiter and cache
START_TIMEOUT = 30.0
WORKER_COMMAND = [
    *(sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1"),
    *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
]


def database_url(host: str | None = None, port: int | None = None) -> str:
    """The test database's URL, optionally reached through another address (a proxy)."""
    db = connection.settings_dict
    user = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"])
    host = host or db["HOST"] or "127.0.0.1"
    return f"postgres://{user}@{host}:{port or db['PORT'] or 5432}/{db['NAME']}"


def broker_url(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{BROKER_DB}"))


@dataclass
class Worker:
    name: str
    log: Path
    process: subprocess.Popen[bytes]
    since: int = 0  # where in the log the current test begins

    def text(self) -> str:
        with self.log.open("rb") as log:
            log.seek(self.since)
            return log.read().decode(errors="replace")

    def mark(self) -> None:
        self.since = self.log.stat().st_size

    def succeeded(self, task: str) -> int:
        return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", self.text()))


@dataclass
class Workers:
    broker_url: str
    queue: str
    workers: list[Worker] = field(default_factory=list)

    def send(self, task: str) -> None:
        with celery_app.connection_for_write(self.broker_url) as conn:
            celery_app.send_task(task, queue=self.queue, connection=conn)

    def succeeded(self, task: str) -> list[int]:
        """How many runs of `task` each worker finished."""
        return [worker.succeeded(task) for worker in self.workers]

    def wait_for(self, task: str, runs: int, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.succeeded(task)
            if sum(counts) >= runs:
                return counts
            for worker in self.workers:
                if f"Task {task}[" in worker.text() and " raised unexpected" in worker.text():
                    raise AssertionError(f"{worker.name} failed:\n{worker.text()[-4000:]}")
            time.sleep(0.1)
        logs = "\n".join(f"--- {w.name}\n{w.text()[-3000:]}" for w in self.workers)
        raise AssertionError(f"{runs} runs of {task} not finished in {timeout}s:\n{logs}")

    def mark(self) -> None:
        """Read the logs from here on (each test that shares these workers)."""
        for worker in self.workers:
            worker.mark()


@contextmanager
def running_workers(
    count: int,
    redis_url: str,
    sandbox_url: str,
    logs: Path,
    env: Mapping[str, str] | None = None,
    queue: str = "",
) -> Iterator[Workers]:
    """`count` workers on a queue of their own (`queue`, else a new name); `env` overrides
    what the workers see (the tests still send to `Workers.broker_url`)."""
    run_id = uuid.uuid4().hex[:8]
    workers = Workers(broker_url=broker_url(redis_url), queue=queue or f"larkauth-test-{run_id}")
    process_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": workers.broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": workers.queue,  # tasks the jobs queue (card sends) too
        "REDIS_URL": redis_url,
        "LARK_DOMAIN": sandbox_url,
        "LARK_ACCOUNTS_DOMAIN": sandbox_url,
        "LARKAUTH_PUBLIC_URL": "http://testserver",
        "LARKAUTH_ENCRYPTION_KEYS": ",".join(settings.LARKAUTH_ENCRYPTION_KEYS),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
        # Celery's "succeeded" line of a beat job, counted by `Worker.succeeded`, is DEBUG
        # (larkauth.logformat.BeatJobsAtDebug).
        "LOG_LEVEL": "DEBUG",
    }
    try:
        for n in range(count):
            name = f"w{n}-{run_id}@%h"
            log = logs / f"worker-{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*WORKER_COMMAND, "-Q", workers.queue, "-n", name],
                    cwd=ROOT,
                    env=process_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped with its children
                )
            workers.workers.append(Worker(name, log, process))
        _wait_ready(workers)
        workers.mark()
        yield workers
    finally:
        for worker in workers.workers:
            _stop(worker.process)
        with celery_app.connection_for_write(workers.broker_url) as conn:
            conn.default_channel.queue_delete(workers.queue)  # type: ignore[attr-defined]


def _wait_ready(workers: Workers) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(workers.workers)
    while pending and time.monotonic() < deadline:
        for worker in list(pending):
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited:\n{worker.text()[-4000:]}")
            if " ready." in worker.text():
                pending.remove(worker)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"workers not ready in {START_TIMEOUT}s: {pending[0].text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
