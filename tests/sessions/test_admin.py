"""Operators see whether a token exists and when it expires, never the token itself."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from sessions_app.models import Application, TokenEvent
from tests.factories import make_app, make_authorization

ACCESS = "eyJ-admin-sentinel-access-91ab"
REFRESH = "eyJ-admin-sentinel-refresh-4c2e"
SECRET = "admin-sentinel-app-secret-e7f0"
ENCRYPT_KEY = "admin-sentinel-encrypt-key-12aa"


@pytest.fixture
def authorization(db):
    app = make_app(app_secret=SECRET, encrypt_key=ENCRYPT_KEY)
    return make_authorization(
        app, access_token=ACCESS, refresh_token=REFRESH, user_name="Zhang San"
    )


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_session_pages_show_token_presence_not_tokens(admin_client, authorization) -> None:
    listing = _page(admin_client, reverse("admin:sessions_app_userauthsession_changelist"))
    detail = _page(
        admin_client,
        reverse("admin:sessions_app_userauthsession_change", args=[authorization.pk]),
    )
    assert "Zhang San" in listing
    assert "Refresh token expires at" in detail
    for page in (listing, detail):
        for secret in (ACCESS, REFRESH, SECRET):
            assert secret not in page


def test_application_pages_never_render_secrets(admin_client, authorization) -> None:
    app = authorization.app
    for url in (
        reverse("admin:sessions_app_application_changelist"),
        reverse("admin:sessions_app_application_change", args=[app.pk]),
        reverse("admin:sessions_app_application_delete", args=[app.pk]),
    ):
        page = _page(admin_client, url)
        assert SECRET not in page
        assert ENCRYPT_KEY not in page


def test_saving_an_application_with_blank_secrets_keeps_them(admin_client, authorization) -> None:
    app = authorization.app
    response = admin_client.post(
        reverse("admin:sessions_app_application_change", args=[app.pk]),
        {
            "app_id": app.app_id,
            "name": "Renamed",
            "domain": "feishu",
            "admin_open_ids": '["ou_admin"]',
            "is_active": "on",
            "app_secret": "",
            "encrypt_key": "",
            "verification_token": "",
        },
    )
    assert response.status_code == 302
    app = Application.objects.get(pk=app.pk)
    assert (app.name, app.app_secret, app.encrypt_key) == ("Renamed", SECRET, ENCRYPT_KEY)
    assert app.admin_open_ids == ["ou_admin"]


def test_a_new_application_needs_its_secret(admin_client) -> None:
    response = admin_client.post(
        reverse("admin:sessions_app_application_add"),
        {"app_id": "cli_new", "domain": "feishu", "admin_open_ids": "[]", "app_secret": ""},
    )
    assert response.status_code == 200
    assert "An application needs its app secret." in response.content.decode()
    assert not Application.objects.filter(app_id="cli_new").exists()


def test_the_audit_log_is_read_only(admin_client, authorization) -> None:
    event = TokenEvent.objects.create(
        app=authorization.app, open_id=authorization.open_id, kind="completed", actor="test"
    )
    page = _page(admin_client, reverse("admin:sessions_app_tokenevent_changelist"))
    assert "completed" in page
    assert admin_client.get(reverse("admin:sessions_app_tokenevent_add")).status_code == 403
    change = admin_client.post(
        reverse("admin:sessions_app_tokenevent_change", args=[event.pk]), {"actor": "x"}
    )
    assert change.status_code == 403
