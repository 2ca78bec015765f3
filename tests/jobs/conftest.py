from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection

from tests.conftest import _missing
from tests.jobs.workers import Workers, running_workers


@pytest.fixture(scope="module")
def celery_workers(
    django_db_setup: None, django_db_blocker, sandbox_server, tmp_path_factory
) -> Iterator[Workers]:
    """Two real Celery workers on Redis, shared by a module's tests (each starts in seconds)."""
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        _missing("Redis")
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")
    with running_workers(2, redis_url, sandbox_server.url, tmp_path_factory.mktemp("workers")) as w:
        yield w


@pytest.fixture
def workers(celery_workers: Workers, transactional_db: None) -> Workers:
    celery_workers.mark()
    return celery_workers
