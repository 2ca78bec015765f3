from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection

pytest_plugins = ["tests.fixtures.sandbox"]

REQUIRE_SERVICES = os.environ.get("LARKAUTH_TEST_REQUIRE_SERVICES") == "1"


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required in CI but not configured", pytrace=False)
    pytest.skip(f"{what} not reachable on this machine (CI runs it)")


@pytest.fixture(autouse=True)
def celery_tasks_run_at_once(request) -> Iterator[None]:
    """Tasks the code under test queues (card sends and updates) run at once, in this
    process. Tests of real workers start them as processes of their own, unaffected."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def postgres(db: None) -> None:
    """For tests of behaviour only PostgreSQL enforces (constraints, row locks)."""
    if connection.vendor != "postgresql":
        _missing("PostgreSQL")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _missing("Redis")
    return url


@pytest.fixture
def lark(settings, sandbox, transactional_db):
    """The sandbox's test app as larkauth's application, and an API key for it.

    Transactional: cards are sent and updated once a change commits (on_commit), as in
    production, so the test's changes must really commit."""
    from tests.flow.helpers import LarkEnv

    return LarkEnv.create(settings, sandbox)


@pytest.fixture
def operator(lark):
    """`lark` with its test client signed in to the admin as a superuser."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    lark.client.force_login(user)
    return lark


@pytest.fixture
def viewer(lark):
    """`lark` signed in as staff who may only look at authorizations."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("viewer", "viewer@example.com", "pw")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_userauthsession"))
    lark.client.force_login(user)
    return lark
