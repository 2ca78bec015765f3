"""The listeners' connection status in admin: listed, read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from events_app.models import ListenerConnection
from tests.factories import make_app

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/events_app/listenerconnection/"


def test_it_lists_each_listeners_connection_and_whether_the_listener_is_alive(admin_client):
    app = make_app(app_id="cli_listed")
    now = timezone.now()
    ListenerConnection.objects.create(
        app=app,
        listener_id="host-a:10",
        status=ListenerConnection.Status.BACKING_OFF,
        failures=3,
        last_error="Feishu refused the connection: ClientException: 10014: app secret invalid",
        status_changed_at=now,
        last_heartbeat_at=now,
    )
    ListenerConnection.objects.create(
        app=app,
        listener_id="host-b:11",
        status=ListenerConnection.Status.CONNECTED,
        status_changed_at=now - timedelta(hours=2),
        last_heartbeat_at=now - timedelta(hours=1),  # killed an hour ago
    )

    page = admin_client.get(CHANGELIST).content.decode()

    assert "host-a:10" in page
    assert "backing_off" in page or "Backing Off" in page
    assert "10014: app secret invalid" in page
    assert page.count('alt="True"') == 1  # host-a is alive, host-b is not
    assert page.count('alt="False"') == 1


def test_it_is_read_only(admin_client):
    app = make_app()
    row = ListenerConnection.objects.create(
        app=app,
        listener_id="host:1",
        status=ListenerConnection.Status.CONNECTED,
        status_changed_at=timezone.now(),
        last_heartbeat_at=timezone.now(),
    )

    page = f"{CHANGELIST}{row.pk}/"

    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    assert admin_client.post(page + "delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(page + "change/", {"status": "failed"}).status_code == 403
    row.refresh_from_db()
    assert row.status == ListenerConnection.Status.CONNECTED
