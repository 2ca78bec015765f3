"""LARK_* seeds the default application; admin owns it afterwards; `apply_app_env` is the
operator's way to apply the environment on purpose."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from sessions_app import selectors
from sessions_app.models import Application
from tests.fixtures.sandbox import TEST_APP

pytestmark = pytest.mark.django_db

ENV_SECRET = "env-secret-7c1d"
ADMIN_SECRET = "admin-secret-e93b"
ADMIN_ENCRYPT_KEY = "admin-encrypt-key-51aa"


@pytest.fixture
def env(settings):
    settings.LARK_APP_ID = TEST_APP["app_id"]
    settings.LARK_APP_SECRET = ENV_SECRET
    settings.LARK_ENCRYPT_KEY = ""
    settings.LARK_VERIFICATION_TOKEN = "env-verification-token"
    return settings


def _edit_in_admin(app: Application) -> None:
    """An operator sets the secret and encrypt key on the application's admin page."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    response = client.post(
        reverse("admin:sessions_app_application_change", args=[app.pk]),
        {
            "app_id": app.app_id,
            "name": app.name,
            "domain": app.domain,
            "admin_open_ids": "[]",
            "is_active": "on",
            "app_secret": ADMIN_SECRET,
            "encrypt_key": ADMIN_ENCRYPT_KEY,
            "verification_token": "",
        },
    )
    assert response.status_code == 302


def _stored() -> Application:
    return Application.objects.get(app_id=TEST_APP["app_id"])


def test_migrate_creates_the_default_application_from_the_environment(env) -> None:
    Application.objects.all().delete()
    call_command("migrate", verbosity=0)
    app = _stored()
    assert (app.app_secret, app.verification_token) == (ENV_SECRET, "env-verification-token")


def test_a_secret_set_in_admin_survives_api_requests_after_the_cache_expires(lark, env) -> None:
    _edit_in_admin(lark.app)
    selectors.applications_forget()  # what caching.APPLICATION_SECONDS does in time

    response = lark.request_token(open_id=lark.sandbox.alice["open_id"])  # no app_id

    assert response.status_code == 404, response.content  # not authorized yet: a read only
    app = _stored()
    assert (app.app_secret, app.encrypt_key) == (ADMIN_SECRET, ADMIN_ENCRYPT_KEY)


def test_migrate_and_demo_setup_leave_an_edited_application_alone(lark, env) -> None:
    _edit_in_admin(lark.app)
    env.DEBUG = True  # demo_setup runs only in development
    call_command("migrate", verbosity=0)
    call_command("demo_setup", stdout=io.StringIO())
    app = _stored()
    assert (app.app_secret, app.encrypt_key) == (ADMIN_SECRET, ADMIN_ENCRYPT_KEY)


def test_apply_app_env_writes_the_environment_and_names_no_secret(lark, env, capsys) -> None:
    _edit_in_admin(lark.app)

    call_command("apply_app_env")

    out = capsys.readouterr().out
    assert "app_secret set from LARK_APP_SECRET" in out
    assert "verification_token set from LARK_VERIFICATION_TOKEN" in out
    assert "encrypt_key kept (LARK_ENCRYPT_KEY is empty)" in out
    for secret in (ENV_SECRET, ADMIN_SECRET, ADMIN_ENCRYPT_KEY, "env-verification-token"):
        assert secret not in out
    app = _stored()
    assert (app.app_secret, app.encrypt_key, app.verification_token) == (
        ENV_SECRET,
        ADMIN_ENCRYPT_KEY,
        "env-verification-token",
    )


def test_apply_app_env_creates_a_missing_application(env, capsys) -> None:
    Application.objects.all().delete()
    call_command("apply_app_env")
    assert f"Created application {TEST_APP['app_id']}" in capsys.readouterr().out
    assert _stored().app_secret == ENV_SECRET


def test_apply_app_env_refuses_without_the_environment(settings) -> None:
    settings.LARK_APP_ID = ""
    with pytest.raises(CommandError, match="LARK_APP_ID"):
        call_command("apply_app_env")
