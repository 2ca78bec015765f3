"""Fixtures of the fault suite: the running stack (tests/faults/stack.py) on the test
database. The app processes see what a test writes because every test here commits.

- `stack`: gunicorn and one Celery worker, started once per test process and shared by
  the tests that only cut connections or inject Feishu faults (gunicorn's four workers take
  seconds to boot). Bound to the test's `lark` (application, API key, sandbox); both proxies
  are restored and the worker's log is read from the test's start. Under `pytest -n N`,
  each xdist worker that runs such a test starts its own.
- `start_stack(web=True, worker=False, **env)`: a stack of the test's own, for tests that
  need another environment or stop or kill its processes. Stopped after the test.
- `authorized`: Alice authorized at the sandbox, her authorization row.

The application row gets the same id in every test: the app processes cache it by app_id
for up to 10 s, across the tests that share them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from django.db import connection

from sessions_app.models import Application, UserAuthSession
from tests.conftest import _missing
from tests.faults.stack import Stack, running_stack
from tests.flow.helpers import LarkEnv
from tests.jobs.helpers import authorize

StartStack = Callable[..., Stack]


def _redis_url() -> str:
    """Both servers are required: the stack runs on them."""
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        _missing("Redis")
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    return redis_url


@pytest.fixture(scope="session")
def shared_stack(django_db_setup: None, sandbox_server: Any, tmp_path_factory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("stack")
    with running_stack(sandbox_server.url, _redis_url(), logs, worker=True) as stack:
        yield stack


@pytest.fixture
def application_ids_from_1(transactional_db: None) -> None:
    """The test's application row gets id 1 (its table is empty after the last test)."""
    _redis_url()  # skip first where the stack cannot run
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), 1, false)",
            [Application._meta.db_table],
        )


@pytest.fixture
def lark(settings: Any, sandbox: Any, application_ids_from_1: None) -> LarkEnv:
    """tests/conftest.py's, committed and with the application's id always 1."""
    return LarkEnv.create(settings, sandbox)


@pytest.fixture
def stack(shared_stack: Stack, lark: LarkEnv) -> Iterator[Stack]:
    shared_stack.lark = lark
    assert shared_stack.workers is not None
    shared_stack.workers.mark()
    try:
        yield shared_stack
    finally:
        shared_stack.database.restore()
        shared_stack.redis.restore()
        shared_stack.lark = None


@pytest.fixture
def start_stack(lark: LarkEnv, tmp_path_factory) -> Iterator[StartStack]:
    redis_url = _redis_url()
    with ExitStack() as running:

        def start(*, web: bool = True, worker: bool = False, **env: str) -> Stack:
            logs = tmp_path_factory.mktemp("stack")
            stack = running.enter_context(
                running_stack(lark.sandbox.url, redis_url, logs, web=web, worker=worker, **env)
            )
            stack.lark = lark
            return stack

        yield start


@pytest.fixture
def authorized(lark: LarkEnv) -> UserAuthSession:
    return authorize(lark, lark.sandbox.alice)
